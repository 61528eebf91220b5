"""Cold-start time of `dsv4ctl plan` as a ratio to importing its four dependencies, measured in the same run.

    python benchmarks/plan_cold_start.py [--runs 15] [--json]

The baseline is `python -c "import typer, rich, pydantic, yaml"`: the floor any Typer+Rich+pydantic CLI pays.
Goal: ratio ≤ 1.5. Runs alternate between the two commands so machine noise hits both alike; medians are
reported. Each run is a fresh interpreter (a cold start in the sense that matters: no warm process).

A third command, the "Typer floor", parses the very same `plan` options into a function that does nothing:
Typer ≥ 0.2x builds a pydantic adapter per option, a cost the import-only baseline does not pay. The
floor's ratio says how much of the gap is the CLI framework and how much is our own work."""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time

BASELINE = [sys.executable, "-c", "import typer, rich, pydantic, yaml"]
PLAN = [sys.executable, "-m", "dsv4ctl", "plan", "--hw", "b200", "--variant", "pro", "--recipe", "balanced",
        "--format", "json"]
# The same Typer app shape as `dsv4ctl plan` (the real option signature), with a body that does nothing.
FLOOR_APP = """
import inspect, typing, typer
from dsv4ctl.commands.planning import plan
def noop(**_): print("{}")
hints = typing.get_type_hints(plan, include_extras=True)
sig = inspect.signature(plan)
noop.__signature__ = sig.replace(parameters=[p.replace(annotation=hints[p.name]) for p in sig.parameters.values()])
noop.__annotations__ = hints
app = typer.Typer(add_completion=False)
app.command("plan")(noop)
app.command("other")(lambda: None)
app()
"""
FLOOR = [sys.executable, "-c", FLOOR_APP, *PLAN[3:]]
GOAL = 1.5


def _time(cmd: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def measure(runs: int) -> dict[str, float]:
    cmds = {"baseline": BASELINE, "floor": FLOOR, "plan": PLAN}
    times: dict[str, list[float]] = {name: [] for name in cmds}
    for cmd in cmds.values():
        _time(cmd)  # warm the OS file cache; not counted
    for _ in range(runs):
        for name, cmd in cmds.items():
            times[name].append(_time(cmd))
    b, f, p = (statistics.median(times[name]) for name in cmds)
    return {"runs": runs, "baseline_s": round(b, 4), "floor_s": round(f, 4), "plan_s": round(p, 4),
            "floor_ratio": round(f / b, 3), "ratio": round(p / b, 3), "goal": GOAL}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    args = parser.parse_args()
    result = measure(args.runs)
    if args.json:
        print(json.dumps(result))
        return
    verdict = "meets" if result["ratio"] <= GOAL else "misses"
    print(f"baseline (import typer, rich, pydantic, yaml): {result['baseline_s'] * 1000:.0f} ms (median of {args.runs})")
    print(f"Typer floor (the plan options parsed, no work): {result['floor_s'] * 1000:.0f} ms "
          f"(ratio {result['floor_ratio']:.2f}x)")
    print(f"dsv4ctl plan --hw b200 --variant pro --recipe balanced: {result['plan_s'] * 1000:.0f} ms")
    print(f"ratio {result['ratio']:.2f}x ({verdict} the ≤{GOAL}x goal)")


if __name__ == "__main__":
    main()
