"""Cold-start time of `dsv4ctl plan` as a ratio to importing its four dependencies, measured in the same run.

    python benchmarks/plan_cold_start.py [--runs 15] [--json]

The baseline is `python -c "import typer, rich, pydantic, yaml"`: the floor any Typer+Rich+pydantic CLI pays.
Goal: ratio ≤ 1.5. Runs alternate between the two commands so machine noise hits both alike; medians are
reported. Each run is a fresh interpreter (a cold start in the sense that matters: no warm process)."""

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
GOAL = 1.5


def _time(cmd: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def measure(runs: int) -> dict[str, float]:
    _time(BASELINE), _time(PLAN)  # warm the OS file cache for both; not counted
    base, plan = [], []
    for _ in range(runs):
        base.append(_time(BASELINE))
        plan.append(_time(PLAN))
    b, p = statistics.median(base), statistics.median(plan)
    return {"runs": runs, "baseline_s": round(b, 4), "plan_s": round(p, 4), "ratio": round(p / b, 3), "goal": GOAL}


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
    print(f"dsv4ctl plan --hw b200 --variant pro --recipe balanced: {result['plan_s'] * 1000:.0f} ms")
    print(f"ratio {result['ratio']:.2f}x ({verdict} the ≤{GOAL}x goal)")


if __name__ == "__main__":
    main()
