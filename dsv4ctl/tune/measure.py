"""One candidate's load points against a running endpoint, with bench's own load generator.

The ladder runs from the lowest concurrency up, on one server (only the client-side setting changes).
A point stops sending once it can no longer meet the SLO (`objective.Watch`), and the ladder stops at
the first point that misses it: a higher concurrency only adds latency."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dsv4ctl.bench import metrics
from dsv4ctl.bench import records as rec_io
from dsv4ctl.bench.workloads import Prompt
from dsv4ctl.tune.objective import Slo, Watch


@dataclass
class LoadSpec:
    """The workload (bench's options, as `bench load` takes them) and the concurrency ladder. Lengths
    are tokens of the served checkpoint's tokenizer (`tokenizer`, a folder), as in `bench load`; words
    only where there is none (e.g. an endpoint someone else runs; the request's `length_unit` says so)."""

    workload: dict[str, Any]
    concurrencies: list[int]
    warmup: int = 2
    stop_early: bool = True
    extra: dict[str, Any] = field(default_factory=dict)
    tokenizer: str | None = None
    _tokens: Any = field(default=None, repr=False)  # bench's TokenSpec once built; False: none found

    def prompts(self, ep=None) -> list[Prompt]:
        """The point's prompts; without an endpoint (checking the workload before any server starts),
        lengths in words. The token spec (id pool, the server's template overhead) is built once."""
        from dsv4ctl.bench.load_cmd import build_prompts, token_spec
        from dsv4ctl.bench.options import LoadOptions

        opts = LoadOptions(**self.workload)
        if ep is not None and self._tokens is None:
            self._tokens = self.tokenizer is not None and (token_spec(opts, ep, {"model_path": self.tokenizer})[0]
                                                           or False)
        return build_prompts(opts, self._tokens or None)

    def as_dict(self) -> dict[str, Any]:
        return {"workload": {k: str(v) if isinstance(v, Path) else v for k, v in self.workload.items()},
                "concurrencies": self.concurrencies, "warmup": self.warmup, "tokenizer": self.tokenizer,
                "length_unit": "tokens" if self.tokenizer else "words"}


def workload_text(load: dict[str, Any]) -> str:
    """One line for reports: 'random, ISL 512, OSL 256, 128 prompts per point, concurrency [16, 64]'."""
    w = load["workload"]
    extra = {"shared-prefix": f", {w.get('prefix_groups')} prefixes of {w.get('prefix_len')}",
             "trace": f", trace {w.get('trace')}"}.get(w.get("workload"), "")
    spread = f" ±{w['range_ratio']:.0%}" if w.get("range_ratio") else ""
    return (f"{w.get('workload')}{extra}, ISL {w.get('input_len')}{spread}, OSL {w.get('output_len')}{spread}, "
            f"{w.get('num_prompts')} prompts per point, concurrency {load['concurrencies']}")


async def _drive(ep, prompts: list[Prompt], conc: int, out: Path, watch: Watch, warmup: int, stop_early: bool):
    from dsv4ctl.bench.client import make_session
    from dsv4ctl.bench.loadgen import LoadPlan, closed_loop, preflight

    lp = LoadPlan([conc], warmup=warmup)
    with rec_io.RecordWriter(out) as writer:
        async with make_session(ep.base_url) as session:
            await preflight(session, ep)
            warm = [Prompt(-(i + 2), p.text, p.output_len, p.messages) for i, p in enumerate(prompts[:warmup])]
            await closed_loop(session, ep, warm, lp, conc, lambda r: writer.write({**r, "phase": "warmup"}),
                              time.perf_counter())

            def on_done(record):
                writer.write(record)
                watch.add(record)

            def feed():  # workers share this generator: it ends the point once the SLO is out of reach
                for p in prompts:
                    if stop_early and watch.hopeless:
                        return
                    yield p

            await closed_loop(session, ep, feed(), lp, conc, on_done, time.perf_counter())


def point(ep, load: LoadSpec, conc: int, slo: Slo, out: Path, gpus: int) -> dict[str, Any]:
    """Run one load point; its requests.jsonl and summary.json go to `out`; returns its row."""
    from dsv4ctl.bench.service import run_async

    prompts = load.prompts(ep)
    watch = Watch(slo, len(prompts))
    run_async(_drive(ep, prompts, conc, out, watch, load.warmup, load.stop_early))
    summary = metrics.summarize_load(rec_io.read_records(out), gpus=gpus or None, slo=slo.limits_ms or None,
                                     percentiles=(50.0, slo.percentile, 99.0), concurrency=conc)
    rec_io.write_json(out / rec_io.SUMMARY_FILE, summary.model_dump())
    return row(summary, conc, watch, gpus)


def row(summary, conc: int, watch: Watch, gpus: int) -> dict[str, Any]:
    """The numbers the search and the report use from one point's summary."""
    pkey = f"p{watch.slo.percentile:g}".replace(".", "_")
    return {"concurrency": conc, "completed": summary.completed, "failed": summary.failed,
            "early_stopped": watch.seen < watch.total, "slo_met": watch.met(),
            "output_throughput": summary.output_throughput,
            "per_gpu": summary.output_throughput / max(gpus, 1),
            "per_user": summary.output_throughput_per_user, "goodput": summary.goodput or 0.0,
            "ttft_ms": getattr(summary.ttft_ms, pkey, None), "tpot_ms": getattr(summary.tpot_ms, pkey, None),
            "percentile": watch.slo.percentile}


def ladder(ep, load: LoadSpec, slo: Slo, out: Path, gpus: int, on_point=None) -> list[dict[str, Any]]:
    """Every concurrency of the ladder, lowest first, until one misses the SLO."""
    rows = []
    for conc in sorted(load.concurrencies):
        r = point(ep, load, conc, slo, out / f"c{conc}", gpus)
        rows.append(r)
        if on_point:
            on_point(r)
        if load.stop_early and not r["slo_met"]:
            break
    return rows
