"""How well `dsv4ctl predict` reproduces the published numbers it is calibrated on.

Fits the efficiency constants (dsv4ctl/predict/constants.yaml `fitted`) on every row of
dsv4ctl/predict/calibration.yaml, prints each row's measured and predicted value and error, the median
absolute error, and the leave-one-hardware-out medians (fit on H200 rows only → error on B200 rows,
and back). Goals (issue 23): median ≤ 15%, leave-one-hardware-out median ≤ 30%.

    python benchmarks/predict_calibration.py [--write] [--json] [--no-fit]

--write stores the fitted values in constants.yaml; --no-fit reports the constants as stored.
"""

from __future__ import annotations

import argparse
import json
import time


def report(no_fit: bool) -> dict:
    from dsv4ctl.predict.calibration import errors, median_abs, predict_row, rows
    from dsv4ctl.predict.constants import load_constants
    from dsv4ctl.predict.fit import fit, leave_one_hardware_out

    t0 = time.perf_counter()
    all_rows = rows()
    k = load_constants() if no_fit else fit(all_rows).k
    errs = errors(k, all_rows)
    table = [{"row": r.label, "metric": r.metric, "source": r.source, "measured": r.measured,
              "predicted": round(predict_row(r, k), 2), "error_pct": round(100 * e, 1)}
             for r, e in zip(all_rows, errs)]
    loho = leave_one_hardware_out(k)
    return {"rows": table, "median_abs_error_pct": round(100 * median_abs(errs), 1),
            "loho_median_abs_error_pct": {hw: round(100 * v, 1) for hw, v in loho.items()},
            "constants": {n: round(getattr(k, n), 4) for n in k.__dataclass_fields__},
            "seconds": round(time.perf_counter() - t0, 2), "_k": k}


def print_table(result: dict) -> None:
    print(f"{'row':<50} {'metric':<20} {'measured':>9} {'predicted':>9} {'error':>7}")
    for r in result["rows"]:
        print(f"{r['row']:<50} {r['metric']:<20} {r['measured']:>9.2f} {r['predicted']:>9.2f} {r['error_pct']:>+6.1f}%")
    print(f"\nrows: {len(result['rows'])}   median |error|: {result['median_abs_error_pct']}% (goal ≤ 15%)")
    for hw, v in result["loho_median_abs_error_pct"].items():
        print(f"leave-one-hardware-out: fitted without {hw}, median |error| on {hw}: {v}% (goal ≤ 30%)")
    print("constants: " + ", ".join(f"{n}={v:g}" for n, v in result["constants"].items()))
    print(f"fit + report: {result['seconds']} s")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--write", action="store_true", help="store the fitted constants in constants.yaml")
    ap.add_argument("--no-fit", action="store_true", help="report the stored constants without fitting")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    result = report(args.no_fit)
    k = result.pop("_k")
    if args.write and not args.no_fit:
        from dsv4ctl.predict.fit import write_constants

        write_constants(k)
    print(json.dumps(result, indent=2)) if args.json else print_table(result)


if __name__ == "__main__":
    main()
