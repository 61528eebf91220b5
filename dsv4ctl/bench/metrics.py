"""Metrics from request records: TTFT, ITL, TPOT, E2E percentiles, throughput, goodput, error rate.

Definitions follow sglang.bench_serving so numbers are comparable: TPOT = (E2E − TTFT)/(out − 1),
ITL = gaps between successive content chunks, concurrency = Σ latency / duration.
"""

from __future__ import annotations

import math
from collections import defaultdict
from typing import Any, Iterable

from dsv4ctl.bench.schema import LoadSummary, Stats

DEFAULT_PERCENTILES = (50.0, 90.0, 99.0)


def percentile(sorted_vals: list[float], q: float) -> float:
    """Linear-interpolated percentile (numpy's default) of an already sorted list."""
    if not sorted_vals:
        return math.nan
    pos = (len(sorted_vals) - 1) * q / 100.0
    lo, hi = math.floor(pos), math.ceil(pos)
    return sorted_vals[lo] + (sorted_vals[hi] - sorted_vals[lo]) * (pos - lo)


def stats(values: Iterable[float], percentiles: Iterable[float] = DEFAULT_PERCENTILES) -> Stats:
    """mean/median/std/p90/p99 plus pNN for each requested percentile; None when empty."""
    vals = sorted(v for v in values if v is not None)
    if not vals:
        return Stats()
    mean = sum(vals) / len(vals)
    std = math.sqrt(sum((v - mean) ** 2 for v in vals) / len(vals))
    extra = {_pkey(q): percentile(vals, q) for q in percentiles}
    extra.update(mean=mean, median=percentile(vals, 50), std=std, p90=percentile(vals, 90),
                 p99=percentile(vals, 99), count=len(vals))
    return Stats(**extra)


def _pkey(q: float) -> str:
    return f"p{q:g}".replace(".", "_")


def tpot_ms(rec: dict[str, Any]) -> float | None:
    out = rec.get("completion_tokens") or 0
    if out < 2 or rec.get("ttft_ms") is None:
        return None
    return (rec["e2e_ms"] - rec["ttft_ms"]) / (out - 1)


def duration_s(records: list[dict[str, Any]]) -> float:
    """Wall time the run spent measuring: first start to last end, summed over resumed sessions."""
    spans: dict[int, list[float]] = defaultdict(lambda: [math.inf, -math.inf])
    for r in records:
        span = spans[r.get("session", 0)]
        span[0] = min(span[0], r["start"])
        span[1] = max(span[1], r["start"] + (r.get("e2e_ms") or 0.0) / 1000.0)
    return sum(max(hi - lo, 1e-9) for lo, hi in spans.values())


def meets_slo(rec: dict[str, Any], slo: dict[str, float]) -> bool:
    """A request counts for goodput when every given SLO (ms) holds: ttft, tpot, e2e, itl(p99)."""
    values = {"ttft": rec.get("ttft_ms"), "tpot": tpot_ms(rec), "e2e": rec.get("e2e_ms"),
              "itl": max(rec.get("itl_ms") or [0.0])}
    return all(values[k] is not None and values[k] <= limit for k, limit in slo.items())


def measured(records: Iterable[dict[str, Any]], concurrency: int | None = None) -> list[dict[str, Any]]:
    """Records of the measuring phase (warmup excluded), optionally of one sweep point."""
    return [r for r in records if r.get("phase", "measure") == "measure"
            and (concurrency is None or r.get("concurrency") == concurrency)]


def latency_blocks(ok: list[dict[str, Any]], pcts: Iterable[float]) -> dict[str, Stats]:
    pcts = tuple(pcts)
    return {
        "ttft_ms": stats((r["ttft_ms"] for r in ok), pcts),
        "itl_ms": stats((v for r in ok for v in r.get("itl_ms") or ()), pcts),
        "tpot_ms": stats((tpot_ms(r) for r in ok), pcts),
        "e2e_ms": stats((r["e2e_ms"] for r in ok), pcts),
    }


def summarize_load(records: Iterable[dict[str, Any]], *, gpus: int | None = None,
                   slo: dict[str, float] | None = None, percentiles: Iterable[float] = DEFAULT_PERCENTILES,
                   concurrency: int | None = None, setup: dict[str, Any] | None = None) -> LoadSummary:
    """The whole load summary of the measured records; sglang.bench_serving's flat keys included."""
    recs = measured(records, concurrency)
    ok = [r for r in recs if r.get("ok")]
    dur = duration_s(recs) if recs else 1e-9
    n_in = sum(r.get("prompt_tokens") or 0 for r in ok)
    n_out = sum(r.get("completion_tokens") or 0 for r in ok)
    blocks = latency_blocks(ok, percentiles)
    accept = [r["spec_accept"] for r in ok if r.get("spec_accept") is not None]
    good = sum(meets_slo(r, slo) for r in ok) if slo else None
    summary = LoadSummary(
        completed=len(ok), failed=len(recs) - len(ok),
        error_rate=(len(recs) - len(ok)) / len(recs) if recs else 1.0, duration=dur,
        total_input_tokens=n_in, total_output_tokens=n_out,
        request_throughput=len(ok) / dur, input_throughput=n_in / dur,
        output_throughput=n_out / dur, total_throughput=(n_in + n_out) / dur,
        output_throughput_per_gpu=n_out / dur / gpus if gpus else None,
        total_throughput_per_gpu=(n_in + n_out) / dur / gpus if gpus else None,
        output_throughput_per_user=_per_user(blocks["tpot_ms"]),
        concurrency=sum(r["e2e_ms"] for r in ok) / 1000.0 / dur,
        goodput=good / dur if slo else None, slo_attainment=good / len(recs) if slo and recs else None,
        accept_length=sum(accept) / len(accept) if accept else None,
        send_delay_ms=stats((r.get("send_delay_ms") for r in recs), percentiles),
        setup=setup or {}, **blocks)
    summary.__pydantic_extra__.update(flat_keys(summary))
    return summary


def _per_user(tpot: Stats) -> float | None:
    """Tokens/s one user sees while decoding (1000 / median TPOT), the x-axis of the Pareto plot."""
    return 1000.0 / tpot.median if tpot.median else None


def flat_keys(summary: LoadSummary) -> dict[str, float | None]:
    """sglang.bench_serving's key names (mean_ttft_ms, p99_itl_ms, …) for tools that read those."""
    flat: dict[str, float | None] = {}
    for metric in ("ttft", "itl", "tpot", "e2e"):
        block: Stats = getattr(summary, f"{metric}_ms")
        name = "e2e_latency" if metric == "e2e" else metric
        for stat in ("mean", "median", "std", "p90", "p99"):
            flat[f"{stat}_{name}_ms"] = getattr(block, stat)
    return flat
