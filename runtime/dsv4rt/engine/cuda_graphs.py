"""CUDA graphs of the decode step (one token per row) at fixed batch sizes.

A decode batch of b rows replays the graph of the smallest captured size ≥ b. Inputs live in static
buffers; padding rows decode into a scratch slot that no sequence owns (`pad_slot`, the slot after
the runner's last), so they never touch real state. Capture runs the model on the scratch slot
only. The model's cache buffers must not be re-allocated after capture.

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
        self.graphs: dict[int, torch.cuda.CUDAGraph] = {}
        self.logits: dict[int, torch.Tensor] = {}

    def _step(self, bs: int) -> torch.Tensor:
        logits = self.model(self.ids[:bs], self.pos[:bs], self.slots[:bs])
        if self.greedy:
            self.ids[:bs, 0] = logits.argmax(-1)
            self.pos[:bs] += 1
        return logits

    @torch.inference_mode()
    def capture(self) -> None:
        """Warm up (Triton compiles, lazy weight stacking) then capture, largest size first so
        the shared memory pool is sized once."""
        pool = None
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            saved = self.ids.clone(), self.pos.clone()
            for bs in reversed(self.sizes):
                self._step(bs)
            self.ids.copy_(saved[0])  # the warm-up's greedy feedback must not move the inputs
            self.pos.copy_(saved[1])
        torch.cuda.current_stream().wait_stream(side)
        for bs in reversed(self.sizes):
            g = torch.cuda.CUDAGraph()
            with torch.cuda.graph(g, pool=pool):
                self.logits[bs] = self._step(bs)
            pool = g.pool()
            self.graphs[bs] = g
        torch.cuda.synchronize()
        log.info("captured decode CUDA graphs at batch sizes %s", self.sizes)

    def size_for(self, b: int) -> int | None:
        return next((s for s in self.sizes if s >= b), None)

    def advance(self, bs: int) -> torch.Tensor:
        """One greedy step of the captured batch size `bs` from the static ids/pos/slots (greedy graphs
        only): logits [bs, V]; ids and pos already hold the next step's inputs."""
        if not self.greedy:
            raise RuntimeError("advance() needs graphs captured with greedy=True")
        self.graphs[bs].replay()
        return self.logits[bs]

    def run(self, ids: torch.Tensor, start_pos: torch.Tensor, slots: torch.Tensor) -> torch.Tensor:
        """ids [b,1], start_pos [b], slots [b] (device tensors) -> logits [b,V], a view into the
        graph's output (valid until the next replay)."""
        b = ids.shape[0]
        bs = self.size_for(b)
        self.ids[:b].copy_(ids)
        self.pos[:b].copy_(start_pos)
        self.slots[:b].copy_(slots)
        if bs > b:
            self.pos[b:bs].zero_()
            self.slots[b:bs].fill_(self.pad_slot)
        self.graphs[bs].replay()
        return self.logits[bs][:b]
