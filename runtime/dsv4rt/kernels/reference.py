"""PyTorch reference kernels: always registered, run anywhere, define the numerics."""

from __future__ import annotations

import torch

from dsv4rt.kernels.registry import register


@register("rmsnorm")
def rmsnorm(x: torch.Tensor, weight: torch.Tensor | None, eps: float) -> torch.Tensor:
    """fp32 RMSNorm; weight None = the unweighted per-head q norm."""
    xf = x.float()
    y = xf * torch.rsqrt(xf.square().mean(-1, keepdim=True) + eps)
    return (y if weight is None else y * weight.float()).to(x.dtype)


def _pre_weights(mix: torch.Tensor, scale: torch.Tensor, base: torch.Tensor, eps: float) -> torch.Tensor:
    """A pre's stream weights from its n mixed values: sigmoid(mix·scale₀ + base) + eps."""
    return torch.sigmoid(mix * scale[0] + base) + eps


@register("hc_split_sinkhorn")
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


@register("hc_post")
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


@register("hc_pre")
def hc_pre(raw, scale, base, h, norm_weight, n: int, iters: int, hc_eps: float, norm_eps: float, mix_eps: float):
    """The rest of an mHC pre once the streams h [..., n, d] are projected (raw [..., P, (2+n)n]: P
    partial sums, not yet RMS-normalised): the mix's RMS scale (mix_eps), the Sinkhorn split, the
    pre-weighted sum of the streams (rounded to h's dtype) and the sub-block's RMSNorm (norm_eps)
    -> (normed x [..., d], post [..., n], comb [..., n, n])."""
    from dsv4rt.kernels.registry import get

    pre, post, comb = get("hc_split_sinkhorn")(hc_mix(raw, h, mix_eps), scale, base, n, iters, hc_eps)
    return _pre_x(pre, h, norm_weight, norm_eps), post, comb


def _pre_x(pre: torch.Tensor, h: torch.Tensor, norm_weight: torch.Tensor, norm_eps: float) -> torch.Tensor:
    """RMSNorm(Σ_j pre_j·h_j)·w, the sum rounded to h's dtype before the norm."""
    from dsv4rt.kernels.registry import get

    x = (pre.unsqueeze(-1) * h).sum(dim=-2).to(h.dtype)
    return get("rmsnorm")(x, norm_weight, norm_eps)


@register("hc_pre_x")
def hc_pre_x(raw, scale, base, h, norm_weight, n: int, hc_eps: float, norm_eps: float, mix_eps: float):
    """Only the normed input of an mHC pre: `hc_pre`'s x, from the first n of raw's k values (k = n for
    the final head's collapse, which has no post and no Sinkhorn; its norm is the model's last)."""
    mixed = hc_mix(raw[..., :n], h, mix_eps)
    return _pre_x(_pre_weights(mixed, scale, base[:n], hc_eps), h, norm_weight, norm_eps)


@register("hc_post_linear")
def hc_post_linear(x, w, res, post, comb, fn):
    """`hc_post` of the sub-block's output projection linear(x, w) (`wo_b`), which a kernel can compute
    inside the post at one row (triton_mhc_post)."""
    from dsv4rt.kernels.registry import get

    return get("hc_post")(get("linear")(x, w), res, post, comb, fn)


@register("hc_post_pre")
def hc_post_pre(out, res, post, comb, fn, next_scale, next_base, norm_weight, n: int, iters: int, hc_eps: float,
                norm_eps: float, mix_eps: float, out_weight=None):
    """The boundary between two sub-blocks: this sub-block's mHC post (post, comb: its pre's), h' =
    `hc_post`(out, res, post, comb, fn), then the next pre of h' with next_scale, next_base and the norm
    weight: `hc_pre` (x', post', comb') when fn has (2+n)n rows, the input alone (`hc_pre_x`; post', comb'
    None) for the head's collapse (n rows) -> (h' [..., n, d], x' [..., d], post', comb'). With
    `out_weight` the sub-block's output is linear(out, out_weight) (`hc_post_linear`). Composed
    through the registry: on CUDA the `hc_post` kernel, then `hc_pre` or `hc_pre_x`."""
    from dsv4rt.kernels.registry import get

    if out_weight is None:
        h, raw = get("hc_post")(out, res, post, comb, fn)
    else:
        h, raw = get("hc_post_linear")(out, out_weight, res, post, comb, fn)
    if fn.shape[0] == (2 + n) * n:
        return h, *get("hc_pre")(raw, next_scale, next_base, h, norm_weight, n, iters, hc_eps, norm_eps, mix_eps)
    return h, get("hc_pre_x")(raw, next_scale, next_base, h, norm_weight, n, hc_eps, norm_eps, mix_eps), None, None


@register("sink_attention")
def sink_attention(q, kv, mask, sink, scale: float) -> torch.Tensor:
    """Shared K=V attention with a per-head sink in the softmax denominator.

    q [B,T,H,D]; kv [B,S,D] (one head shared by all); mask [B,T,S] bool (True = visible); sink [H].
    """
    s = torch.einsum("bthd,bsd->bths", q.float(), kv.float()) * scale
    s = s.masked_fill(~mask[:, :, None, :], float("-inf"))
    sinks = sink.float().view(1, 1, -1, 1).expand(*s.shape[:-1], 1)
    p = torch.cat([s, sinks], dim=-1).softmax(-1)[..., :-1]
    return torch.einsum("bths,bsd->bthd", p, kv.float()).to(q.dtype)


