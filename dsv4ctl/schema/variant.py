"""Variant: the V4 config.json facts and checkpoint options. Sizes derive from these numbers."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from dsv4ctl.schema.base import Strict


class Checkpoint(Strict):
    repo: str
    expert_format: Literal["fp4", "fp8", "nvfp4", "bf16"]
    # False for the sgl-project FP8 repack: SGLang must be told the experts are no longer FP4.
    # None where the question does not arise (runtime-only bf16 checkpoints).
    fp4_experts: bool | None
    notes: str = ""


class Variant(Strict):
    name: str
    summary: str
    hf_repo: str | None = None
    # The engine this variant is bound to, whatever the hardware: tiny/mini exist only for the included
    # runtime. None: the hardware profile's engine.
    engine: Literal["sglang", "builtin"] | None = None
    # The included runtime's checkpoint preset whose config.json holds this variant's architecture
    # (runtime/dsv4rt/presets.yaml): the facts are written there once, not copied here.
    preset: str | None = None
    num_hidden_layers: int = Field(ge=1)
    hidden_size: int
    num_attention_heads: int
    num_key_value_heads: int = 1
    head_dim: int
    qk_rope_head_dim: int
    q_lora_rank: int
    o_groups: int
    o_lora_rank: int
    sliding_window: int
    compress_ratios: list[int]
    index_n_heads: int
    index_head_dim: int
    index_topk: int
    n_routed_experts: int
    num_experts_per_tok: int
    n_shared_experts: int
    moe_intermediate_size: int
    num_hash_layers: int
    vocab_size: int
    hc_mult: int
    num_nextn_predict_layers: int
    max_position_embeddings: int
    routed_scaling_factor: float = 1.5
    checkpoints: dict[str, Checkpoint] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _ratios_cover_layers(self) -> "Variant":
        # config.json lists one ratio per main layer plus one per MTP layer; a mismatch means a
        # different model (e.g. the 0731 DSpark release), which the sizing would silently get wrong.
        want = self.num_hidden_layers + self.num_nextn_predict_layers
        if len(self.compress_ratios) != want:
            raise ValueError(f"compress_ratios has {len(self.compress_ratios)} entries, expected {want}")
        return self

    def attention_layer_counts(self) -> dict[str, int]:
        """Main-model layers per attention type: swa (ratio 0), csa (ratio 4), hca (ratio 128)."""
        main = self.compress_ratios[: self.num_hidden_layers]
        return {"swa": main.count(0), "csa": main.count(4), "hca": sum(1 for r in main if r > 4)}
