"""Flatten summaries into rows (one per sweep point) shared by the table, CSV and Markdown."""

from __future__ import annotations

from typing import Any

COLUMNS = [("concurrency_point", "conc"), ("completed", "ok"), ("failed", "failed"),
           ("request_throughput", "req/s"), ("output_throughput", "out tok/s"),
           ("output_throughput_per_gpu", "out tok/s/GPU"), ("output_throughput_per_user", "tok/s/user"),
           ("ttft_ms.median", "TTFT p50 ms"), ("ttft_ms.p99", "TTFT p99 ms"), ("itl_ms.median", "ITL p50 ms"),
           ("tpot_ms.median", "TPOT p50 ms"), ("e2e_ms.median", "E2E p50 ms"), ("goodput", "goodput"),
           ("error_rate", "err")]
ACC_COLUMNS = [("task", "task"), ("accuracy", "accuracy"), ("stderr", "stderr"), ("num_questions", "questions"),
               ("repeats", "repeats"), ("invalid_rate", "invalid"), ("error_rate", "err"), ("passed", "passed")]


def points(summary: dict[str, Any]) -> list[dict[str, Any]]:
    return summary.get("points") or [summary]


def get(d: dict[str, Any], dotted: str) -> Any:
    for part in dotted.split("."):
        d = d.get(part) if isinstance(d, dict) else None
    return d


def fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.4f}" if abs(v) < 1 else f"{v:.1f}"
    return str(v)


SPEC_COLUMN = ("accept_length", "accept len")  # speculative decoding's tokens per verify step, when reported


def table_rows(summary: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    cols, pts = (ACC_COLUMNS if summary.get("kind") == "accuracy" else COLUMNS), points(summary)
    if cols is COLUMNS:
        from dsv4ctl.bench.report.predicted import with_predictions

        pts, cols = with_predictions(summary, pts, cols)
        if any(get(p, SPEC_COLUMN[0]) is not None for p in pts):
            cols = cols + [SPEC_COLUMN]
    return [h for _, h in cols], [[fmt(get(p, k)) for k, _ in cols] for p in pts]
