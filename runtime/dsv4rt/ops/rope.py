"""Partial interleaved RoPE (GPT-J pairs on the last `rope_head_dim` dims) with optional YaRN.

Pure-SWA layers use `rope_theta` and no YaRN; compressed layers use `compress_rope_theta` with YaRN
and no attention factor (v4-architecture.md §2.4). Plain functions, not ops: the attention and cache
ops apply RoPE inside them, the model outside (its `Rope` holds a layer's tables).
"""

from __future__ import annotations

import math

import torch


def _correction_dim(rotations: float, dim: int, base: float, orig_len: int) -> float:
    return dim * math.log(orig_len / (rotations * 2 * math.pi)) / (2 * math.log(base))


def inv_freq(dim: int, base: float, factor: float = 1.0, orig_len: int = 0,
             beta_fast: float = 32.0, beta_slow: float = 1.0) -> torch.Tensor:
    """One frequency per rotated pair ([dim/2]); YaRN blends interpolated/extrapolated ones."""
    freqs = 1.0 / (base ** (torch.arange(0, dim, 2, dtype=torch.float32) / dim))
    if factor <= 1.0 or orig_len <= 0:
        return freqs
    low = max(math.floor(_correction_dim(beta_fast, dim, base, orig_len)), 0)
    high = min(math.ceil(_correction_dim(beta_slow, dim, base, orig_len)), dim - 1)
    high = high + 0.001 if low == high else high  # avoid a zero-width ramp
    ramp = ((torch.arange(dim // 2, dtype=torch.float32) - low) / (high - low)).clamp(0, 1)
    smooth = 1 - ramp  # 1 = keep the original (extrapolated) frequency
    return freqs / factor * (1 - smooth) + freqs * smooth


def channel_freqs(freqs: torch.Tensor, dim: int) -> torch.Tensor:
    """[dim]: each channel's frequency; 0 for the first dim - 2·len(freqs) (not rotated), then each
    pair's frequency twice."""
    return torch.cat([freqs.new_zeros(dim - 2 * freqs.shape[0]), freqs.repeat_interleave(2)])


def apply_rope(x: torch.Tensor, pos: torch.Tensor, chan_freqs: torch.Tensor, inverse: bool = False) -> torch.Tensor:
    """Rotate x [B, T, (H,) D] at positions pos [B, T]; chan_freqs [D] from `channel_freqs`.

    One pointwise expression over the whole head: a channel's partner is its pair flipped, and the
    unrotated channels get angle 0 (x·1 + partner·0 = x, exactly). torch.compile fuses it with the
    norm before it; the slice + stack + cat form it replaces was 3-4 kernels per call.
    """
    angle = pos[..., None].float() * chan_freqs  # [B, T, D]
    if x.dim() == 4:
        angle = angle[:, :, None]
    sign = torch.arange(x.shape[-1], device=x.device) % 2 * 2 - 1  # even: -sin, odd: +sin
    sin = angle.sin() * (-sign if inverse else sign)
    xf = x.float()
    partner = xf.unflatten(-1, (-1, 2)).flip(-1).flatten(-2)
    return (xf * angle.cos() + partner * sin).to(x.dtype)
