"""LLMEngine (schedule -> run -> postprocess, synchronous) and AsyncEngine (a worker thread that
runs steps and streams each request's tokens to its asyncio queue)."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import AsyncIterator, Callable

from dsv4rt.engine.scheduler import QueueFull, Scheduler
from dsv4rt.engine.sequence import FinishReason, Sequence, find_stop

log = logging.getLogger(__name__)


@dataclass
class StepOutput:
    token_id: int | None  # None when the request ended without a new token (abort, error)
    logprob: object
    finished: bool
    finish_reason: FinishReason | None
    error: str | None = None
    text: str = ""  # the decoded output so far (snapshot; the engine thread moves on)


class LLMEngine:
    def __init__(self, runner, scheduler: Scheduler, decode: Callable[[list[int]], str] | None = None):
        self.runner, self.scheduler, self.decode = runner, scheduler, decode
        self.context_length = runner.context_length
        self.prompt_tokens_total = 0
        self.generated_tokens_total = 0
        self.forward_seconds_total = 0.0  # in runner.run (model, sampling); the rest of a step is host work

    def add(self, seq: Sequence) -> None:
        if len(seq.prompt_ids) >= self.context_length:
            raise ValueError(f"prompt has {len(seq.prompt_ids)} tokens; context length is {self.context_length}")
        self.scheduler.add(seq)

    def step(self) -> list[tuple[Sequence, StepOutput]]:
        batch = self.scheduler.schedule()
        if not batch:
            return []
        t0 = time.perf_counter()
        sampled = self.runner.run(batch)
        self.forward_seconds_total += time.perf_counter() - t0
        for seq, n in batch.prefill:
            seq.num_computed += n
            self.prompt_tokens_total += n
        decoding = {s.seq_id for s in batch.decode}
        outs = []
        for seq in self._in_order(batch, sampled):
            outs += self._emit_or_fail(seq, sampled[seq.seq_id], seq.seq_id in decoding)
        return outs

    @staticmethod
    def _in_order(batch, sampled) -> list[Sequence]:
        seqs = batch.decode + [s for s, _ in batch.prefill]
        return [s for s in seqs if s.seq_id in sampled]

    def _emit_or_fail(self, seq: Sequence, result, decoding: bool) -> list[tuple[Sequence, StepOutput]]:
        """A request whose sampling or state update raised ends alone, with its error."""
        try:
            if isinstance(result, Exception):
                raise result
            return self._emit(seq, result, decoding)
        except Exception as e:  # noqa: BLE001 - one bad request must not end the others
            log.exception("request %d failed", seq.seq_id)
            return [self._fail(seq, f"request failed: {e}")]

    def _fail(self, seq: Sequence, message: str) -> tuple[Sequence, StepOutput]:
        self.scheduler.finish(seq, FinishReason.ABORT)
        self.runner.forget(seq.seq_id)
        return seq, StepOutput(None, None, True, FinishReason.ABORT, message)

    def _emit(self, seq: Sequence, tokens: list, decoding: bool) -> list[tuple[Sequence, StepOutput]]:
        """This step's tokens of `seq` in order (several after a speculative verify). A decoding row's
        fed tokens become computed one by one; a request that ends inside the span drops the rest and
        rolls the slot back to what it kept (`runner.truncate`)."""
        outs = []
        for i, (token, logprob) in enumerate(tokens):
            seq.num_computed += int(decoding)
            outs.append(self._postprocess(seq, token, logprob))
            if outs[-1][1].finished:
                if i + 1 < len(tokens):
                    self.runner.truncate(seq, i + 1)
                break
        return outs

    def _postprocess(self, seq: Sequence, token: int, logprob) -> tuple[Sequence, StepOutput]:
        seq.append(token, logprob)
        self.generated_tokens_total += 1
        reason = seq.check_token_stop(self.context_length)
        if self.decode is not None and (seq.params.stop or seq.keep_text):
            reason = self._update_text(seq) or reason
        if reason is not None:
            self.scheduler.finish(seq, reason)
            self.runner.forget(seq.seq_id)
        return seq, StepOutput(token, logprob, reason is not None, reason, text=seq.text)

    def resume(self, seq: Sequence, token: int, logprob=None) -> list[tuple[Sequence, StepOutput]]:
        """A sequence whose prompt state another worker computed (PD decode): take its first token
        there and decode on from here."""
        seq.num_computed = len(seq.prompt_ids)
        return [self._postprocess(seq, token, logprob)]

    def _update_text(self, seq: Sequence) -> FinishReason | None:
        """Decode the new token into `seq.text`; a stop string ends the request and is cut from it."""
        longest = max((len(s) for s in seq.params.stop), default=0)
        start = max(0, len(seq.text) - longest)
        seq.text = self._detokenize(seq)
        cut = find_stop(seq.text, seq.params.stop, start)
        if cut < 0:
            return None
        seq.text = seq.text[:cut]
        return FinishReason.STOP

    def _detokenize(self, seq: Sequence) -> str:
        """The output's text, decoding only a short window of tokens a step (re-decoding the whole output
        each token was quadratic in its length, on the engine's thread): `seq.detok` holds the text
        that is final, and the tokens [start, read) it ended with, which give the next token its context
        (a leading space, a multi-byte character). A tail ending in U+FFFD may still be completed by the
        next token, so it stays pending (in the text returned, not in the stable part)."""
        stable, start, read = seq.detok
        ids = seq.output_ids
        prefix, full = self.decode(ids[start:read]), self.decode(ids[start:])
        if not full.startswith(prefix):  # the window's context changed its own text: decode it all
            stable, prefix, full = "", "", self.decode(ids)
            start = read = 0
        tail = full[len(prefix):]
        if tail.endswith("\ufffd"):
            seq.detok = (stable, start, read)
            return stable + tail
        seq.detok = (stable + tail, read, len(ids))
        return stable + tail

    def fail_all(self, message: str) -> list[tuple[Sequence, StepOutput]]:
        """A step raised: end every request with an error instead of killing the loop."""
        return [self._fail(s, message) for s in [*self.scheduler.running, *self.scheduler.waiting]]


class AsyncEngine:
    """Owns the LLMEngine from one worker thread; the event loop only submits, aborts and reads."""

    def __init__(self, engine: LLMEngine, on_step: Callable[[int, int, float], None] | None = None):
        self.engine = engine
        self.on_step = on_step  # metrics hook: (prompt tokens, generated tokens, step seconds)
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._inbox: deque[Sequence] = deque()
        self._aborts: deque[int] = deque()
        self._calls: deque[tuple[Callable, asyncio.Future]] = deque()
        self._streams: dict[int, tuple[asyncio.AbstractEventLoop, asyncio.Queue]] = {}
        self._stop = False
        self._thread = threading.Thread(target=self._run, name="dsv4rt-engine", daemon=True)

    @property
    def scheduler(self) -> Scheduler:
        return self.engine.scheduler

    @property
    def is_alive(self) -> bool:
        return self._thread.is_alive()

    def start(self) -> None:
        self._thread.start()

    def shutdown(self) -> None:
        self._stop = True
        self._wake.set()
        self._thread.join(timeout=10)

    def submit(self, seq: Sequence) -> asyncio.Queue:
        """Queue `seq`; raise QueueFull at once (HTTP 503) when the waiting queue is full."""
        q: asyncio.Queue = asyncio.Queue()
        with self._lock:
            if len(self.scheduler.waiting) + len(self._inbox) >= self.scheduler.max_queue:
                raise QueueFull(f"waiting queue is full ({self.scheduler.max_queue} requests)")
            self._streams[seq.seq_id] = (asyncio.get_running_loop(), q)
            self._inbox.append(seq)
        self._wake.set()
        return q

    def abort(self, seq_id: int) -> None:
        with self._lock:
            self._aborts.append(seq_id)
            self._streams.pop(seq_id, None)
        self._wake.set()

    async def call(self, fn: Callable[[LLMEngine], list | None]):
        """Run `fn(engine)` on the engine thread between steps (slot state changes from the event loop);
        the (seq, StepOutput) pairs it returns go to their streams. Returns what fn returned."""
        fut = asyncio.get_running_loop().create_future()
        with self._lock:
            self._calls.append((fn, fut))
        self._wake.set()
        return await fut

    def open_stream(self, seq: Sequence) -> AsyncIterator[StepOutput]:
        """Submit now (so a full queue raises QueueFull before any response starts) and return the
        stream of outputs; leaving the stream early (client gone) aborts and frees the slot."""
        return self._stream(seq, self.submit(seq))

    async def _stream(self, seq: Sequence, q: asyncio.Queue) -> AsyncIterator[StepOutput]:
        done = False
        try:
            while not done:
                out: StepOutput = await q.get()
                done = out.finished
                yield out
        finally:
            if not done:
                self.abort(seq.seq_id)

    def _drain(self) -> None:
        with self._lock:
            while self._inbox:
                self.scheduler.add(self._inbox.popleft())  # capacity was checked in submit
            while self._aborts:
                seq = self.scheduler.abort(self._aborts.popleft())
                if seq is not None:
                    self.engine.runner.forget(seq.seq_id)
            calls = list(self._calls)
            self._calls.clear()
        for fn, fut in calls:
            self._run_call(fn, fut)

    def _run_call(self, fn, fut: asyncio.Future) -> None:
        try:
            res, err = fn(self.engine), None
        except Exception as e:  # noqa: BLE001 - handed to the awaiting coroutine
            res, err = None, e
        if isinstance(res, list):
            self._dispatch(res)

        def settle():
            if not fut.done():
                fut.set_exception(err) if err is not None else fut.set_result(res)
        try:
            fut.get_loop().call_soon_threadsafe(settle)
        except RuntimeError:  # the loop already closed (shutdown)
            pass

    def _run(self) -> None:
        while not self._stop:
            self._drain()
            if not self.scheduler.has_work:
                self.scheduler.slots.check_integrity()
                self._wake.wait(timeout=1.0)
                self._wake.clear()
                continue
            t0, p0 = time.perf_counter(), self.engine.prompt_tokens_total
            try:
                outs = self.engine.step()
            except Exception as e:  # noqa: BLE001 - a bad step must end requests, not the server
                log.exception("engine step failed")
                outs = self.engine.fail_all(f"engine error: {e}")
            if self.on_step is not None:
                gen = sum(o.token_id is not None for _, o in outs)
                self.on_step(self.engine.prompt_tokens_total - p0, gen, time.perf_counter() - t0)
            self._dispatch(outs)

    def _dispatch(self, outs: list[tuple[Sequence, StepOutput]]) -> None:
        with self._lock:
            targets = [(self._streams.get(s.seq_id), o) for s, o in outs]
            for s, o in outs:
                if o.finished:
                    self._streams.pop(s.seq_id, None)
        for target, out in targets:
            if target is not None:
                loop, q = target
                try:
                    loop.call_soon_threadsafe(q.put_nowait, out)
                except RuntimeError:  # the server's loop already closed (shutdown)
                    pass


def build_engine(cfg, model, max_seq_len: int, decode=None) -> LLMEngine:
    """Size the slot pool from the byte budget and wire slots -> scheduler -> runner -> engine."""
    import torch

    from dsv4rt.engine.model_runner import ModelRunner, kv_budget_bytes, size_slots
    from dsv4rt.engine.slots import SlotManager

    device = torch.device(cfg.device)
    ctx = min(cfg.context_length or max_seq_len, max_seq_len)
    budget = kv_budget_bytes(device, cfg.mem_fraction_static, cfg.kv_budget_bytes)
    num_slots = size_slots(model.cache_bytes_per_slot(ctx), budget, cfg.max_running_requests, ctx)
    graph_max = min(num_slots, cfg.cuda_graph_max_bs or num_slots)
    if cfg.torch_compile:  # before the runner: graph capture's warm-up is what compiles
        from dsv4rt.compiled import compile_decode

        compile_decode(model)
    runner = ModelRunner(model, num_slots, ctx, device, cfg.cuda_graphs, (graph_max, cfg.cuda_graph_bs),
                         cfg.spec_steps)
    slots = SlotManager(num_slots, cfg.enable_prefix_reuse)
    sched = Scheduler(slots, cfg.max_running_requests, cfg.max_queue, cfg.chunked_prefill_size)
    return LLMEngine(runner, sched, decode)
