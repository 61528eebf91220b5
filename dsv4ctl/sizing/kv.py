"""KV cache and per-sequence state (v4-architecture.md §4.1).

Every layer keeps a sliding window of raw entries; CSA layers (ratio 4) add one compressed entry and
one indexer key per 4 tokens, HCA layers (ratio 128) one compressed entry per 128 tokens. Each
compressor also keeps a small ring of un-emitted tokens per sequence (doubled with speculative
decoding, because drafts may be rolled back)."""

from __future__ import annotations

from functools import lru_cache

from dsv4ctl.sizing.arch import ArchFacts

FP8_KV = {"fp8_e4m3", "fp8", "auto", None}  # V4's hook turns `auto` into fp8_e4m3


def entry_bytes(a: ArchFacts, kv_dtype: str | None) -> int:
    """One main KV entry. FlashMLA FP8 layout: the no-rope dims in FP8 with one UE8M0 scale per 64,
    one pad byte, and the rope dims kept in BF16 (584 B for head_dim 512)."""
    if kv_dtype in FP8_KV:
        nope = a.head_dim - a.rope_dim
        return nope + nope // 64 + 1 + a.rope_dim * 2
    return a.head_dim * 2


def index_bytes(a: ArchFacts, fp4_indexer: bool = False) -> int:
    """One indexer key: FP8 + an fp32 scale (132 B), or FP4 + one byte scale per 32 (68 B)."""
    if fp4_indexer:
        return a.index_dim // 2 + a.index_dim // 32
    return a.index_dim + 4


@lru_cache(maxsize=256)
def bytes_per_token(a: ArchFacts, kv_dtype: str | None, fp4_indexer: bool = False) -> float:
    """Slope of the KV size in the context length, all main layers together."""
    be, bi = entry_bytes(a, kv_dtype), index_bytes(a, fp4_indexer)
    return a.count(4) * (be + bi) / 4 + a.count(128) * be / 128


@lru_cache(maxsize=256)
def compressor_state_bytes(a: ArchFacts, spec: bool) -> int:
    """fp32 kv+score rings: CSA keeps 2·4 slots of 2·head_dim (+ the indexer's 2·index_dim), HCA 128
    slots of head_dim; speculative decoding doubles the rings."""
    mult = 2 if spec else 1
    csa = 8 * (2 * a.head_dim + 2 * a.index_dim) * 4 * 2
    hca = 128 * a.head_dim * 4 * 2
    return mult * (a.count(4) * csa + a.count(128) * hca)


@lru_cache(maxsize=256)
def window_bytes(a: ArchFacts, kv_dtype: str | None, spec: bool) -> int:
    """The raw window of every layer, plus the (SWA-only) MTP layer when it drafts."""
    layers = a.layers + (a.mtp_layers if spec else 0)
    return layers * a.window * entry_bytes(a, kv_dtype)


def kv_bytes_per_seq(a: ArchFacts, tokens: int, kv_dtype: str | None, spec: bool = False,
                     with_state: bool = True) -> float:
    fixed = window_bytes(a, kv_dtype, spec) + (compressor_state_bytes(a, spec) if with_state else 0)
    return fixed + tokens * bytes_per_token(a, kv_dtype)
