"""CUDA-only variants of reference ops that need no Triton (registered for CUDA tensors).

`fp32_linear`: the reference upcasts the weight, which for the vocab head is a 4-byte copy of the
whole matrix every decode step (≈0.4 GB of traffic on mini); cuBLAS can read bf16 and write fp32.
"""

from __future__ import annotations

import logging

import torch

from dsv4rt import ops
from dsv4rt.ops.registry import register

log = logging.getLogger(__name__)


def fp32_linear(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    if x.dtype != w.dtype or w.dtype not in (torch.bfloat16, torch.float16):
        return ops.fp32_linear.reference(x, w)
    flat = torch.mm(x.reshape(-1, x.shape[-1]), w.t(), out_dtype=torch.float32)
    return flat.view(*x.shape[:-1], w.shape[0])


def _probe() -> bool:
    """torch.mm(out_dtype=) exists on CUDA from torch 2.8; check once instead of per call."""
    try:
        a = torch.ones(2, 16, device="cuda", dtype=torch.bfloat16)
        return fp32_linear(a, a).dtype == torch.float32
    except (RuntimeError, TypeError) as e:
        log.info("cuda fp32_linear not registered: %s", e)
        return False


if torch.cuda.is_available() and _probe():
    register(ops.fp32_linear, backend="cublas", priority=10, device="cuda")(fp32_linear)
