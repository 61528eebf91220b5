"""Collective time from tokens × hidden × bytes over the link the group spans.

A group inside one node (or inside an MNNVL / NVLink domain) moves data over NVLink at one
direction of the profile's figure (nvlink_gbps is bidirectional); a group across nodes is limited
by the NICs each GPU owns. Every collective also pays a fixed latency (collective_us)."""

from __future__ import annotations

from typing import Any

from dsv4ctl.predict.constants import K

DISPATCH_BYTES = 1  # DeepEP / MegaMoE dispatch FP8 activations (kernels-hardware.md §1)
COMBINE_BYTES = 2  # and combine in BF16
REDUCE_BYTES = 2  # TP all-reduce of BF16 hidden states


def link_bytes_per_s(hw: Any, group: int, nodes: int, k: K) -> float:
    """Per-GPU bandwidth, one direction, of a group of `group` GPUs spread over `nodes` nodes."""
    domain = bool(getattr(hw, "mnnvl", False)) and group <= int(getattr(hw, "nvlink_domain", 1))
    within = nodes <= 1 or domain
    if within:
        gbs = float(getattr(hw, "nvlink_gbps", 0)) / 2
    else:
        nics = hw.nics
        gbs = nics.count * nics.gbps / 8 / max(hw.gpus_per_node, 1)
    return max(gbs, 1e-3) * 1e9 * k.link_eff


def all_reduce_s(tokens: float, hidden: int, group: int, bw: float, k: K) -> float:
    """Ring all-reduce of tokens × hidden BF16 values over `group` GPUs."""
    if group <= 1:
        return 0.0
    return k.collective_us * 1e-6 + 2 * (group - 1) / group * tokens * hidden * REDUCE_BYTES / bw


def all_to_all_s(tokens: float, hidden: int, topk: int, group: int, bw: float, k: K, overlapped: bool) -> float:
    """MoE dispatch + combine of `tokens` (this GPU's) to their top-k experts over `group` GPUs.
    MegaMoE fuses both into the expert kernel and overlaps the transfer with the GEMMs, so only one
    collective's latency remains (kernels-hardware.md §2.1) [inferred]."""
    if group <= 1:
        return 0.0
    if overlapped:
        return k.collective_us * 1e-6
    moved = tokens * topk * hidden * (DISPATCH_BYTES + COMBINE_BYTES) * (group - 1) / group
    return 2 * k.collective_us * 1e-6 + moved / bw
