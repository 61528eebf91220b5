"""MoE (v4-architecture.md §2.7): sqrtsoftplus scores, bias for selection only, hash routing for the
first `n_hash_layers`, renormalised top-k weights × route_scale, one shared expert."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from dsv4rt.config import ModelArgs

_SCORE_FUNCS = {
    "sqrtsoftplus": lambda x: F.softplus(x).sqrt(),
    "sigmoid": torch.sigmoid,
    "softmax": lambda x: x.softmax(-1),
}


class Gate(nn.Module):
    """Router. `bias` shifts the scores for expert *selection* only, never the weights;
    hash layers select by `tid2eid[token_id]` instead."""

    def __init__(self, args: ModelArgs, hashed: bool):
        super().__init__()
        self.topk, self.route_scale = args.n_activated_experts, args.route_scale
        self.score = _SCORE_FUNCS[args.score_func]
        self.weight = nn.Parameter(torch.empty(args.n_routed_experts, args.dim))
        self.hashed = hashed
        if hashed:
            self.register_buffer("tid2eid", torch.zeros(args.vocab_size, self.topk, dtype=torch.long))
        else:
            self.bias = nn.Parameter(torch.zeros(args.n_routed_experts))

    def forward(self, x: torch.Tensor, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x [N, d], ids [N] -> (weights [N, k] fp32, expert indices [N, k])."""
        scores = self.score(x.float() @ self.weight.float().t())
        if self.hashed:
            idx = self.tid2eid[ids].long()
        else:
            idx = (scores + self.bias.float()).topk(self.topk, dim=-1).indices
        w = scores.gather(1, idx)
        w = w / (w.sum(-1, keepdim=True) + 1e-20)
        return w * self.route_scale, idx


class Expert(nn.Module):
    """SwiGLU FFN; `limit` clamps the gate (above) and up (both sides) pre-activations."""

    def __init__(self, dim: int, inter_dim: int, limit: float = 0.0):
        super().__init__()
        self.w1 = nn.Linear(dim, inter_dim, bias=False)
        self.w2 = nn.Linear(inter_dim, dim, bias=False)
        self.w3 = nn.Linear(dim, inter_dim, bias=False)
        self.limit = limit

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        g, u = self.w1(x), self.w3(x)
        if self.limit > 0:
            g, u = g.clamp(max=self.limit), u.clamp(-self.limit, self.limit)
        return self.w2(F.silu(g) * u)


class MoE(nn.Module):
    """Routed experts (clamped SwiGLU) + one shared expert (unclamped, as in the official code)."""

    def __init__(self, args: ModelArgs, layer_id: int):
        super().__init__()
        self.n_experts = args.n_routed_experts
        self.gate = Gate(args, hashed=layer_id < args.n_hash_layers)
        self.experts = nn.ModuleList(
            Expert(args.dim, args.moe_inter_dim, args.swiglu_limit) for _ in range(args.n_routed_experts)
        )
        self.shared_experts = Expert(args.dim, args.moe_inter_dim)

    def forward(self, x: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        x = x.reshape(-1, shape[-1])
        weights, idx = self.gate(x, ids.reshape(-1))
        y = torch.zeros_like(x, dtype=torch.float32)
        # NOTE: a host sync (bincount) per layer; the grouped-GEMM kernel of a later issue removes it
        counts = torch.bincount(idx.flatten(), minlength=self.n_experts).tolist()
        for e, n in enumerate(counts):
            if n == 0:
                continue
            tok, slot = torch.where(idx == e)
            y.index_add_(0, tok, self.experts[e](x[tok]).float() * weights[tok, slot, None])
        return (y + self.shared_experts(x).float()).to(x.dtype).view(shape)
