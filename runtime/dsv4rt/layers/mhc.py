"""mHC: manifold-constrained hyper-connections (v4-architecture.md §2.3).

The residual is `hc_mult` streams [B, T, n, d]. Each sub-block reads a weighted sum of the streams
(sigmoid `pre`), and writes back `post · out + Cᵀ · streams` with C projected toward a
doubly-stochastic matrix by Sinkhorn-Knopp so deep stacks stay non-expansive.

The weights of a pre come from a projection of the streams (`raw`). A post writes the streams that
the next pre (the next sub-block's, or the final head's collapse) reads, so the op `hc_post_pre` does
both: this sub-block's post, the projection of its output by the next pre's weights, and the next
pre's input, post and comb. On CUDA that is two launches: the post with the projection
(kernels/triton_mhc_post, op `hc_post`), then the rest of the pre (kernels/triton_mhc, op `hc_pre`).
After the attention the post also takes the sub-block's output projection (`out_weight`, op
`hc_post_linear`), which at one row runs inside the post's launch.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn

from dsv4rt import ops
from dsv4rt.ops.mhc import hc_project


class NextPre(NamedTuple):
    """The weights of the pre that reads a post's streams: a sub-block's, or the final head's collapse."""

    fn: torch.Tensor  # [k, n·d]
    scale: torch.Tensor
    base: torch.Tensor
    norm: nn.Module  # the RMSNorm after the collapse (the sub-block's input norm, or the model's last)


class HyperConnection(nn.Module):
    """Weights for one sub-block (attn or ffn); parameters are owned by the Block (checkpoint names)."""

    def __init__(self, hc_mult: int, iters: int, hc_eps: float, norm_eps: float):
        super().__init__()
        self.n, self.iters, self.hc_eps, self.norm_eps = hc_mult, iters, hc_eps, norm_eps

    @staticmethod
    def project(h: torch.Tensor, fn: torch.Tensor) -> torch.Tensor:
        """raw [..., 1, k] for `pre`, where no post made it (the first block)."""
        return hc_project(h, fn)

    def pre(self, raw, h, scale, base, norm):
        """The first sub-block's pre -> (norm(x_in) [B,T,d], post [B,T,n], comb [B,T,n,n]); `norm` is its
        RMSNorm."""
        return ops.hc_pre(raw, scale.float(), base.float(), h, norm.weight, self.n, self.iters,
                             self.hc_eps, norm.eps, self.norm_eps)

    def post_pre(self, out, res, post, comb, nxt: NextPre, out_weight: torch.Tensor | None = None):
        """This sub-block's post (post, comb: its own pre's), then the next pre, whose weights are nxt
        -> (h', x', post', comb') (`ops.hc_post_pre`). With `out_weight` the
        sub-block's output is linear(out, out_weight): its last projection, done inside the post."""
        return ops.hc_post_pre(out, res, post, comb, nxt.fn, nxt.scale.float(), nxt.base.float(), nxt.norm.weight,
                                  self.n, self.iters, self.hc_eps, nxt.norm.eps, self.norm_eps, out_weight)
