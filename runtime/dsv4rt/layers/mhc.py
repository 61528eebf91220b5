"""mHC: manifold-constrained hyper-connections (v4-architecture.md §2.3).

The residual is `hc_mult` streams [B, T, n, d]. Each sub-block reads a weighted sum of the streams
(sigmoid `pre`), and writes back `post · out + Cᵀ · streams` with C projected toward a
doubly-stochastic matrix by Sinkhorn-Knopp so deep stacks stay non-expansive.

The weights of a pre come from a projection of the streams (`raw`). A post writes the streams that
the next pre (the next sub-block's, or the final `hc_head`'s) projects, so it projects them too: the
op `hc_post` returns both, and on CUDA that is one launch instead of two per sub-block.
"""

from __future__ import annotations

import torch
from torch import nn

from dsv4rt.kernels import get
from dsv4rt.kernels.reference import hc_mix, hc_project


class HyperConnection(nn.Module):
    """Weights for one sub-block (attn or ffn); parameters are owned by the Block (checkpoint names)."""

    def __init__(self, hc_mult: int, iters: int, hc_eps: float, norm_eps: float):
        super().__init__()
        self.n, self.iters, self.hc_eps, self.norm_eps = hc_mult, iters, hc_eps, norm_eps

    @staticmethod
    def project(h: torch.Tensor, fn: torch.Tensor) -> torch.Tensor:
        """raw [..., 1, k] for `pre`, where no `post` made it (the first block)."""
        return hc_project(h, fn)

    def pre(self, raw, h, scale, base, norm):
        """-> (norm(x_in) [B,T,d], post [B,T,n], comb [B,T,n,n]); `norm` is the sub-block's RMSNorm."""
        return get("hc_pre")(raw, scale.float(), base.float(), h, norm.weight, self.n, self.iters,
                             self.hc_eps, norm.eps, self.norm_eps)

    @staticmethod
    def post(out, res, post, comb, next_fn) -> tuple[torch.Tensor, torch.Tensor]:
        """-> (h' [B,T,n,d], raw [B,T,P,k]: h' projected by the next pre's weights next_fn [k, n·d])."""
        return get("hc_post")(out, res, post, comb, next_fn)


def hc_head(h: torch.Tensor, raw, scale, base, hc_eps: float, norm_eps: float) -> torch.Tensor:
    """Final stream collapse (no post/comb, no Sinkhorn): y = Σ_j (sigmoid(.)+eps)_j h_j, with raw
    [..., P, n] the streams' projection by hc_head_fn (`HyperConnection.post`)."""
    pre = torch.sigmoid(hc_mix(raw, h, norm_eps) * scale.float() + base.float()) + hc_eps
    return (pre.unsqueeze(-1) * h).sum(dim=2).to(h.dtype)
