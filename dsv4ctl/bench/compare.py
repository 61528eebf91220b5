"""`bench compare A B`: the metrics two runs share, side by side with the relative change."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from dsv4ctl.bench.records import SUMMARY_FILE, read_json
from dsv4ctl.errors import UserError

METRICS = [("accuracy", None), ("request_throughput", None), ("output_throughput", None),
           ("output_throughput_per_gpu", None), ("error_rate", None), ("goodput", None),
           ("ttft_ms", "median"), ("ttft_ms", "p99"), ("itl_ms", "median"), ("itl_ms", "p99"),
           ("tpot_ms", "median"), ("e2e_ms", "median"), ("e2e_ms", "p99")]


def load_summary(run: Path) -> dict[str, Any]:
    path = Path(run) / SUMMARY_FILE if Path(run).is_dir() else Path(run)
    if not path.is_file():
        raise UserError("no summary.json", where=str(run), fix="run `dsv4ctl bench report DIR` first")
    try:
        summary = read_json(path)
    except (OSError, ValueError, RecursionError) as exc:  # JSONDecodeError, UnicodeDecodeError
        summary = exc
    if not isinstance(summary, dict):
        raise UserError("summary.json is corrupt (not a JSON object)", where=str(path),
                        fix="re-run the benchmark, or restore the file")
    return summary


def value(summary: dict[str, Any], key: str, stat: str | None) -> float | None:
    v = summary.get(key)
    return (v or {}).get(stat) if stat else v


def diff(a: dict[str, Any], b: dict[str, Any]) -> list[dict[str, Any]]:
    """Rows of (metric, A, B, change%) for the metrics both summaries have."""
    rows = []
    for key, stat in METRICS:
        va, vb = value(a, key, stat), value(b, key, stat)
        if isinstance(va, (int, float)) and isinstance(vb, (int, float)):
            change = (vb - va) / va * 100 if va else None
            rows.append({"metric": f"{key}.{stat}" if stat else key, "a": va, "b": vb, "change_pct": change})
    return rows
