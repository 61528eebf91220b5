"""CUDA graphs of the decode step (one token per row) at fixed batch sizes.

A decode batch of b rows replays the graph of the smallest captured size ≥ b. Inputs live in static
buffers; padding rows decode into a scratch slot that no sequence owns (`pad_slot`, the slot after
the runner's last), so they never touch real state. Capture runs the model on the scratch slot
only. The model's cache buffers must not be re-allocated after capture.

Graphs are keyed by (batch size, horizon): the horizon (`horizon_for`) bounds the positions a step
reads (`Transformer.forward`), so a step's work follows the longest live sequence, not the context
capacity (at 1M tokens of capacity the CSA indexer otherwise scored 262,144 entries a row per step).
Horizons are few (2048·4^k up to the capacity); each is captured on first use, at every batch size.

With `greedy=True` each graph also feeds its argmax back: it writes the next token into the static
ids and advances the positions, so `advance(bs)` decodes one greedy step per replay with nothing
launched between replays (outside the graph that feedback was three more launches a step, each
waiting for its stream launch; docs/performance.md, round 6).
"""

from __future__ import annotations

import logging

import torch

log = logging.getLogger(__name__)
DEFAULT_SIZES = (1, 2, 4, 8, 16, 24, 32, 48, 64, 96, 128, 160, 192, 256)
HORIZON_BASE, HORIZON_GROWTH = 2048, 4


def horizon_for(need: int, capacity: int) -> int:
    """The step's horizon: the smallest 2048·4^k >= need (the longest row's position after the step),
    at most the capacity. Buckets, not the exact need, so that few graphs cover every length."""
    h = HORIZON_BASE
    while h < need:
        h *= HORIZON_GROWTH
    return min(h, capacity)


def capture_sizes(max_batch: int, sizes=DEFAULT_SIZES) -> list[int]:
    """The plan's batch sizes up to max_batch, always including max_batch itself."""
    return sorted({s for s in sizes if s < max_batch} | {max_batch})


class DecodeGraphs:
    def __init__(self, model, max_batch: int, pad_slot: int, sizes=DEFAULT_SIZES, greedy: bool = False):
        self.model, self.pad_slot, self.greedy = model, pad_slot, greedy
        self.sizes = capture_sizes(max_batch, sizes)
        dev = model.embed.weight.device
        n = self.sizes[-1]
        self.ids = torch.zeros(n, 1, dtype=torch.long, device=dev)
        self.pos = torch.zeros(n, dtype=torch.long, device=dev)
        self.slots = torch.full((n,), pad_slot, dtype=torch.long, device=dev)
        self.graphs: dict[tuple[int, int], torch.cuda.CUDAGraph] = {}  # (batch size, horizon) ->
        self.logits: dict[tuple[int, int], torch.Tensor] = {}
        self.horizons: list[int] = []  # captured, in capture order
        self._pool = None

    def _horizon(self, horizon: int | None) -> int:
        return self.model.max_seq_len if horizon is None else horizon

    def _step(self, bs: int, horizon: int) -> torch.Tensor:
        logits = self.model(self.ids[:bs], self.pos[:bs], self.slots[:bs], horizon=horizon)
        if self.greedy:
            self.ids[:bs, 0] = logits.argmax(-1)
            self.pos[:bs] += 1
        return logits

    @torch.inference_mode()
    def capture(self, horizon: int | None = None) -> None:
        """Warm up (Triton compiles, lazy weight stacking) then capture every size at `horizon` (None:
        the capacity), largest first so the shared memory pool is sized once. Runs on the scratch slot:
        the inputs are reset to padding first, so a capture between steps touches no sequence's state."""
        h = self._horizon(horizon)
        self.slots.fill_(self.pad_slot)
        self.pos.zero_()
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            saved = self.ids.clone(), self.pos.clone()
            for bs in reversed(self.sizes):
                self._step(bs, h)
            self.ids.copy_(saved[0])  # the warm-up's greedy feedback must not move the inputs
            self.pos.copy_(saved[1])
        torch.cuda.current_stream().wait_stream(side)
        for bs in reversed(self.sizes):
            g = torch.cuda.CUDAGraph()
            with torch.cuda.graph(g, pool=self._pool):
                self.logits[bs, h] = self._step(bs, h)
            self._pool = g.pool()
            self.graphs[bs, h] = g
        torch.cuda.synchronize()
        self.horizons.append(h)
        log.info("captured decode CUDA graphs at batch sizes %s, horizon %d", self.sizes, h)

    def _graph(self, bs: int, horizon: int | None) -> tuple[torch.cuda.CUDAGraph, torch.Tensor]:
        """The graph of (bs, horizon) and its logits, capturing the horizon on first use."""
        h = self._horizon(horizon)
        if h not in self.horizons:
            self.capture(h)
        return self.graphs[bs, h], self.logits[bs, h]

    def size_for(self, b: int) -> int | None:
        return next((s for s in self.sizes if s >= b), None)

    def advance(self, bs: int, horizon: int | None = None) -> torch.Tensor:
        """One greedy step of the captured batch size `bs` from the static ids/pos/slots (greedy graphs
        only): logits [bs, V]; ids and pos already hold the next step's inputs."""
        if not self.greedy:
            raise RuntimeError("advance() needs graphs captured with greedy=True")
        h = self._horizon(horizon)
        self.graphs[bs, h].replay()
        return self.logits[bs, h]

    def run(self, ids: torch.Tensor, start_pos: torch.Tensor, slots: torch.Tensor,
            horizon: int | None = None) -> torch.Tensor:
        """ids [b,1], start_pos [b], slots [b] (device tensors) -> logits [b,V], a view into the
        graph's output (valid until the next replay). horizon: > every start_pos (None: the capacity)."""
        b = ids.shape[0]
        bs = self.size_for(b)
        graph, logits = self._graph(bs, horizon)  # before the inputs: a first capture resets them
        self.ids[:b].copy_(ids)
        self.pos[:b].copy_(start_pos)
        self.slots[:b].copy_(slots)
        if bs > b:
            self.pos[b:bs].zero_()
            self.slots[b:bs].fill_(self.pad_slot)
        graph.replay()
        return logits[:b]
