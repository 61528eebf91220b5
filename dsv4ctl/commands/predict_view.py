"""Rich view of a prediction: one row per concurrency, 80 columns."""

from __future__ import annotations

from typing import Any

from rich import box
from rich.markup import escape
from rich.table import Table

from dsv4ctl.console import out


def prediction_table(points: list[Any], title: str) -> Table:
    t = Table(title=escape(title), title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False, padding=(0, 0, 0, 1))
    for name in ("conc", "TTFT s", "TPOT ms", "tok/s/u", "tok/s/GPU", "bound", "limited by"):
        t.add_column(name, justify="left" if name in ("bound", "limit") else "right", no_wrap=True)
    for p in points:
        t.add_row(str(p.concurrency), f"{p.ttft_ms / 1e3:.2f}", f"{p.tpot_ms:.2f}", f"{p.output_tok_s_per_user:,.0f}",
                  f"{p.total_tok_s_per_gpu:,.0f}", p.bound, p.limited_by)
    return t


def show_prediction(plan: Any, workload: Any, points: list[Any]) -> None:
    first = points[0]
    title = (f"predicted: {plan.hardware} {plan.variant} {plan.quant} {plan.recipe}, "
             f"ISL {workload.isl} / OSL {workload.osl}, {first.gpus} GPUs")
    out.print(prediction_table(points, title))
    mtp = f"MTP accept {first.accept_length:.2f} tok/cycle; " if first.accept_length > 1 else ""
    out.print(f"  {mtp}prefill {first.prefill_ms:,.0f} ms/prompt; decode step {first.decode_step_ms:.1f} ms "
              f"at c{first.concurrency}", highlight=False)
    out.print("  [dim]model: docs/predict.md (constants fitted on published B200/H200 rows)[/]")
