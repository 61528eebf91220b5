"""Run an accuracy task: send every item (× repeats) with bounded concurrency, record, score, gate."""

from __future__ import annotations

import asyncio
import math
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dsv4ctl.bench import metrics, records as rec_io
from dsv4ctl.bench.accuracy import gsm8k, mmlu
from dsv4ctl.bench.accuracy.items import Item
from dsv4ctl.bench.client import Endpoint, make_session, send
from dsv4ctl.bench.loadgen import BenchFailed, check_errors, preflight
from dsv4ctl.bench.schema import AccuracySummary
from dsv4ctl.bench.workloads import Prompt

TASKS = {"gsm8k": gsm8k, "mmlu": mmlu}


@dataclass
class AccRun:
    task: str
    items: list[Item]
    max_tokens: int
    concurrency: int = 16
    repeats: int = 1
    max_error_rate: float = 0.05
    stop: list[str] | None = None


async def run(ep: Endpoint, spec: AccRun, run_dir: Path, progress=None) -> None:
    """Send what requests.jsonl does not hold yet; each scored answer is appended at once."""
    done = rec_io.done_keys(run_dir, key=lambda r: (r["repeat"], r["index"]))
    todo = [(rep, it) for rep in range(spec.repeats) for it in spec.items if (rep, it.index) not in done]
    queue, counts = iter(todo), {"done": 0, "errors": 0}
    with rec_io.RecordWriter(run_dir) as writer:
        async with make_session(ep.base_url) as session:
            await preflight(session, ep)

            async def worker():
                for rep, item in queue:
                    rec = await ask(session, ep, spec, item, rep)
                    writer.write(rec)
                    counts["done"] += 1
                    counts["errors"] += not rec["ok"]
                    if progress:
                        progress(None, counts["done"], counts["errors"], len(todo))

            await asyncio.gather(*(worker() for _ in range(spec.concurrency)))
    check_errors(counts["errors"], counts["done"], spec.max_error_rate, spec.concurrency)


async def ask(session, ep: Endpoint, spec: AccRun, item: Item, rep: int) -> dict[str, Any]:
    start = time.time()
    res = await send(session, ep, ep.body(Prompt(item.index, item.prompt, spec.max_tokens, item.messages), spec.stop))
    pred, correct = TASKS[spec.task].score(res.text, item.gold) if res.ok else (None, False)
    return {"index": item.index, "repeat": rep, "ok": res.ok, "error": res.error, "start": start,
            "session": 0, "phase": "measure", "ttft_ms": res.ttft_ms, "e2e_ms": res.e2e_ms,
            "itl_ms": res.itl_ms, "prompt_tokens": res.prompt_tokens,
            "completion_tokens": res.completion_tokens, "subject": item.subject, "gold": item.gold,
            "pred": pred, "correct": correct, "output": res.text}


def stderr(per_repeat: list[float], n: int) -> float:
    """Std. error: across repeats when there are several, else binomial sqrt(p(1−p)/(n−1))."""
    if len(per_repeat) > 1:
        m = sum(per_repeat) / len(per_repeat)
        var = sum((a - m) ** 2 for a in per_repeat) / (len(per_repeat) - 1)
        return math.sqrt(var / len(per_repeat))
    p = per_repeat[0] if per_repeat else 0.0
    return math.sqrt(p * (1 - p) / max(n - 1, 1))


def summarize(task: str, recs: list[dict[str, Any]], setup: dict[str, Any],
              min_accuracy: float | None = None) -> AccuracySummary:
    """Accuracy (weighted by subject size = micro average), per-subject, per-repeat, stderr, gate."""
    last = {(r["repeat"], r["index"]): r for r in recs}  # a resumed retry replaces the failure
    recs = list(last.values())
    by_rep, by_subj = defaultdict(list), defaultdict(list)
    for r in recs:
        by_rep[r["repeat"]].append(r["correct"])
        if r.get("subject"):
            by_subj[r["subject"]].append(r["correct"])
    per_rep = [sum(v) / len(v) for _, v in sorted(by_rep.items())]
    acc = sum(r["correct"] for r in recs) / len(recs) if recs else 0.0
    ok = [r for r in recs if r["ok"]]
    dur = metrics.duration_s([{**r, "start": r["start"]} for r in recs]) if recs else 1e-9
    n_q = len({r["index"] for r in recs})
    return AccuracySummary(
        task=task, accuracy=acc, stderr=stderr(per_rep, n_q), num_questions=n_q, repeats=len(per_rep),
        per_repeat=per_rep, per_subject={s: sum(v) / len(v) for s, v in sorted(by_subj.items())},
        invalid_rate=sum(r["ok"] and r["pred"] is None for r in recs) / max(len(recs), 1),
        error_rate=(len(recs) - len(ok)) / max(len(recs), 1),
        passed=None if min_accuracy is None else acc >= min_accuracy, min_accuracy=min_accuracy,
        request_throughput=len(ok) / dur, output_throughput=sum(r.get("completion_tokens") or 0 for r in ok) / dur,
        setup=setup, **metrics.latency_blocks(ok, metrics.DEFAULT_PERCENTILES))


__all__ = ["AccRun", "BenchFailed", "TASKS", "run", "summarize"]
