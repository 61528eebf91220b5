"""How long `dsv4ctl predict` takes over the whole cookbook grid.

The grid is every hardware profile × variant × quant × recipe with the recipe's own toggles, each at
four concurrencies (1, 16, 64, 256) for ISL 8192 / OSL 1024. Each cell is resolved and checked (the
same path as the command: dsv4ctl/predict/source.py) and predicted, or answered with the resolver's
or the model's one-line reason. Prints cells predicted / with a reason, the seconds for the whole
grid, and the seconds of the model alone. Goal (issue 23): the whole grid in < 2 s on 2 cores.

    python benchmarks/predict_grid.py [--repeat 3] [--json]
"""

from __future__ import annotations

import argparse
import itertools
import json
import time
from collections import Counter


def grid() -> list[tuple[str, str, str, str]]:
    from dsv4ctl.recipes import recipe_names
    from dsv4ctl.resolve.catalog import profile_names

    return list(itertools.product(profile_names(), ("flash", "pro"), ("fp4", "fp8", "nvfp4"), recipe_names()))


def run_once() -> dict:
    from dsv4ctl.errors import UserError
    from dsv4ctl.predict import Unservable, Workload, predict_plan
    from dsv4ctl.predict.source import checked_plan

    wl = Workload(8192, 1024, (1, 16, 64, 256))
    counts: Counter = Counter()
    t_model = 0.0
    t0 = time.perf_counter()
    for hw, variant, quant, recipe in grid():
        try:
            plan = checked_plan(hw, variant, recipe, quant=quant)
        except UserError:
            counts["reason: resolver"] += 1
            continue
        t1 = time.perf_counter()
        try:
            predict_plan(plan, wl)
            counts["predicted"] += 1
        except Unservable:
            counts["reason: model"] += 1
        t_model += time.perf_counter() - t1
    return {"cells": sum(counts.values()), "counts": dict(counts), "concurrencies": list(wl.concurrencies),
            "total_s": round(time.perf_counter() - t0, 3), "model_s": round(t_model, 3)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    t0 = time.perf_counter()
    import dsv4ctl.predict  # noqa: F401  (import time is part of a cold command, counted separately)

    import_s = time.perf_counter() - t0
    runs = [run_once() for _ in range(max(args.repeat, 1))]
    result = {**runs[0], "import_s": round(import_s, 3), "total_s_per_run": [r["total_s"] for r in runs],
              "model_s_per_run": [r["model_s"] for r in runs]}
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print(f"cells: {result['cells']} ({', '.join(f'{k} {v}' for k, v in result['counts'].items())}), "
          f"4 concurrencies each")
    print(f"whole grid (resolve + check + predict): {', '.join(f'{s:.3f}' for s in result['total_s_per_run'])} s "
          f"(first run is cold; goal < 2 s)")
    print(f"model alone: {', '.join(f'{s:.3f}' for s in result['model_s_per_run'])} s; import {result['import_s']} s")


if __name__ == "__main__":
    main()
