"""mHC ops (v4-architecture.md §2.3): the Sinkhorn split, an mHC pre and post, and the boundary
between two sub-blocks (`hc_post_pre`), composed of the others.

Each op is the function the model calls (`layers/mhc.py`); its body is the PyTorch reference. CUDA
backends: `kernels/triton_mhc` (`hc_split_sinkhorn`, `hc_pre`, `hc_pre_x`), `kernels/triton_mhc_post`
(`hc_post`, `hc_post_linear`).
"""

from __future__ import annotations

import torch

from dsv4rt.ops.dense import linear, rmsnorm
from dsv4rt.ops.registry import defines_op


def _pre_weights(mix: torch.Tensor, scale: torch.Tensor, base: torch.Tensor, eps: float) -> torch.Tensor:
    """A pre's stream weights from its n mixed values: sigmoid(mix·scale₀ + base) + eps."""
    return torch.sigmoid(mix * scale[0] + base) + eps


@defines_op
def hc_split_sinkhorn(mix, scale, base, n: int, iters: int, eps: float):
    """mix [B,T,(2+n)n] -> pre [B,T,n], post [B,T,n], comb [B,T,n,n] (rows j = input stream)."""
    pre_w, post_w, comb_w = mix.split([n, n, n * n], dim=-1)
    pre_b, post_b, comb_b = base.split([n, n, n * n])
    pre = _pre_weights(pre_w, scale, pre_b, eps)
    post = 2 * torch.sigmoid(post_w * scale[1] + post_b)
    comb = (comb_w * scale[2] + comb_b).unflatten(-1, (n, n)).softmax(-1) + eps
    comb = comb / (comb.sum(-2, keepdim=True) + eps)
    for _ in range(iters - 1):
        comb = comb / (comb.sum(-1, keepdim=True) + eps)
        comb = comb / (comb.sum(-2, keepdim=True) + eps)
    return pre, post, comb


# Decode batches: an fp32 GEMM with (2+n)·n = 24 outputs runs on a slow cuBLAS kernel (~23 µs per call
# on an H100); written as a reduction, Inductor can fuse it with the RMS norm (it does on CPU).
_REDUCE_MAX_ROWS = 256  # covers every decode batch size the engine captures: no extra recompile


def hc_project(h: torch.Tensor, fn: torch.Tensor) -> torch.Tensor:
    """Projection of the flattened streams h [..., n, d] by fn [k, n·d], before their RMS
    normalisation (a scalar per row, applied by `hc_pre`, which reads the streams anyway)
    -> raw [..., 1, k]: one partial sum (`hc_post`'s kernel leaves several)."""
    xf = h.flatten(-2).float()
    if torch.compiler.is_compiling() and xf.shape[:-1].numel() <= _REDUCE_MAX_ROWS:
        return (xf.unsqueeze(-2) * fn.float()).sum(-1).unsqueeze(-2)
    return (xf @ fn.float().t()).unsqueeze(-2)


def hc_mix(raw: torch.Tensor, h: torch.Tensor, eps: float) -> torch.Tensor:
    """The streams' projection from its partial sums raw [..., P, k], RMS-normalised by the streams
    h [..., n, d] -> [..., k]."""
    hf = h.flatten(-2).float()
    return raw.sum(-2) * torch.rsqrt(hf.square().mean(-1, keepdim=True) + eps)


@defines_op
def hc_post(out, res, post, comb, fn):
    """An mHC post, h'_k = post_k · out + Σ_j C[j,k] · res_j (out [..., d] rounded to res's dtype first,
    h' in res's dtype), and the next sub-block's projection of h' by fn [k, n·d] -> (h', raw [..., P, k])."""
    dt = res.dtype
    out = out.to(dt)
    if torch.compiler.is_compiling():  # an n×n bmm per row is a launch of its own; summed, it fuses
        mixed = (comb.unsqueeze(-1) * res.float().unsqueeze(-2)).sum(-3)
        h = (post.unsqueeze(-1) * out.float().unsqueeze(-2) + mixed).to(dt)
    else:
        h = post.to(dt).unsqueeze(-1) * out.unsqueeze(-2) + comb.to(dt).transpose(-1, -2) @ res
    return h, hc_project(h, fn)


