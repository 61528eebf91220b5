"""FP8 (e4m3, 128×128 UE8M0 block scales) and FP4 (e2m1, two per byte, low nibble first, one E8M0
scale per 32 inputs) packing and unpacking, as stored in the official checkpoints
(shared/reference/v4-architecture.md §3)."""

from __future__ import annotations

import torch

FP8_BLOCK = 128
FP4_BLOCK = 32
FP8_MAX = 448.0
FP4_MAX = 6.0
# code -> value; bit 3 is the sign
FP4_TABLE = torch.tensor([0, .5, 1, 1.5, 2, 3, 4, 6, -0.0, -.5, -1, -1.5, -2, -3, -4, -6], dtype=torch.float32)


def e8m0_to_float(s: torch.Tensor) -> torch.Tensor:
    """UE8M0 byte (float8_e8m0fnu or uint8) -> 2^(byte - 127) in fp32."""
    raw = s.view(torch.uint8) if s.dtype != torch.uint8 else s
    return torch.exp2(raw.float() - 127)


def _e8m0_scale(amax: torch.Tensor, qmax: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Smallest power-of-2 scale with amax/scale ≤ qmax -> (scale fp32, e8m0 bytes)."""
    exp = torch.ceil(torch.log2(amax.clamp(min=2.0 ** -100) / qmax)).clamp(-127, 127)
    return torch.exp2(exp), (exp + 127).to(torch.uint8).view(torch.float8_e8m0fnu)


def _blocks(w: torch.Tensor, bo: int, bi: int) -> tuple[torch.Tensor, tuple[int, int]]:
    """Zero-pad w [o, i] to whole blocks and view it as [O, bo, I, bi]."""
    o, i = w.shape
    po, pi = -o % bo, -i % bi
    w = torch.nn.functional.pad(w.float(), (0, pi, 0, po))
    return w.view((o + po) // bo, bo, (i + pi) // bi, bi), (o, i)


def fp8_quantize(w: torch.Tensor, block: int = FP8_BLOCK) -> tuple[torch.Tensor, torch.Tensor]:
    """w [o, i] -> (e4m3 weight [o, i], e8m0 scale [ceil(o/128), ceil(i/128)])."""
    wb, (o, i) = _blocks(w, block, block)
    scale, scale_bytes = _e8m0_scale(wb.abs().amax(dim=(1, 3)), FP8_MAX)
    q = (wb / scale[:, None, :, None]).to(torch.float8_e4m3fn)
    return q.flatten(0, 1).flatten(1, 2)[:o, :i].contiguous(), scale_bytes


def fp8_dequantize(q: torch.Tensor, scale: torch.Tensor, block: int = FP8_BLOCK) -> torch.Tensor:
    s = e8m0_to_float(scale).repeat_interleave(block, 0).repeat_interleave(block, 1)
    return q.float() * s[: q.shape[0], : q.shape[1]]


def fp4_quantize(w: torch.Tensor, block: int = FP4_BLOCK) -> tuple[torch.Tensor, torch.Tensor]:
    """w [o, i] (i % 32 == 0) -> (int8 [o, i/2] two codes per byte, e8m0 scale [o, i/32])."""
    o, i = w.shape
    wb = w.float().view(o, i // block, block)
    scale, scale_bytes = _e8m0_scale(wb.abs().amax(-1), FP4_MAX)
    x = (wb / scale[..., None]).view(o, i)
    codes = (x.abs()[..., None] - FP4_TABLE[:8].to(x.device)).abs().argmin(-1)  # nearest magnitude
    codes = codes | ((x < 0).long() << 3)
    packed = codes[:, 0::2] | (codes[:, 1::2] << 4)  # element 2k low nibble, 2k+1 high nibble
    return packed.to(torch.uint8).view(torch.int8), scale_bytes


def fp4_dequantize(packed: torch.Tensor, scale: torch.Tensor, block: int = FP4_BLOCK) -> torch.Tensor:
    b = packed.view(torch.uint8).long()
    codes = torch.stack([b & 0xF, b >> 4], dim=-1).flatten(-2)  # [o, i]
    s = e8m0_to_float(scale).repeat_interleave(block, 1)
    return FP4_TABLE.to(codes.device)[codes] * s
