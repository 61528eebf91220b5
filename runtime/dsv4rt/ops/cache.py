"""A decode token's writes to an attention layer's cache: the op `decode_cache` (its body the PyTorch
reference, the numerics; CUDA backend: `kernels/triton_cache`), and the cache's write helpers.

At T=1 a layer's cache takes: the token's kv, normed and rotated, into the window ring; and, per
compressor (one in HCA, two in CSA: the attention's and the indexer's), the token's projected kv and
gate into the compressor's rings, then the pooled, normed, rotated entry of the block ending here.
One op for all of it, so that a GPU backend can do it in one launch (triton_cache); under
torch.compile these were 3 (HCA) and 7 (CSA) kernels a layer.

The cache layout is the model's (model.py's docstring); the scatters below are its write helpers.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from dsv4rt.ops.dense import rmsnorm
from dsv4rt.ops.registry import defines_op
from dsv4rt.ops.rope import apply_rope


class Compression(NamedTuple):
    """One compressor's inputs to `decode_cache`: this token's projections a, z [B, 1, c·hd], the
    compressor's weights (ape [ratio, c·hd], norm weight [hd], RoPE channel frequencies [hd]) and its
    state (rings [S, c·hd, c·ratio] fp32, entries [S, N + 1, hd]). c = 2 with overlap (CSA)."""

    a: torch.Tensor
    z: torch.Tensor
    ape: torch.Tensor
    ring_kv: torch.Tensor
    ring_sc: torch.Tensor
    entries: torch.Tensor
    norm_weight: torch.Tensor
    rope: torch.Tensor

    @property
    def ratio(self) -> int:
        return self.ape.shape[0]

    @property
    def overlap(self) -> bool:
        """Each entry pools 2·ratio tokens: its own block and the one before (CSA)."""
        return self.ring_kv.shape[1] == 2 * self.entries.shape[-1]


def write_rows(slots: torch.Tensor, *writes) -> None:
    """buf[slots[b], rows[b, i]] = src[b, i] for each (buf, rows, src) of per-slot cache buffers.

    Inside torch.compile (dsv4rt/compiled.py) Inductor turns these into in-place scatters only where
    no later op reads the buffer's old value; otherwise it clones the whole buffer and copies it back.
    So the decode path writes each buffer before it reads it (`compress_token`).
    """
    for buf, rows, src in writes:
        buf[slots[:, None], rows] = src


def write_cols(slots: torch.Tensor, *writes) -> None:
    """`write_rows` for channel-major buffers [S, C, R]: buf[slots[b], :, cols[b, i]] = src[b, i].
    Written through the base, not a transposed view: torch 2.11's Inductor copied the whole ring
    back after a scatter into the view (12 µs a layer with 65 slots on the H100)."""
    for buf, cols, src in writes:
        buf[slots[:, None], :, cols] = src


def pool(a: torch.Tensor, z: torch.Tensor, p: torch.Tensor, ratio: int, overlap: bool) -> torch.Tensor:
    """a, z [B, E, C, R] (channel-major: under torch.compile a softmax along the last, contiguous axis
    is one kernel, along a strided one three); p [B, E, R] positions -> [B, E, hd]. Softmax over the
    window's tokens, per channel; tokens before position 0 get weight 0. With overlap, channels [:hd]
    of the previous block's tokens and [hd:] of the own block's."""
    before = (p < 0)[..., None, :]
    a, z = a.masked_fill(before, 0.0), z.masked_fill(before, float("-inf"))
    if overlap:
        hd = a.shape[-2] // 2
        a = torch.cat([a[..., :hd, :ratio], a[..., hd:, ratio:]], dim=-1)
        z = torch.cat([z[..., :hd, :ratio], z[..., hd:, ratio:]], dim=-1)
    return (a * z.softmax(dim=-1)).sum(dim=-1)


def compress_token(c: Compression, pos: torch.Tensor, slots: torch.Tensor, eps: float) -> None:
    """The token at pos [B, 1] into the rings, written first (see `write_rows`): they then hold exactly
    the R positions an entry ending here pools. Every row pools; a row whose block does not end here
    writes its entry to the scratch row N."""
    m, R = c.ratio, c.ring_kv.shape[-1]
    a, z = c.a.float(), c.z.float() + c.ape[pos % m]
    write_cols(slots, (c.ring_kv, pos % R, a), (c.ring_sc, pos % R, z))
    hpos = pos - R + 1 + torch.arange(R, device=pos.device)  # [B, R], in position order
    cols = (hpos % R)[:, None, :].expand(-1, c.ring_kv.shape[1], -1)
    kv_r, sc_r = (ring[slots].gather(-1, cols)[:, None] for ring in (c.ring_kv, c.ring_sc))  # [B, 1, C, R]
    entry = pool(kv_r, sc_r, hpos[:, None], m, c.overlap)
    entry = apply_rope(rmsnorm.reference(entry, c.norm_weight, eps).to(c.entries.dtype), pos - m + 1, c.rope)
    rows = torch.where((pos + 1) % m == 0, pos // m, c.entries.shape[1] - 1)
    write_rows(slots, (c.entries, rows, entry))


@defines_op
def decode_cache(kv: torch.Tensor, kv_weight: torch.Tensor, win_kv: torch.Tensor, rope: torch.Tensor,
                 pos: torch.Tensor, slots: torch.Tensor, eps: float, comps: list[Compression]) -> None:
    """kv [B, 1, hd] at pos [B, 1] of slots [B]: RMS-normed (kv_weight, eps), rotated (channel
    frequencies `rope`) and written to row pos % W of the window ring win_kv [S, W, hd]; each of
    `comps` takes the token as `compress_token` does."""
    for c in comps:
        compress_token(c, pos, slots, eps)
    kv = apply_rope(rmsnorm.reference(kv, kv_weight, eps), pos, rope)
    write_rows(slots, (win_kv, pos % win_kv.shape[1], kv))
