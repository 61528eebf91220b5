"""`bench compare A B`: the metrics two runs share, side by side with the relative change.

Sweep points are paired by concurrency (the top level of a sweep is only its last point), and two
runs of unlike workloads (lengths, API, task, shots, …) are refused unless the user asks for it."""

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


# What makes two results comparable: these setup values must match (num_prompts, seeds, dirs need not).
WORKLOAD_KEYS = ("kind", "workload", "input_len", "output_len", "range_ratio", "range_style", "api",
                 "request_rate", "prefix_len", "prefix_groups", "trace", "task", "shots", "shot_split",
                 "limit", "thinking", "endpoint")


def workload(summary: dict[str, Any]) -> dict[str, Any]:
    setup = summary.get("setup") or {}
    unit = (setup.get("lengths") or {}).get("unit")
    return {k: v for k, v in ({**setup, "kind": summary.get("kind", "load"), "length_unit": unit}).items()
            if k in WORKLOAD_KEYS + ("length_unit",)}


def unlike(a: dict[str, Any], b: dict[str, Any]) -> list[str]:
    """'key: A vs B' for each workload value that differs."""
    wa, wb = workload(a), workload(b)
    return [f"{k}: {wa.get(k)!r} vs {wb.get(k)!r}" for k in sorted(set(wa) | set(wb)) if wa.get(k) != wb.get(k)]


def point_pairs(a: dict[str, Any], b: dict[str, Any]) -> list[tuple[str, dict, dict]]:
    """(label, point of A, point of B): sweep points of equal concurrency, else the two summaries."""
    pa = {p.get("concurrency_point"): p for p in a.get("points") or []}
    pb = {p.get("concurrency_point"): p for p in b.get("points") or []}
    shared = [c for c in pa if c in pb]
    if shared:
        return [(f"c={c}", pa[c], pb[c]) for c in shared]
    ca, cb = a.get("concurrency_point"), b.get("concurrency_point")
    label = "accuracy" if a.get("kind") == "accuracy" else f"c={ca} vs c={cb}"
    return [(label, a, b)]


def compare(a: dict[str, Any], b: dict[str, Any], allow_unlike: bool = False) -> dict[str, Any]:
    """Every paired point's metric rows, with what was compared; unlike workloads are a UserError."""
    differences = unlike(a, b)
    if differences and not allow_unlike:
        raise UserError("the two runs measured different workloads: " + "; ".join(differences),
                        where="bench compare", fix="compare runs of one workload, or pass --allow-unlike")
    pairs = point_pairs(a, b)
    rows = [{"point": label, **row} for label, pa, pb in pairs for row in diff(pa, pb)]
    return {"points": [label for label, _, _ in pairs], "unlike": differences, "rows": rows}
