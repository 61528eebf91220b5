"""Bias-free linears that read the same input, run as one GEMM.

A decode step at batch 1 is launch-bound, not bandwidth-bound, for the small projections: a CSA
layer projects its attention input seven times (q, kv, compressor kv/gate, indexer weights and the
indexer compressor's kv/gate). Their weights are stacked into one matrix and each linear's weight
becomes a row view into it, as `MoE.stacked_weights` does for the experts: no extra memory, the
checkpoint names stay, and a checkpoint loaded later (new parameter tensors) is re-stacked.
"""

from __future__ import annotations

import torch
from torch import nn

from dsv4rt import ops


class FusedLinears:
    """Callable: x -> [linear(x) for each linear], computed by one matmul (a plain attribute, not a
    Module, so the parameters keep their owners and names)."""

    def __init__(self, *linears: nn.Linear):
        self.linears = linears
        self.sizes = [lin.out_features for lin in linears]
        self.weight: torch.Tensor | None = None

    def fusable(self) -> bool:
        return len(self.linears) > 1 and len({lin.weight.dtype for lin in self.linears}) == 1

    def stack(self) -> torch.Tensor | None:
        """The stacked weight, (re)built when a member's parameter is no longer a view into it."""
        if torch.compiler.is_compiling() or not self.fusable():  # data_ptr is untraceable: Block.stack_weights ran first
            return self.weight
        if self.weight is None or any(lin.weight.data_ptr() != rows.data_ptr()
                                      for lin, rows in zip(self.linears, self.weight.split(self.sizes))):
            self.weight = torch.cat([lin.weight.data for lin in self.linears])
            for lin, rows in zip(self.linears, self.weight.split(self.sizes)):
                lin.weight.data = rows
        return self.weight

    def __call__(self, x: torch.Tensor) -> list[torch.Tensor]:
        if not self.fusable():
            return [lin(x) for lin in self.linears]
        return list(ops.linear(x, self.stack()).split(self.sizes, dim=-1))
