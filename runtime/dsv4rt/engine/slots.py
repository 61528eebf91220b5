"""SlotManager: which cache slot each sequence owns, plus the prefix-reuse index (torch-free).

The model keeps static per-slot buffers (window ring, compressed pages, indexer keys, compressor
state; see shared/reference/v4-architecture.md §4). A slot is therefore the unit of KV allocation:

    free      never used, or evicted            -> clean; a new sequence starts at position 0
    cached    released; the slot's state still holds tokens[0:n] of the finished sequence
    used      owned by a running sequence

Prefix reuse: V4's state at position n (window ring + compressor remainder) is only valid for
continuing exactly at n, so a slot can serve a new prompt only when its whole cached history is a
prefix of that prompt (the multi-turn case: old prompt + old answer + new turn). Arbitrary shared
prefixes would need snapshots of the ring and compressor state, which we do not keep.
"""

from __future__ import annotations

from collections import OrderedDict


class SlotManager:
    def __init__(self, num_slots: int, enable_prefix_reuse: bool = True):
        if num_slots < 1:
            raise ValueError(f"num_slots must be >= 1 (got {num_slots})")
        self.num_slots = num_slots
        self.enable_prefix_reuse = enable_prefix_reuse
        self.free: list[int] = list(range(num_slots - 1, -1, -1))  # pop() hands out slot 0 first
        self.cached: OrderedDict[int, tuple[int, ...]] = OrderedDict()  # LRU first
        self.used: set[int] = set()

    @property
    def num_available(self) -> int:
        return len(self.free) + len(self.cached)

    def allocate(self, prompt_ids: list[int]) -> tuple[int, int]:
        """Take a slot for `prompt_ids`; return (slot, tokens already in its state)."""
        if not self.num_available:
            raise RuntimeError("no free slot")  # NOTE: the scheduler checks num_available first
        slot, reused = self._best_cached(prompt_ids)
        if slot is None:
            slot, reused = (self.free.pop(), 0) if self.free else (self.cached.popitem(last=False)[0], 0)
        else:
            del self.cached[slot]
        self.used.add(slot)
        return slot, reused

    def _best_cached(self, prompt_ids: list[int]) -> tuple[int | None, int]:
        """The cached slot with the longest history that prefixes the prompt, leaving >= 1 token to
        compute (the last prompt token must run to produce logits)."""
        best, best_len = None, 0
        if not self.enable_prefix_reuse:
            return best, best_len
        for slot, hist in self.cached.items():
            n = len(hist)
            if best_len < n < len(prompt_ids) and tuple(prompt_ids[:n]) == hist:
                best, best_len = slot, n
        return best, best_len

    def release(self, slot: int, computed_ids: list[int] | None) -> None:
        """Give `slot` back; `computed_ids` (tokens whose state the slot holds) enables reuse."""
        self.used.remove(slot)
        if self.enable_prefix_reuse and computed_ids:
            self.cached[slot] = tuple(computed_ids)
        else:
            self.free.append(slot)

    def check_integrity(self) -> None:
        """free + cached + used partition all slots (run when idle and in tests)."""
        parts = [set(self.free), set(self.cached), self.used]
        total = sum(len(p) for p in parts)
        if total != self.num_slots or set().union(*parts) != set(range(self.num_slots)):
            raise AssertionError(f"slot leak: free={self.free} cached={list(self.cached)} used={self.used}")
