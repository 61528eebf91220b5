"""Weight bytes per GPU from the V4 tensor inventory (v4-architecture.md §3, §4.2).

Every tensor of a layer is listed once, by the shape rule of §3, and put in a sharding group:
  experts   routed experts, split over EP (or TP when there is no all-to-all)
  attn_tp   wq_b, wo_a, wo_b, sink, indexer wq_b / weights_proj: split over the attention-TP group
  vocab     embed + head: split over the attention-TP group
  replicated, shared: every rank holds a full copy
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from functools import lru_cache

from dsv4ctl.sizing.arch import ArchFacts

GROUPS = ("experts", "attn_tp", "vocab", "replicated", "shared")


def fp8(out: int, inp: int) -> float:
    """FP8 e4m3 weight plus one UE8M0 byte per 128×128 block."""
    return out * inp + -(-out // 128) * -(-inp // 128)


def fp4(out: int, inp: int) -> float:
    """Packed e2m1 (two per byte) plus one E8M0 scale per 32 inputs (MXFP4)."""
    return out * inp / 2 + out * inp / 32


def nvfp4(out: int, inp: int) -> float:
    """NVFP4: e2m1 plus one FP8 scale per 16 inputs."""
    return out * inp / 2 + out * inp / 16


EXPERT_FORMATS = {"fp4": fp4, "fp8": fp8, "nvfp4": nvfp4, "bf16": lambda o, i: 2 * o * i}


def _attention(a: ArchFacts, ratio: int) -> Counter:
    d, hd = a.hidden, a.heads * a.head_dim
    c = Counter()
    c["replicated"] += 2 * (2 + a.hc) * a.hc * a.hc * d * 4  # hc_attn_fn + hc_ffn_fn, F32
    c["replicated"] += 2 * d * 2 + a.q_lora * 2 + a.head_dim * 2  # attn/ffn/q/kv norms
    c["replicated"] += fp8(a.q_lora, d) + fp8(a.head_dim, d)  # wq_a, wkv (one shared K=V head)
    c["attn_tp"] += fp8(hd, a.q_lora) + fp8(a.o_groups * a.o_lora, hd // a.o_groups)  # wq_b, wo_a
    c["attn_tp"] += fp8(d, a.o_groups * a.o_lora) + a.heads * 4  # wo_b, attn_sink
    if ratio:
        width = (2 if ratio == 4 else 1) * a.head_dim  # CSA compresses overlapping blocks
        c["replicated"] += 2 * width * d * 2 + ratio * width * 4 + a.head_dim * 2
    if ratio == 4:  # lightning indexer
        iw = 2 * a.index_dim
        c["attn_tp"] += fp8(a.index_heads * a.index_dim, a.q_lora) + a.index_heads * d * 2
        c["replicated"] += 2 * iw * d * 2 + 4 * iw * 4 + a.index_dim * 2
    return c


def _moe(a: ArchFacts, layer: int, expert_fmt) -> Counter:
    d, i = a.hidden, a.inter
    c = Counter()
    c["experts"] += a.experts * (2 * expert_fmt(i, d) + expert_fmt(d, i))
    c["shared"] += a.shared * (2 * fp8(i, d) + fp8(d, i))
    c["replicated"] += a.experts * d * 2  # gate
    # hash layers route by token id through a [vocab, topk] int64 table; the others have a bias
    c["replicated"] += a.vocab * a.topk * 8 if layer < a.hash_layers else a.experts * 4
    return c


def _globals(a: ArchFacts) -> Counter:
    d = a.hidden
    c = Counter()
    c["vocab"] += 2 * a.vocab * d * 2  # embed + head, BF16, not tied
    c["replicated"] += d * 2 + a.hc * a.hc * d * 4 + a.hc + 1
    return c


def _mtp_extra(a: ArchFacts) -> Counter:
    d = a.hidden
    return Counter(replicated=2 * fp8(d, d) + 3 * d * 2 + a.hc * a.hc * d * 4 + a.hc + 1)


@dataclass(frozen=True)
class WeightInventory:
    """Total bytes per sharding group for one variant and expert format."""

    groups: dict[str, float]

    def per_gpu(self, ep: int, attn_tp: int) -> dict[str, float]:
        g = self.groups
        return {
            "experts": g["experts"] / ep,
            "attn_tp": g["attn_tp"] / attn_tp,
            "vocab": g["vocab"] / attn_tp,
            "replicated": g["replicated"],
            "shared": g["shared"],
        }


@lru_cache(maxsize=256)  # pure in (facts, format, mtp); the plan space asks thousands of times
def inventory(a: ArchFacts, expert_format: str = "fp4", with_mtp: bool = True) -> WeightInventory:
    fmt = EXPERT_FORMATS[expert_format]
    total = Counter(_globals(a))
    for layer, ratio in enumerate(a.main_ratios):
        total += _attention(a, ratio) + _moe(a, layer, fmt)
    if with_mtp:
        for ratio in a.mtp_ratios[: a.mtp_layers]:
            total += _attention(a, ratio) + _moe(a, a.layers, fmt) + _mtp_extra(a)
    return WeightInventory({g: float(total[g]) for g in GROUPS})
