"""mHC: manifold-constrained hyper-connections (v4-architecture.md §2.3).

The residual is `hc_mult` streams [B, T, n, d]. Each sub-block reads a weighted sum of the streams
(sigmoid `pre`), and writes back `post · out + Cᵀ · streams` with C projected toward a
doubly-stochastic matrix by Sinkhorn-Knopp so deep stacks stay non-expansive.
"""

from __future__ import annotations

import torch
from torch import nn

from dsv4rt.kernels import get


# Decode batches: an fp32 GEMM with (2+n)·n = 24 outputs runs on a slow cuBLAS kernel (~23 µs per call
# on an H100); written as a reduction, Inductor can fuse it with the RMS norm (it does on CPU).
_REDUCE_MAX_ROWS = 256  # covers every decode batch size the engine captures: no extra recompile


def _project(h: torch.Tensor, fn: torch.Tensor) -> torch.Tensor:
    """Projection of the flattened streams, before their RMS normalisation: [B, T, n*d] -> [B, T, k].
    The norm is a scalar per row, so it can come after (in `hc_pre`, which reads the streams anyway)."""
    xf = h.flatten(-2).float()
    if torch.compiler.is_compiling() and xf.shape[:-1].numel() <= _REDUCE_MAX_ROWS:
        return (xf.unsqueeze(-2) * fn.float()).sum(-1)
    return xf @ fn.float().t()


def _mix(h: torch.Tensor, fn: torch.Tensor, eps: float) -> torch.Tensor:
    """RMS-normalised (no weight) projection of the flattened streams: [B, T, n*d] -> [B, T, k]."""
    xf = h.flatten(-2).float()
    return _project(h, fn) * torch.rsqrt(xf.square().mean(-1, keepdim=True) + eps)


class HyperConnection(nn.Module):
    """Weights for one sub-block (attn or ffn); parameters are owned by the Block (checkpoint names)."""

    def __init__(self, hc_mult: int, iters: int, hc_eps: float, norm_eps: float):
        super().__init__()
        self.n, self.iters, self.hc_eps, self.norm_eps = hc_mult, iters, hc_eps, norm_eps

    def pre(self, h, fn, scale, base, norm):
        """-> (norm(x_in) [B,T,d], post [B,T,n], comb [B,T,n,n]); `norm` is the sub-block's RMSNorm."""
        return get("hc_pre")(_project(h, fn), scale.float(), base.float(), h, norm.weight, self.n, self.iters,
                             self.hc_eps, norm.eps, self.norm_eps)

    @staticmethod
    def post(out: torch.Tensor, res: torch.Tensor, post: torch.Tensor, comb: torch.Tensor) -> torch.Tensor:
        """h'_k = post_k · out + Σ_j C[j,k] · res_j."""
        dt = res.dtype
        if torch.compiler.is_compiling():  # an n×n bmm per row is a launch of its own; summed, it fuses
            mixed = (comb.unsqueeze(-1) * res.float().unsqueeze(-2)).sum(-3)
            return (post.unsqueeze(-1) * out.float().unsqueeze(-2) + mixed).to(dt)
        return post.to(dt).unsqueeze(-1) * out.unsqueeze(-2) + comb.to(dt).transpose(-1, -2) @ res


def hc_head(h: torch.Tensor, fn, scale, base, hc_eps: float, norm_eps: float) -> torch.Tensor:
    """Final stream collapse (no post/comb, no Sinkhorn): y = Σ_j (sigmoid(.)+eps)_j h_j."""
    pre = torch.sigmoid(_mix(h, fn, norm_eps) * scale.float() + base.float()) + hc_eps
    return (pre.unsqueeze(-1) * h).sum(dim=2).to(h.dtype)
