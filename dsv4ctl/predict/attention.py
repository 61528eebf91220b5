"""Per-token work of V4's three attention types and its matmuls (v4-architecture.md §2, §4.1).

Every layer attends a sliding window of raw entries; CSA layers (ratio 4) add the indexer's top-k of
the compressed entries (one per 4 tokens) after scoring all of them, HCA layers (ratio 128) attend
every compressed entry (one per 128 tokens). FLOPs and bytes are linear in the entries, so a span of
positions is costed at its mean entry counts."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from dsv4ctl.sizing import ArchFacts
from dsv4ctl.sizing.kv import entry_bytes, index_bytes


def _mean_capped(cap: float, ratio: int, start: float, end: float) -> float:
    """Mean of min(cap, t / ratio) over positions t in [start, end]."""
    knee = cap * ratio

    def integral(x: float) -> float:
        return x * x / (2 * ratio) if x <= knee else knee * cap / 2 + cap * (x - knee)

    if end <= start:
        return min(cap, start / ratio)
    return (integral(end) - integral(start)) / (end - start)


@dataclass(frozen=True)
class Entries:
    """Mean entries one query touches per layer of each type over a span of positions."""

    window: float
    csa_selected: float
    csa_scored: float  # compressed entries the indexer scores (all of them)
    hca: float


@lru_cache(maxsize=4096)
def entries(a: ArchFacts, topk: int, start: float, end: float) -> Entries:
    mid = (start + end) / 2
    return Entries(window=_mean_capped(a.window, 1, start, end), csa_selected=_mean_capped(topk, 4, start, end),
                   csa_scored=mid / 4, hca=mid / 128)


def kv_read_bytes(a: ArchFacts, e: Entries, kv_dtype: str | None) -> float:
    """KV bytes one request's decode step reads: window rows of every layer, the selected CSA entries
    and all CSA indexer keys, every HCA entry."""
    be, bi = entry_bytes(a, kv_dtype), index_bytes(a)
    csa, hca = a.count(4), a.count(128)
    return a.layers * e.window * be + csa * (e.csa_selected * be + e.csa_scored * bi) + hca * e.hca * be


def attn_flops(a: ArchFacts, e: Entries, head_share: float = 1.0) -> float:
    """Attention FLOPs of one query token: QK and PV over its entries (all heads share one latent KV
    of head_dim) plus the indexer's scores; `head_share` is the fraction of heads one GPU holds."""
    per_entry = 4 * a.heads * a.head_dim * head_share
    attended = a.layers * e.window + a.count(4) * e.csa_selected + a.count(128) * e.hca
    indexer = a.count(4) * e.csa_scored * 2 * a.index_heads * a.index_dim * head_share
    return per_entry * attended + indexer


@lru_cache(maxsize=64)
def dense_params(a: ArchFacts) -> tuple[float, float]:
    """(attention-side params per layer summed over layers, head params): the weights every token
    multiplies outside the routed experts (projections, compressors, indexer, shared expert, gate)."""
    d, hd = a.hidden, a.heads * a.head_dim
    proj = a.q_lora * d + a.head_dim * d + hd * a.q_lora + a.o_lora * hd + d * a.o_groups * a.o_lora
    shared = a.shared * 3 * d * a.inter + a.experts * d
    total = a.layers * (proj + shared)
    total += a.count(4) * (2 * 2 * a.head_dim * d + a.index_heads * a.index_dim * a.q_lora
                           + 2 * 2 * a.index_dim * d + a.index_heads * d)
    total += a.count(128) * 2 * a.head_dim * d
    return float(total), float(a.vocab * d)


def expert_params(a: ArchFacts) -> float:
    """Params of one routed expert (gate, up, down)."""
    return 3.0 * a.hidden * a.inter
