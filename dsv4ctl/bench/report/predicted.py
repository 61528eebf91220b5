"""`predicted` columns beside the measured ones when the run's plan is known (dsv4ctl predict).

Only for random-workload load runs whose setup names a plan file: each sweep point's concurrency and
the run's input/output lengths go to the predictor. Anything missing or unreadable leaves the report
as it was (the columns are extra information, never a reason for a report to fail)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)
# (key added to each point, header, the measured column it goes after)
PREDICTED = (("predicted.output_tok_s_per_gpu", "pred out tok/s/GPU", "out tok/s/GPU"),
             ("predicted.tpot_ms", "pred TPOT ms", "TPOT p50 ms"))


def _plan_file(setup: dict[str, Any]) -> Path | None:
    ref = setup.get("plan")
    path = ref.get("file") if isinstance(ref, dict) else ref
    return Path(path) if isinstance(path, str) and Path(path).is_file() else None


def _predictions(setup: dict[str, Any], concurrencies: list[int]) -> dict[int, Any]:
    path = _plan_file(setup)
    isl, osl = setup.get("input_len"), setup.get("output_len")
    if path is None or setup.get("workload", "random") != "random" or not (isl and osl) or not concurrencies:
        return {}
    from dsv4ctl.errors import UserError
    from dsv4ctl.predict import Unservable, Workload, predict_plan
    from dsv4ctl.predict.source import checked_plan

    try:
        found = predict_plan(checked_plan(plan_file=path), Workload(int(isl), int(osl), tuple(concurrencies)))
    except (UserError, Unservable, ValueError) as exc:
        log.info("no predicted columns: %s", exc)
        return {}
    return {p.concurrency: p for p in found}


def with_predictions(summary: dict[str, Any], pts: list[dict[str, Any]], cols: list[tuple[str, str]]):
    """(points with `predicted` values, columns with the predicted ones beside the measured)."""
    concs = sorted({int(p["concurrency_point"]) for p in pts if p.get("concurrency_point")})
    preds = _predictions(summary.get("setup") or {}, concs)
    if not preds:
        return pts, cols
    out_pts = []
    for p in pts:
        pred = preds.get(int(p.get("concurrency_point") or 0))
        values = None if pred is None else {"output_tok_s_per_gpu": pred.output_tok_s / pred.gpus,
                                            "tpot_ms": pred.tpot_ms}
        out_pts.append({**p, "predicted": values})
    out_cols = list(cols)
    for key, head, after in PREDICTED:
        at = next((i for i, (_, h) in enumerate(out_cols) if h == after), len(out_cols) - 1)
        out_cols.insert(at + 1, (key, head))
    return out_pts, out_cols