@defines_op
def hc_pre(raw, scale, base, h, norm_weight, n: int, iters: int, hc_eps: float, norm_eps: float, mix_eps: float):
    """The rest of an mHC pre once the streams h [..., n, d] are projected (raw [..., P, (2+n)n]: P
    partial sums, not yet RMS-normalised): the mix's RMS scale (mix_eps), the Sinkhorn split, the
    pre-weighted sum of the streams (rounded to h's dtype) and the sub-block's RMSNorm (norm_eps)
    -> (normed x [..., d], post [..., n], comb [..., n, n])."""
    pre, post, comb = hc_split_sinkhorn(hc_mix(raw, h, mix_eps), scale, base, n, iters, hc_eps)
    return _pre_x(pre, h, norm_weight, norm_eps), post, comb


def _pre_x(pre: torch.Tensor, h: torch.Tensor, norm_weight: torch.Tensor, norm_eps: float) -> torch.Tensor:
    """RMSNorm(Σ_j pre_j·h_j)·w, the sum rounded to h's dtype before the norm."""
    x = (pre.unsqueeze(-1) * h).sum(dim=-2).to(h.dtype)
    return rmsnorm(x, norm_weight, norm_eps)


@defines_op
def hc_pre_x(raw, scale, base, h, norm_weight, n: int, hc_eps: float, norm_eps: float, mix_eps: float):
    """Only the normed input of an mHC pre: `hc_pre`'s x [..., d], from the first n of raw's k values
    (raw [..., P, k]; k = n for the final head's collapse, which has no post and no Sinkhorn; its norm is
    the model's last)."""
    mixed = hc_mix(raw[..., :n], h, mix_eps)
    return _pre_x(_pre_weights(mixed, scale, base[:n], hc_eps), h, norm_weight, norm_eps)


@defines_op
def hc_post_linear(x, w, res, post, comb, fn):
    """`hc_post` of the sub-block's output projection linear(x, w) (x [..., K], w [d, K]: `wo_b`) ->
    (h' [..., n, d], raw [..., P, k]); a kernel can compute the linear inside the post at one row
    (triton_mhc_post)."""
    return hc_post(linear(x, w), res, post, comb, fn)


@defines_op
def hc_post_pre(out, res, post, comb, fn, next_scale, next_base, norm_weight, n: int, iters: int, hc_eps: float,
                norm_eps: float, mix_eps: float, out_weight=None):
    """The boundary between two sub-blocks: this sub-block's mHC post (post, comb: its pre's), h' =
    `hc_post`(out, res, post, comb, fn), then the next pre of h' with next_scale, next_base and the norm
    weight: `hc_pre` (x', post', comb') when fn has (2+n)n rows, the input alone (`hc_pre_x`; post', comb'
    None) for the head's collapse (n rows) -> (h' [..., n, d], x' [..., d], post', comb'). With
    `out_weight` the sub-block's output is linear(out, out_weight) (`hc_post_linear`). Composed
    of those ops: on CUDA the `hc_post` kernel, then `hc_pre` or `hc_pre_x`."""
    if out_weight is None:
        h, raw = hc_post(out, res, post, comb, fn)
    else:
        h, raw = hc_post_linear(out, out_weight, res, post, comb, fn)
    if fn.shape[0] == (2 + n) * n:
        return h, *hc_pre(raw, next_scale, next_base, h, norm_weight, n, iters, hc_eps, norm_eps, mix_eps)
    return h, hc_pre_x(raw, next_scale, next_base, h, norm_weight, n, hc_eps, norm_eps, mix_eps), None, None
