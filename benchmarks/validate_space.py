"""How fast the whole plan space resolves and validates.

The space is every hardware profile × variant × quant × recipe × MTP on/off × MegaMoE off/w4a8/w4a4
× 1/2 nodes (dsv4ctl/space.py). Each point is resolved (or rejected by the resolver with a
UserError) and every resolved plan is checked by the pipeline (rendered once, all rules, sizing).
Prints points/s for the whole pipeline and plans/s for the check alone. Goal: the full space in under 5 s on a 2-core machine.

    python benchmarks/validate_space.py [--repeat 3] [--json]
"""

from __future__ import annotations

import argparse
import json
import time
from collections import Counter


def run_once() -> dict:
    from dsv4ctl.errors import UserError
    from dsv4ctl.pipeline import check_plan
    from dsv4ctl.resolve import resolve_plan
    from dsv4ctl.schema import Toggles
    from dsv4ctl.space import points

    counts: Counter = Counter()
    t_resolve = t_rules = 0.0
    for p in points():
        t0 = time.perf_counter()
        try:
            plan = resolve_plan(p.hw, p.variant, p.recipe, Toggles(**p.toggles))
        except UserError:
            t_resolve += time.perf_counter() - t0
            counts["rejected by resolver"] += 1
            continue
        t1 = time.perf_counter()
        findings = check_plan(plan).findings
        t_rules += time.perf_counter() - t1
        t_resolve += t1 - t0
        worst = next((s for s in ("error", "warning", "info") if any(f.severity == s for f in findings)), "clean")
        counts[f"resolved: {worst}"] += 1
    total = sum(counts.values())
    plans = total - counts["rejected by resolver"]
    return {"points": total, "plans": plans, "counts": dict(counts), "resolve_s": round(t_resolve, 3),
            "rules_s": round(t_rules, 3), "total_s": round(t_resolve + t_rules, 3),
            "points_per_s": round(total / (t_resolve + t_rules)), "rules_plans_per_s": round(plans / t_rules)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=1, help="runs; the fastest is reported (first one warms caches)")
    ap.add_argument("--json", action="store_true", help="print the result as JSON")
    args = ap.parse_args()
    t0 = time.perf_counter()
    import dsv4ctl.resolve  # noqa: F401  (import cost reported apart)
    import dsv4ctl.pipeline  # noqa: F401
    import_s = time.perf_counter() - t0
    best = min((run_once() for _ in range(max(args.repeat, 1))), key=lambda r: r["total_s"])
    best["import_s"] = round(import_s, 3)
    if args.json:
        print(json.dumps(best, indent=2))
        return
    print(f"plan space: {best['points']} points, {best['plans']} resolved plans  {best['counts']}")
    print(f"whole pipeline: {best['total_s']} s ({best['points_per_s']} points/s)"
          f"  = resolve {best['resolve_s']} s + rules {best['rules_s']} s  (+ imports {best['import_s']} s)")
    print(f"rules alone: {best['rules_plans_per_s']} plans/s")
    print("goal (< 5 s):", "met" if best["total_s"] < 5 else "NOT met")


if __name__ == "__main__":
    main()
