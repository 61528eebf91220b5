"""CUDA graphs of a speculative round (engine/speculative.py) at fixed batch sizes.

A round is two replays with the host's acceptance between them: `propose` (save the undo logs, the
MTP's draft chain, the target's verify forward over k+1 tokens) and `settle` (roll back what each
row rejected, the MTP's extend, the next drafts). Each batch size has its own undo logs, whose saved
rows live in the graphs' memory. As in cuda_graphs.py, a batch of b rows replays the smallest
captured size ≥ b; padding rows run on the scratch slot no sequence owns (`pad_slot`) and keep
their whole span (nothing to roll back). The cache must not be re-allocated after capture. Graphs
are keyed by (batch size, horizon, part), each horizon captured on first use (cuda_graphs.py).
"""

from __future__ import annotations

import logging

import torch

from dsv4rt.engine.cuda_graphs import DEFAULT_SIZES, capture_sizes

log = logging.getLogger(__name__)


class SpecGraphs:
    def __init__(self, spec, max_batch: int, pad_slot: int, sizes=DEFAULT_SIZES):
        self.spec, self.pad_slot = spec, pad_slot
        self.sizes = capture_sizes(max_batch, sizes)
        n, k1, dev = self.sizes[-1], spec.span, spec.draft.device
        self.last = torch.zeros(n, dtype=torch.long, device=dev)
        self.start = torch.zeros(n, dtype=torch.long, device=dev)
        self.slots = torch.full((n,), pad_slot, dtype=torch.long, device=dev)
        self.ext = torch.zeros(n, k1, dtype=torch.long, device=dev)
        self.keep = torch.full((n,), k1, dtype=torch.long, device=dev)
        self.undo = {bs: spec.undo_logs() for bs in self.sizes}
        self.out: dict[int, tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = {}
        self.graphs: dict[tuple[int, int, str], torch.cuda.CUDAGraph] = {}
        self.horizon = spec.model.max_seq_len  # of the graphs being captured or replayed
        self.horizons: list[int] = []
        self._bs, self._pool = 0, None

    def _propose(self, bs: int):
        return self.spec.propose(self.last[:bs], self.start[:bs], self.slots[:bs], self.undo[bs], self.horizon)

    def _body(self, bs: int, part: str) -> None:
        if part == "propose":
            self.out[bs] = self._propose(bs)
        else:
            self.spec.settle(self.ext[:bs], self.out[bs][2], self.start[:bs], self.slots[:bs], self.keep[:bs],
                             self.undo[bs])

    def _warm_up(self) -> None:
        """Every size once on a side stream (Triton compiles, lazy weight stacking)."""
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for bs in reversed(self.sizes):
                self._body(bs, "propose")
                self._body(bs, "settle")
        torch.cuda.current_stream().wait_stream(side)

    def _record(self, bs: int, part: str, pool):
        """-> (the graph of `part` at batch size bs, the pool the next capture shares)."""
        g = torch.cuda.CUDAGraph()
        with torch.cuda.graph(g, pool=pool):
            self._body(bs, part)
        return g, g.pool()

    @torch.inference_mode()
    def capture(self, horizon: int | None = None) -> None:
        """Warm up, then capture every size at `horizon` (None: the capacity), largest first so the
        shared memory pool is sized once. The inputs are reset to padding rows first (scratch slot)."""
        self.horizon = self.spec.model.max_seq_len if horizon is None else horizon
        self.slots.fill_(self.pad_slot)
        self.start.zero_()
        self.keep.fill_(self.spec.span)
        self._warm_up()
        pool = self._pool
        for bs in reversed(self.sizes):
            for part in ("propose", "settle"):
                self.graphs[bs, self.horizon, part], pool = self._record(bs, part, pool)
        self._pool = pool
        self.horizons.append(self.horizon)
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        log.info("captured speculative CUDA graphs (k=%d) at batch sizes %s, horizon %d", self.spec.steps,
                 self.sizes, self.horizon)

    def size_for(self, b: int) -> int | None:
        return next((s for s in self.sizes if s >= b), None)

    def propose(self, last: torch.Tensor, start: torch.Tensor, slots: torch.Tensor, horizon: int | None = None):
        """-> ((ids, logits, hidden) of the b rows, views valid until the next replay; the undo logs).
        horizon: > every start + k (None: the capacity); captured on first use, before the inputs are set."""
        horizon = self.spec.model.max_seq_len if horizon is None else horizon
        if horizon not in self.horizons:
            self.capture(horizon)
        self.horizon = horizon
        b = last.shape[0]
        bs = self._bs = self.size_for(b)
        self.last[:b].copy_(last)
        self.start[:b].copy_(start)
        self.slots[:b].copy_(slots)
        self.start[b:bs].zero_()
        self.slots[b:bs].fill_(self.pad_slot)
        self.keep[b:bs].fill_(self.spec.span)
        self.graphs[bs, horizon, "propose"].replay()
        return tuple(t[:b] for t in self.out[bs]), self.undo[bs]

    def settle(self, ext: torch.Tensor, keep: torch.Tensor) -> None:
        """The second half of the round `propose` started (same rows)."""
        b = ext.shape[0]
        self.ext[:b].copy_(ext)
        self.keep[:b].copy_(keep)
        self.graphs[self._bs, self.horizon, "settle"].replay()
