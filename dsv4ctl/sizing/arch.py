"""Architecture facts the memory model needs, read from a Variant (the config.json facts).

This is the one place that maps the Variant's field names to the sizing code, so every size below is
derived from the variant and never typed in twice."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any

# HF config.json names first; the ModelArgs spellings are accepted as aliases.
_ALIASES: dict[str, tuple[str, ...]] = {
    "hidden": ("hidden_size", "dim"),
    "layers": ("num_hidden_layers", "n_layers"),
    "heads": ("num_attention_heads", "n_heads"),
    "head_dim": ("head_dim",),
    "rope_dim": ("qk_rope_head_dim", "rope_head_dim"),
    "q_lora": ("q_lora_rank",),
    "o_groups": ("o_groups",),
    "o_lora": ("o_lora_rank",),
    "window": ("sliding_window", "window_size"),
    "ratios": ("compress_ratios",),
    "index_heads": ("index_n_heads",),
    "index_dim": ("index_head_dim",),
    "vocab": ("vocab_size",),
    "experts": ("n_routed_experts",),
    "topk": ("num_experts_per_tok", "n_activated_experts"),
    "shared": ("n_shared_experts",),
    "inter": ("moe_intermediate_size", "moe_inter_dim"),
    "hash_layers": ("num_hash_layers", "n_hash_layers"),
    "hc": ("hc_mult",),
    "mtp_layers": ("num_nextn_predict_layers", "n_mtp_layers"),
    "max_pos": ("max_position_embeddings",),
}


@dataclass(frozen=True)
class ArchFacts:
    name: str
    hidden: int
    layers: int
    heads: int
    head_dim: int
    rope_dim: int
    q_lora: int
    o_groups: int
    o_lora: int
    window: int
    ratios: tuple[int, ...]  # one per main layer, then the MTP layer(s)
    index_heads: int
    index_dim: int
    vocab: int
    experts: int
    topk: int
    shared: int
    inter: int
    hash_layers: int
    hc: int
    mtp_layers: int
    max_pos: int

    @property
    def main_ratios(self) -> tuple[int, ...]:
        return self.ratios[: self.layers]

    @property
    def mtp_ratios(self) -> tuple[int, ...]:
        extra = self.ratios[self.layers :]
        return extra if extra else (0,) * self.mtp_layers

    def count(self, ratio: int) -> int:
        """Main-model layers of one attention type (0 = SWA only, 4 = CSA, 128 = HCA)."""
        return self.main_ratios.count(ratio)


def _pick(src: Any, names: tuple[str, ...]) -> Any:
    for source in (src, getattr(src, "config", None), getattr(src, "arch", None)):
        if source is None:
            continue
        for n in names:
            v = source.get(n) if isinstance(source, dict) else getattr(source, n, None)
            if v is not None:
                return v
    raise KeyError(names[0])


def arch_facts(variant: Any) -> ArchFacts:
    """ArchFacts from a Variant model (or a plain config.json dict)."""
    vals = {k: _pick(variant, names) for k, names in _ALIASES.items()}
    vals["ratios"] = tuple(int(r) for r in vals["ratios"])
    name = getattr(variant, "name", None) or (variant.get("name") if isinstance(variant, dict) else "?")
    return ArchFacts(name=str(name), **vals)


@lru_cache(maxsize=64)
def arch_for(variant_name: str) -> ArchFacts:
    """Cached facts for a variant name (the plan space validates thousands of plans per variant)."""
    from dsv4ctl.variants import get_variant

    return arch_facts(get_variant(variant_name))
