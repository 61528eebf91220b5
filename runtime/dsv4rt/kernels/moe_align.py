"""Routing -> grouped-GEMM work list, in plain torch with static shapes (no host sync, so it can be
captured in a CUDA graph). Shared by the Triton grouped MoE and its CPU tests.

The P = tokens·top_k (token, expert) pairs are sorted by expert; each expert's run is padded to a
multiple of `block_m`, so one GEMM tile of rows never mixes experts (the layout of vLLM's fused MoE).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class MoeWork:
    sorted_pairs: torch.Tensor  # [blocks·block_m] int32: pair id (token·top_k + j), P = padding
    block_expert: torch.Tensor  # [blocks] int32: the expert of each row tile, -1 = unused tile
    num_pairs: int
    block_m: int


def max_blocks(num_pairs: int, num_experts: int, block_m: int) -> int:
    """Upper bound on Σ_e ceil(count_e / block_m): each used expert wastes < one tile."""
    return -(-num_pairs // block_m) + min(num_experts, num_pairs)


def align(idx: torch.Tensor, num_experts: int, block_m: int) -> MoeWork:
    """idx [N, top_k] expert ids -> tiles of rows that share an expert."""
    flat = idx.flatten()
    P, dev = flat.numel(), flat.device
    # bincount would sync on CUDA; a one-hot sum is one reduction kernel under torch.compile
    counts = (flat[:, None] == torch.arange(num_experts, device=dev)).sum(0)
    padded = (counts + block_m - 1) // block_m * block_m
    pad_end = padded.cumsum(0)
    order = torch.sort(flat, stable=True).indices
    sorted_e = flat[order]
    rank = torch.arange(P, device=dev) - (counts.cumsum(0) - counts)[sorted_e]
    nb = max_blocks(P, num_experts, block_m)
    pairs = torch.full((nb * block_m,), P, dtype=torch.int32, device=dev)
    pairs[(pad_end - padded)[sorted_e] + rank] = order.to(torch.int32)
    starts = torch.arange(nb, device=dev) * block_m
    expert = torch.searchsorted(pad_end, starts, right=True)
    expert = torch.where(expert < num_experts, expert, -1).to(torch.int32)
    return MoeWork(pairs, expert, P, block_m)
