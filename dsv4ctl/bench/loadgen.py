"""The load generator: closed-loop concurrency or open-loop Poisson rate, warmup, sweeps, resume.

A run only counts when a first real request returns the expected model name and the error rate stays
under the threshold; otherwise `BenchFailed` is raised (exit 1), never a "completed" run of errors.
"""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dsv4ctl.bench import records as rec_io
from dsv4ctl.bench.client import Endpoint, make_session, send
from dsv4ctl.bench.discover import server_info
from dsv4ctl.bench.sse import Result
from dsv4ctl.bench.workloads import Prompt
from dsv4ctl.errors import UserError


class BenchFailed(UserError):
    """The benchmark ran but must not count (wrong model, too many errors). Exit code 1."""

    exit_code = 1


@dataclass
class LoadPlan:
    """How to drive the endpoint: a concurrency ladder (closed loop) and/or a Poisson rate."""

    concurrencies: list[int | None]
    request_rate: float | None = None  # None: closed loop; else Poisson arrivals (capped by concurrency)
    warmup: int = 2
    max_error_rate: float = 0.05
    seed: int = 0
    session: int = 0
    skip: set = field(default_factory=set)  # (concurrency, index) already recorded (resume)



def to_record(res: Result, prompt: Prompt, start: float, plan: LoadPlan, conc: int | None,
              phase: str = "measure") -> dict[str, Any]:
    return {"index": prompt.index, "ok": res.ok, "error": res.error, "status": res.status,
            "session": plan.session, "start": start, "ttft_ms": res.ttft_ms, "e2e_ms": res.e2e_ms,
            "itl_ms": res.itl_ms, "prompt_tokens": res.prompt_tokens,
            "completion_tokens": res.completion_tokens, "tokens_from_usage": res.tokens_from_usage,
            "model": res.model, "spec_accept": res.spec_accept, "phase": phase, "concurrency": conc,
            "send_delay_ms": res.send_delay_ms, "extra": {"asked_output_len": prompt.output_len, **prompt.meta}}


async def preflight(session, ep: Endpoint) -> Result:
    """One real request: it must succeed and name the model we asked for (OME #781's lesson)."""
    probe = Prompt(-1, "Say hello.", 4)
    res = await send(session, ep, ep.body(probe))
    if not res.ok:
        raise BenchFailed(f"first request to {ep.url} failed: {res.error}",
                          fix="check --base-url, --model and that the server is healthy")
    if ep.model and res.model and res.model != ep.model:
        raise BenchFailed(f"server answered as model {res.model!r}, expected {ep.model!r}",
                          fix=f"pass --model {res.model} or point --base-url at the right server")
    return res


async def _one(session, ep, prompt, t_origin, plan, conc, on_done, phase="measure"):
    body = ep.body(prompt)
    start = time.perf_counter() - t_origin
    res = await send(session, ep, body)
    on_done(to_record(res, prompt, start, plan, conc, phase))


async def closed_loop(session, ep, prompts, plan, conc, on_done, t_origin) -> None:
    """`conc` workers, each sending its next prompt as soon as its last one finished."""
    queue = iter(prompts)

    async def worker():
        for prompt in queue:
            await _one(session, ep, prompt, t_origin, plan, conc, on_done)

    await asyncio.gather(*(worker() for _ in range(conc)))


async def open_loop(session, ep, prompts, plan, conc, on_done, t_origin) -> None:
    """Poisson arrivals at `plan.request_rate` req/s; `conc` (if set) caps requests in flight."""
    rng = random.Random(plan.seed)
    gate = asyncio.Semaphore(conc) if conc else None
    next_t, tasks = time.perf_counter(), []

    async def gated(prompt):
        if gate is None:
            return await _one(session, ep, prompt, t_origin, plan, conc, on_done)
        async with gate:
            await _one(session, ep, prompt, t_origin, plan, conc, on_done)

    for prompt in prompts:
        next_t += rng.expovariate(plan.request_rate)
        delay = next_t - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(gated(prompt)))
    await asyncio.gather(*tasks)


async def run_points(ep: Endpoint, prompts: list[Prompt], plan: LoadPlan, run_dir: Path,
                     progress=None) -> dict[str, Any]:
    """Preflight, then warmup + measurement per sweep point, appending every record at once."""
    with rec_io.RecordWriter(run_dir) as writer:
        async with make_session(ep.base_url) as session:
            probe = await preflight(session, ep)
            server = await server_info(session)  # engine + versions when exposed
            for conc in plan.concurrencies:
                todo = [p for p in prompts if (conc, p.index) not in plan.skip]
                await _point(session, ep, todo, plan, conc, writer, progress)
    return {"served_model": probe.model, "server": server}


async def _point(session, ep, prompts, plan, conc, writer, progress) -> None:
    counts = {"done": 0, "errors": 0}
    t_origin = time.perf_counter()
    warm = [Prompt(-(i + 2), p.text, p.output_len, p.messages) for i, p in enumerate(prompts[: plan.warmup])]
    await closed_loop(session, ep, warm, plan, conc or 1, lambda r: writer.write({**r, "phase": "warmup"}),
                      t_origin)

    def on_done(record):
        writer.write(record)
        counts["done"] += 1
        counts["errors"] += not record["ok"]
        if progress:
            progress(conc, counts["done"], counts["errors"], len(prompts))

    t_origin = time.perf_counter()
    if plan.request_rate:
        await open_loop(session, ep, prompts, plan, conc, on_done, t_origin)
    else:
        await closed_loop(session, ep, prompts, plan, conc or 1, on_done, t_origin)
    check_errors(counts["errors"], counts["done"], plan.max_error_rate, conc)


def check_errors(errors: int, done: int, limit: float, conc: int | None) -> None:
    if done and errors / done > limit:
        raise BenchFailed(f"{errors}/{done} requests failed at concurrency {conc} "
                          f"(error rate {errors / done:.1%} > {limit:.0%}); see requests.jsonl",
                          fix="fix the server errors or raise --max-error-rate")
