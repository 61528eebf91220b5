"""Partial interleaved RoPE (GPT-J pairs on the last `rope_head_dim` dims) with optional YaRN.

Pure-SWA layers use `rope_theta` and no YaRN; compressed layers use `compress_rope_theta` with YaRN
and no attention factor (v4-architecture.md §2.4).
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


def apply_rope(x: torch.Tensor, pos: torch.Tensor, freqs: torch.Tensor, inverse: bool = False) -> torch.Tensor:
    """Rotate the trailing 2·len(freqs) dims of x [B, T, (H,) D] at positions pos [B, T]."""
    r = 2 * freqs.shape[0]
    angle = pos[..., None].float() * freqs.to(x.device)  # [B, T, r/2]
    if x.dim() == 4:
        angle = angle[:, :, None]
    cos, sin = angle.cos(), angle.sin()
    if inverse:
        sin = -sin
    rope = x[..., -r:].float()
    even, odd = rope[..., 0::2], rope[..., 1::2]
    rotated = torch.stack((even * cos - odd * sin, odd * cos + even * sin), dim=-1).flatten(-2)
    return torch.cat([x[..., :-r], rotated.to(x.dtype)], dim=-1)
