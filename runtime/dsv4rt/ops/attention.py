"""Attention ops: `sink_attention` (prefill: dense over window + entries, masked), `decode_attention`
(one query a row over its slot's window ring and compressed entries) and the CSA `indexer_topk`.

Each op is the function the model calls; its body is the PyTorch reference. CUDA backend:
`kernels/triton_attention` (`decode_attention`).
"""

from __future__ import annotations

import torch

from dsv4rt.ops.dense import rmsnorm
from dsv4rt.ops.registry import defines_op
from dsv4rt.ops.rope import apply_rope


@defines_op
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


@defines_op
def decode_attention(q, win_kv, slots, pos, entries, entry_mask, sink, scale: float, ratio: int = 0, rope=None,
                     eps: float = 0.0, old_kv=None) -> torch.Tensor:
    """One query per row (a decode step) over its slot's window ring and the selected compressed entries.

    q [B,H,D]; win_kv [S,W,D]: ring of the slot, already holding this step's key (row p % W holds
    position p, so it covers (pos-W, pos]; rows > pos are unwritten while pos < W-1); slots, pos [B];
    entries [S,N',D] (N' > N) and entry_mask [B,N] bool (True = attend), or both None (SWA layers);
    entries without a mask: every entry compressed so far, j < (pos + 1) // ratio (N = N' - 1);
    sink [H]. -> [B,H,D] in q's dtype.
    rope [D] (`ops/rope.channel_freqs`) or None: q is the raw projection, which gets the per-head
    RMSNorm (eps) and RoPE at pos here, and the output is rotated back by pos (V carries RoPE too).
    old_kv [B/K, K, D] or None: a speculative verify (model.py `Attention._span_cache`): the rows are
    K consecutive positions of each sequence (row i: sequence i // K, its token t = i % K) whose keys
    are all in the ring already, so the ring's newest position is pos - t + K - 1; old_kv[s, j] is
    what ring row (p_s + j) % W held before token j overwrote it (position p_s + j - W). Row t then
    attends to the ring rows holding positions <= pos and to the old rows j > t: its window (pos-W, pos].
    """
    if rope is not None:
        q = apply_rope(rmsnorm.reference(q, None, eps)[:, None], pos[:, None], rope)[:, 0]
        o = decode_attention.reference(q, win_kv, slots, pos, entries, entry_mask, sink, scale, ratio, old_kv=old_kv)
        return apply_rope(o[:, None], pos[:, None], rope, inverse=True)[:, 0]
    if entries is not None and entry_mask is None:
        visible = torch.arange(entries.shape[1] - 1, device=q.device)
        entry_mask = visible < torch.div(pos + 1, ratio, rounding_mode="floor")[:, None]
    if old_kv is None:
        keys = win_kv[slots]
        mask = torch.arange(win_kv.shape[1], device=q.device) <= pos[:, None]
    else:
        keys, mask = span_window(win_kv, slots, pos, old_kv)
    if entries is not None:
        keys, mask = with_entries(keys, mask, entries, slots, entry_mask)
    return sink_attention.reference(q[:, None], keys, mask[:, None], sink, scale)[:, 0]


def span_window(win_kv, slots, pos, old_kv):
    """The window keys [B, W + K, D] and mask [B, W + K] of a verify's rows (`decode_attention`'s old_kv):
    the ring, valid where the position a row holds is in [0, pos], then the K old rows, valid past t."""
    K, W = old_kv.shape[1], win_kv.shape[1]
    t = torch.arange(pos.shape[0], device=pos.device) % K
    newest = (pos + (K - 1 - t))[:, None]
    held = newest - (newest - torch.arange(W, device=pos.device)) % W  # position each ring row holds
    j = torch.arange(K, device=pos.device)
    old_pos = (pos - t)[:, None] + j - W
    mask = torch.cat([(held >= 0) & (held <= pos[:, None]), (j > t[:, None]) & (old_pos >= 0)], 1)
    old = old_kv[:, None].expand(-1, K, -1, -1).flatten(0, 1)
    return torch.cat([win_kv[slots], old], 1), mask


@defines_op
def indexer_topk(qi, ki, w, visible, k: int) -> torch.Tensor:
    """Lightning indexer: score[t,j] = Σ_h w[t,h]·relu(qi[t,h]·ki[j]); top-k of the visible entries.

    qi [B,T,Hi,Di] (already scaled), ki [B,N,Di], w [B,T,Hi], visible [B,T,N] -> bool mask [B,T,N].
    """
    score = (torch.einsum("bthd,bnd->bthn", qi.float(), ki.float()).relu() * w.float()[..., None]).sum(2)
    score = score.masked_fill(~visible, float("-inf"))
    idx = score.topk(min(k, score.shape[-1]), dim=-1).indices
    picked = torch.zeros_like(visible).scatter_(-1, idx, True)
    return picked & visible
