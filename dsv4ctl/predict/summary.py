"""The one predicted line `dsv4ctl plan` prints in its summary."""

from __future__ import annotations

from typing import Any

SUMMARY_ISL, SUMMARY_OSL, SUMMARY_CONC = 8192, 1024, (1, 64)  # the cookbook's benchmark shape


def predicted_line(plan: Any) -> str:
    """'predicted 8192/1024: c1 TPOT … ms, TTFT … s; c64 … tok/s/GPU (bound)', or why there is none."""
    from dsv4ctl.predict import Unservable, Workload, predict_plan

    try:
        one, many = predict_plan(plan, Workload(SUMMARY_ISL, SUMMARY_OSL, SUMMARY_CONC))
    except Unservable as exc:
        return f"predicted: none ({exc})"
    return (f"predicted {SUMMARY_ISL}/{SUMMARY_OSL}: c1 TPOT {one.tpot_ms:.1f} ms, TTFT {one.ttft_ms / 1e3:.2f} s; "
            f"c{many.concurrency} {many.total_tok_s_per_gpu:,.0f} tok/s/GPU ({many.bound}); dsv4ctl predict")
