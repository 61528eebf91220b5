"""MoE (v4-architecture.md §2.7): sqrtsoftplus scores, bias for selection only, hash routing for the
first `n_hash_layers`, renormalised top-k weights × route_scale, one shared expert."""

from __future__ import annotations

import torch
from torch import nn

from dsv4rt import ops
from dsv4rt.config import ModelArgs
from dsv4rt.ops.moe import swiglu


class Gate(nn.Module):
    """Router. `bias` shifts the scores for expert *selection* only, never the weights;
    hash layers select by `tid2eid[token_id]` instead."""

    def __init__(self, args: ModelArgs, hashed: bool):
        super().__init__()
        self.topk, self.route_scale, self.score_func = args.n_activated_experts, args.route_scale, args.score_func
        self.weight = nn.Parameter(torch.empty(args.n_routed_experts, args.dim))
        self.hashed = hashed
        if hashed:
            self.register_buffer("tid2eid", torch.zeros(args.vocab_size, self.topk, dtype=torch.long))
        else:
            self.bias = nn.Parameter(torch.zeros(args.n_routed_experts))

    def forward(self, x: torch.Tensor, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x [N, d], ids [N] -> (weights [N, k] fp32, expert indices [N, k])."""
        bias, table = (None, self.tid2eid) if self.hashed else (self.bias, None)
        return ops.moe_route(x, self.weight, bias, table, ids, self.topk, self.route_scale, self.score_func)


class Expert(nn.Module):
    """SwiGLU FFN; `limit` clamps the gate (above) and up (both sides) pre-activations."""

    def __init__(self, dim: int, inter_dim: int, limit: float = 0.0):
        super().__init__()
        self.w1 = nn.Linear(dim, inter_dim, bias=False)
        self.w2 = nn.Linear(inter_dim, dim, bias=False)
        self.w3 = nn.Linear(dim, inter_dim, bias=False)
        self.limit = limit

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return swiglu(x, self.w1.weight, self.w3.weight, self.w2.weight, self.limit)


class MoE(nn.Module):
    """Routed experts (clamped SwiGLU) + one shared expert (unclamped, as in the official code).

    All experts run through one `moe_experts` op on stacked weights, w13 [E+1, 2I, D] and
    w2 [E+1, D, I]: the routed ones, then the shared one at index E, which every token picks with
    weight 1 and no clamp. At decode batch 1 that is two launches for all experts; the shared
    expert's own GEMMs and activation were three more. Each expert's parameters become views into
    the stacks, so stacking costs no memory and the checkpoint names stay the same.
    """

    def __init__(self, args: ModelArgs, layer_id: int):
        super().__init__()
        self.n_experts, self.limit = args.n_routed_experts, args.swiglu_limit
        self.gate = Gate(args, hashed=layer_id < args.n_hash_layers)
        self.experts = nn.ModuleList(
            Expert(args.dim, args.moe_inter_dim, args.swiglu_limit) for _ in range(args.n_routed_experts)
        )
        self.shared_experts = Expert(args.dim, args.moe_inter_dim)
        self._stacked: tuple[torch.Tensor, torch.Tensor] | None = None

    def stacked_weights(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(w13, w2), built on first use and again if the expert parameters were replaced."""
        if torch.compiler.is_compiling():  # data_ptr is untraceable: Block.stack_weights ran first
            return self._stacked
        members = [*self.experts, self.shared_experts]
        # a loaded checkpoint replaces every parameter: the first routed and the shared expert tell
        if self._stacked is None or any(members[i].w1.weight.data_ptr() != self._stacked[0][i].data_ptr()
                                        for i in (0, -1)):
            w13 = torch.stack([torch.cat([e.w1.weight.data, e.w3.weight.data]) for e in members])
            w2 = torch.stack([e.w2.weight.data for e in members])
            inter = w13.shape[1] // 2
            for i, e in enumerate(members):
                e.w1.weight.data, e.w3.weight.data = w13[i, :inter], w13[i, inter:]
                e.w2.weight.data = w2[i]
            self._stacked = (w13, w2)
        return self._stacked

    def forward(self, x: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
        x2d = x.reshape(-1, x.shape[-1])
        weights, idx = self.gate(x2d, ids.reshape(-1))
        w13, w2 = self.stacked_weights()
        # fp32, as the op returns it: the mHC post rounds it to the streams' dtype (one launch fewer)
        return ops.moe_experts(x2d, w13, w2, weights, idx, self.limit, shared=True).view(x.shape)
