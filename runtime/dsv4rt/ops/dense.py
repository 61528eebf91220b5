"""Norms and dense linears: `rmsnorm`, `linear` (grouped too), `norm_linear`, `fp32_linear`.

Each op is the function the model calls; its body is the PyTorch reference, which defines the
numerics. CUDA backends: `kernels/triton_gemv` (one-row linears, `norm_linear` with the norm in its
loads), `kernels/cuda_ops` (`fp32_linear` reading bf16 weights).
"""

from __future__ import annotations

import torch

from dsv4rt.ops.registry import defines_op


@defines_op
def rmsnorm(x: torch.Tensor, weight: torch.Tensor | None, eps: float) -> torch.Tensor:
    """x [..., d] -> [..., d] in x's dtype: x·rsqrt(mean(x²) + eps)·weight computed in fp32; weight [d], or
    None for the unweighted per-head q norm."""
    xf = x.float()
    y = xf * torch.rsqrt(xf.square().mean(-1, keepdim=True) + eps)
    return (y if weight is None else y * weight.float()).to(x.dtype)


@defines_op
def linear(x: torch.Tensor, w: torch.Tensor, groups: int = 1) -> torch.Tensor:
    """x [..., G·K] · wᵀ for a block-diagonal w [G·O, K] -> [..., G·O] in x's dtype: output group g
    (rows g·O..) reads input slice g (the grouped `wo_a`); groups 1 is F.linear."""
    if groups == 1:
        return torch.nn.functional.linear(x, w)
    out = torch.einsum("...gi,goi->...go", x.unflatten(-1, (groups, -1)), w.view(groups, -1, w.shape[1]))
    return out.flatten(-2)


@defines_op
def norm_linear(x: torch.Tensor, norm_weight: torch.Tensor, eps: float, w: torch.Tensor) -> torch.Tensor:
    """linear(rmsnorm(x, norm_weight, eps), w): x [..., K], norm_weight [K], w [O, K] -> [..., O] in x's
    dtype. A norm and the one projection that reads it (`wq_b` after `q_norm`), which a GEMV at batch 1
    does in one launch."""
    return linear(rmsnorm(x, norm_weight, eps), w)


@defines_op
def fp32_linear(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """x [..., K] · wᵀ (w [O, K]) -> [..., O] float32, whatever the inputs' dtype (router scores, vocab
    logits)."""
    return x.float() @ w.float().t()
