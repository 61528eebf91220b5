"""Scheduler: waiting queue, running set and the per-step batch (policy only, torch-free).

Each step runs chunked prefill under a token budget *and* one decode token for every running
sequence whose prompt is done, so new arrivals never stall streams already in flight. A slot holds
the whole context (static per-slot buffers), so a running sequence can never run out of KV: when
no slot is free, new requests wait; when the waiting queue is full, `add` refuses (HTTP 503).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from dsv4rt.engine.sequence import FinishReason, Sequence, SeqStatus
from dsv4rt.engine.slots import SlotManager


class QueueFull(RuntimeError):
    """The bounded waiting queue is full; the caller should retry later."""


@dataclass
class ScheduledBatch:
    prefill: list[tuple[Sequence, int]] = field(default_factory=list)  # (seq, tokens this step)
    decode: list[Sequence] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.prefill or self.decode)


class Scheduler:
    def __init__(self, slots: SlotManager, max_running: int, max_queue: int, chunk_size: int):
        self.slots = slots
        self.max_running = min(max_running, slots.num_slots)
        self.max_queue = max_queue
        self.chunk_size = chunk_size
        self.waiting: deque[Sequence] = deque()
        self.running: list[Sequence] = []
        self.held: dict[int, Sequence] = {}  # finished, slot kept until release_held (PD transfers)

    @property
    def has_work(self) -> bool:
        """Something a step can run: sequences parked for remote state alone are no work."""
        return any(not s.awaiting_state for s in self.running) or bool(self.waiting and self._can_admit())

    def add(self, seq: Sequence) -> None:
        if len(self.waiting) >= self.max_queue:
            raise QueueFull(f"waiting queue is full ({self.max_queue} requests)")
        self.waiting.append(seq)

    def schedule(self) -> ScheduledBatch:
        batch = ScheduledBatch(decode=[s for s in self.running if not s.in_prefill])
        budget = self.chunk_size
        for seq in self.running:  # unfinished chunked prefills go first (FCFS)
            if seq.in_prefill and not seq.awaiting_state and budget > 0:
                budget -= self._take_chunk(batch, seq, budget)
        while self.waiting and budget > 0 and self._can_admit():
            seq = self.waiting.popleft()
            self._admit(seq)
            if not seq.awaiting_state:
                budget -= self._take_chunk(batch, seq, budget)
        return batch

    def _can_admit(self) -> bool:
        return len(self.running) < self.max_running and self.slots.num_available > 0

    def _admit(self, seq: Sequence) -> None:
        # a remote sequence's whole state is written into its slot, so it reuses no cached prefix
        seq.slot, reused = self.slots.allocate([] if seq.remote is not None else seq.prompt_ids)
        seq.num_computed = seq.num_cached = reused
        seq.status = SeqStatus.RUNNING
        self.running.append(seq)
        if seq.remote is not None:
            seq.remote.on_admit(seq)

    @staticmethod
    def _take_chunk(batch: ScheduledBatch, seq: Sequence, budget: int) -> int:
        n = min(len(seq.prompt_ids) - seq.num_computed, budget)
        batch.prefill.append((seq, n))
        return n

    def finish(self, seq: Sequence, reason: FinishReason) -> None:
        """Mark finished and give the slot back at once (its state kept for prefix reuse)."""
        if seq.is_finished:
            return
        seq.status, seq.finish_reason = SeqStatus.FINISHED, reason
        if seq in self.running:
            self.running.remove(seq)
            if seq.hold_slot:
                self.held[seq.seq_id] = seq
            else:
                self.slots.release(seq.slot, seq.token_ids[: seq.num_computed])
        elif seq in self.waiting:
            self.waiting.remove(seq)

    def release_held(self, seq_id: int) -> None:
        """Give back a held slot (no-op when not held): its state has been sent, or cannot be written any more."""
        seq = self.held.pop(seq_id, None)
        if seq is not None:
            seq.hold_slot = False
            self.slots.release(seq.slot, seq.token_ids[: seq.num_computed])

    def abort(self, seq_id: int) -> Sequence | None:
        for seq in [*self.waiting, *self.running]:
            if seq.seq_id == seq_id:
                self.finish(seq, FinishReason.ABORT)
                return seq
        return None

    def num_tokens_in_use(self) -> int:
        return sum(s.num_computed for s in self.running)
