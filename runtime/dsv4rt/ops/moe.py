"""MoE ops (v4-architecture.md §2.7): the router `moe_route` and the experts `moe_experts`.

Each op is the function the model calls (`layers/moe.py`); its body is the PyTorch reference. CUDA
backends: `kernels/triton_route` (`moe_route`), `kernels/triton_moe` (`moe_experts`: grouped GEMMs, or
`triton_moe_gemv` at batch ≤ 2).
"""

from __future__ import annotations

import torch

from dsv4rt.ops.dense import fp32_linear
from dsv4rt.ops.registry import defines_op


def swiglu_act(g: torch.Tensor, u: torch.Tensor, limit: float) -> torch.Tensor:
    """silu(clamp(g)) · clamp(u); limit 0 = no clamp (the shared expert)."""
    if limit > 0:
        g, u = g.clamp(max=limit), u.clamp(-limit, limit)
    return torch.nn.functional.silu(g) * u


def swiglu(x: torch.Tensor, w1: torch.Tensor, w3: torch.Tensor, w2: torch.Tensor, limit: float) -> torch.Tensor:
    """w2(silu(clamp(x·w1ᵀ)) · clamp(x·w3ᵀ))."""
    return swiglu_act(x @ w1.t(), x @ w3.t(), limit) @ w2.t()


SCORE_FUNCS = {
    "sqrtsoftplus": lambda x: torch.nn.functional.softplus(x).sqrt(),
    "sigmoid": torch.sigmoid,
    "softmax": lambda x: x.softmax(-1),
}


@defines_op
def moe_route(x, weight, bias, tid2eid, ids, topk: int, route_scale: float, score_func: str):
    """Router: x [N, d], weight [E, d] -> (weights [N, topk] fp32, expert indices [N, topk]).
    Experts are the top-k of scores + bias (`bias` shifts the selection only, never the weights),
    or, for hash routing (bias None), tid2eid [V, topk] at the token ids [N]; the weights are the
    picks' scores renormalised."""
    scores = SCORE_FUNCS[score_func](fp32_linear(x, weight))
    idx = tid2eid[ids].long() if bias is None else (scores + bias.float()).topk(topk, dim=-1).indices
    w = scores.gather(1, idx)
    return w / (w.sum(-1, keepdim=True) + 1e-20) * route_scale, idx


def with_shared(weights: torch.Tensor, idx: torch.Tensor, expert: int) -> tuple[torch.Tensor, torch.Tensor]:
    """weights/idx [N, k] -> [N, k+1]: every token also picks `expert` with weight 1 (a pad, which
    torch.compile writes in one kernel; a cat of a new column was two)."""
    pad = torch.nn.functional.pad
    return pad(weights, (0, 1), value=1.0), pad(idx, (0, 1), value=expert)


@defines_op
def moe_experts(x, w13, w2, weights, idx, limit: float, shared: bool = False) -> torch.Tensor:
    """Experts, one matmul per used expert: x [N,D]; w13 [E,2I,D] (w1 rows, then w3 rows);
    w2 [E,D,I]; weights/idx [N,top_k] -> fp32 [N,D], clamped at `limit`. With `shared` the last
    expert is a shared one (layers/moe.py): every token runs it too, weight 1, unclamped (idx picks
    among the others). The host loop (and its bincount sync) is the reference; backends registered
    for the GPU replace it."""
    inter, clamped = w2.shape[2], w13.shape[0] - int(shared)
    if shared:
        weights, idx = with_shared(weights, idx, clamped)
    y = torch.zeros(x.shape, dtype=torch.float32, device=x.device)
    counts = torch.bincount(idx.flatten(), minlength=w13.shape[0]).tolist()
    for e, n in enumerate(counts):
        if n == 0:
            continue
        tok, slot = torch.where(idx == e)
        lim = limit if e < clamped else 0.0
        out = swiglu(x[tok], w13[e, :inter], w13[e, inter:], w2[e], lim)
        y.index_add_(0, tok, out.float() * weights[tok, slot, None])
    return y