def with_entries(keys, mask, entries, slots, entry_mask):
    """Window keys [B, S, D] and their mask [..., S], followed by the slots' first N compressed
    entries and their mask [..., N]."""
    keys = torch.cat([keys, entries[slots, : entry_mask.shape[-1]]], 1)
    return keys, torch.cat([mask, entry_mask], -1)


@register("decode_attention")
def decode_attention(q, win_kv, slots, pos, entries, entry_mask, sink, scale: float, ratio: int = 0, rope=None,
                     eps: float = 0.0) -> torch.Tensor:
    """One query per row (a decode step) over its slot's window ring and the selected compressed entries.

    q [B,H,D]; win_kv [S,W,D]: ring of the slot, already holding this step's key (row p % W holds
    position p, so it covers (pos-W, pos]; rows > pos are unwritten while pos < W-1); slots, pos [B];
    entries [S,N',D] (N' > N) and entry_mask [B,N] bool (True = attend), or both None (SWA layers);
    entries without a mask: every entry compressed so far, j < (pos + 1) // ratio (N = N' - 1);
    sink [H]. -> [B,H,D] in q's dtype.
    rope [D] (`layers/rope.channel_freqs`) or None: q is the raw projection, which gets the per-head
    RMSNorm (eps) and RoPE at pos here, and the output is rotated back by pos (V carries RoPE too).
    """
    if rope is not None:
        from dsv4rt.layers.rope import apply_rope

        q = apply_rope(rmsnorm(q, None, eps)[:, None], pos[:, None], rope)[:, 0]
        o = decode_attention(q, win_kv, slots, pos, entries, entry_mask, sink, scale, ratio)
        return apply_rope(o[:, None], pos[:, None], rope, inverse=True)[:, 0]
    if entries is not None and entry_mask is None:
        visible = torch.arange(entries.shape[1] - 1, device=q.device)
        entry_mask = visible < torch.div(pos + 1, ratio, rounding_mode="floor")[:, None]
    keys = win_kv[slots]
    mask = torch.arange(win_kv.shape[1], device=q.device) <= pos[:, None]
    if entries is not None:
        keys, mask = with_entries(keys, mask, entries, slots, entry_mask)
    return sink_attention(q[:, None], keys, mask[:, None], sink, scale)[:, 0]


@register("indexer_topk")
def indexer_topk(qi, ki, w, visible, k: int) -> torch.Tensor:
    """Lightning indexer: score[t,j] = Σ_h w[t,h]·relu(qi[t,h]·ki[j]); top-k of the visible entries.

    qi [B,T,Hi,Di] (already scaled), ki [B,N,Di], w [B,T,Hi], visible [B,T,N] -> bool mask [B,T,N].
    """
    score = (torch.einsum("bthd,bnd->bthn", qi.float(), ki.float()).relu() * w.float()[..., None]).sum(2)
    score = score.masked_fill(~visible, float("-inf"))
    idx = score.topk(min(k, score.shape[-1]), dim=-1).indices
    picked = torch.zeros_like(visible).scatter_(-1, idx, True)
    return picked & visible


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


@register("moe_route")
def moe_route(x, weight, bias, tid2eid, ids, topk: int, route_scale: float, score_func: str):
    """Router: x [N, d], weight [E, d] -> (weights [N, topk] fp32, expert indices [N, topk]).
    Experts are the top-k of scores + bias (`bias` shifts the selection only, never the weights),
    or, for hash routing (bias None), tid2eid [V, topk] at the token ids [N]; the weights are the
    picks' scores renormalised."""
    from dsv4rt.kernels.registry import get

    scores = SCORE_FUNCS[score_func](get("fp32_linear")(x, weight))
    idx = tid2eid[ids].long() if bias is None else (scores + bias.float()).topk(topk, dim=-1).indices
    w = scores.gather(1, idx)
    return w / (w.sum(-1, keepdim=True) + 1e-20) * route_scale, idx


def with_shared(weights: torch.Tensor, idx: torch.Tensor, expert: int) -> tuple[torch.Tensor, torch.Tensor]:
    """weights/idx [N, k] -> [N, k+1]: every token also picks `expert` with weight 1 (a pad, which
    torch.compile writes in one kernel; a cat of a new column was two)."""
    pad = torch.nn.functional.pad
    return pad(weights, (0, 1), value=1.0), pad(idx, (0, 1), value=expert)


@register("moe_experts")
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


@register("linear")
def linear(x: torch.Tensor, w: torch.Tensor, groups: int = 1) -> torch.Tensor:
    """x [..., G·K] · wᵀ for a block-diagonal w [G·O, K]: output group g (rows g·O..) reads input
    slice g (the grouped `wo_a`); groups 1 is F.linear."""
    if groups == 1:
        return torch.nn.functional.linear(x, w)
    out = torch.einsum("...gi,goi->...go", x.unflatten(-1, (groups, -1)), w.view(groups, -1, w.shape[1]))
    return out.flatten(-2)


@register("norm_linear")
def norm_linear(x: torch.Tensor, norm_weight: torch.Tensor, eps: float, w: torch.Tensor) -> torch.Tensor:
    """linear(rmsnorm(x, norm_weight, eps), w): a norm and the one projection that reads it (`wq_b`
    after `q_norm`), which a GEMV at batch 1 does in one launch."""
    from dsv4rt.kernels.registry import get

    return get("linear")(get("rmsnorm")(x, norm_weight, eps), w)


@register("fp32_linear")
def fp32_linear(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """x·wᵀ in float32 (router scores, vocab logits)."""
    return x.float() @ w.float().t()
