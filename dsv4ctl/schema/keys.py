"""EngineKeys: the engine-neutral resolved keys of a plan. None means "unset: the engine default applies"."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, StringConstraints

from dsv4ctl.schema.base import Strict


MegaMoE = Literal["off", "w4a8", "w4a4"]
HiCache = Literal["off", "l2"]


class EngineKeys(Strict):
    # model / server
    model_path: str = ""
    served_model_name: str | None = None
    trust_remote_code: bool = True
    host: str = "0.0.0.0"
    port: int = Field(default=30000, ge=1, le=65535)
    # parallelism
    tp: int = Field(default=1, ge=1)
    dp: int = Field(default=1, ge=1)
    attn_dp: bool = False
    ep: int | None = Field(default=None, ge=1)
    pp: int = Field(default=1, ge=1)
    prefill_cp: bool = False
    cp_strategy: Literal["round-robin-split", "interleave", "zigzag"] | None = None
    cp_size: int | None = Field(default=None, ge=1)
    # MoE
    moe_a2a: Literal["none", "deepep", "megamoe"] = "none"
    moe_runner: str | None = None
    mxfp4_moe_precision: Literal["bf16", "fp8"] | None = None
    megamoe: MegaMoE = "off"
    fp4_experts: bool | None = None
    deepep_num_sms: int | None = Field(default=None, ge=2)
    deepep_dispatch_tokens_per_rank: int | None = Field(default=None, ge=0)
    megamoe_tokens_per_rank: int | None = Field(default=None, ge=0)
    shared_experts_fusion: Literal["auto", "disable", "enforce"] = "auto"
    shared_expert_tp1: bool = False
    two_batch_overlap: bool = False
    # speculative decoding (MTP)
    spec_algorithm: Literal["EAGLE", "DSPARK"] | None = None
    spec_steps: int | None = Field(default=None, ge=1)
    spec_topk: int | None = Field(default=None, ge=1)
    spec_draft_tokens: int | None = Field(default=None, ge=1)
    # batching / memory
    cuda_graph_max_bs: int | None = Field(default=None, ge=1)
    cuda_graph_bs: list[int] | None = None
    disable_cuda_graph: bool = False  # no device to capture on (CPU), or debugging a capture failure
    max_running_requests: int | None = Field(default=None, ge=1)
    chunked_prefill_size: int | None = None
    mem_fraction_static: float | None = Field(default=None, gt=0, lt=1)
    swa_full_tokens_ratio: float | None = Field(default=None, gt=0, le=1)
    context_length: int | None = Field(default=None, ge=1)
    kv_cache_dtype: str | None = None
    attention_backend: str | None = None
    page_size: int | None = Field(default=None, ge=1)
    disable_flashinfer_autotune: bool = False
    hicache: HiCache = "off"
    tokenizer_worker_num: int | None = Field(default=None, ge=1)
    enable_prefill_delayer: bool = False
    prefill_delayer_max_delay_ms: int | None = Field(default=None, ge=0)
    # parsers
    reasoning_parser: str | None = None
    tool_call_parser: str | None = None
    # networking / PD disaggregation
    mnnvl: bool | None = None
    disagg_mode: Literal["prefill", "decode"] | None = None
    transfer_backend: Literal["mooncake", "nixl", "mori"] | None = None
    ib_device: str | None = None
    dist_init_addr: str | None = None
    mooncake_custom_mem_pool: bool = False


KEY_NAMES: frozenset[str] = frozenset(EngineKeys.model_fields)

# An environment variable name as every shell and container runtime accepts it: anything else could
# carry shell syntax into a rendered script (issue 21 #3), so the schema refuses it.
ENV_NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]*$"
EnvName = Annotated[str, StringConstraints(pattern=ENV_NAME_PATTERN)]
# The most nodes one role may span: the schema bounds --nodes, recipe overrides and plan files, so
# nothing downstream (one rendered command per node) can be asked for a million nodes.
MAX_NODES = 256


def check_partial_keys(value: dict[str, Any]) -> dict[str, Any]:
    """A partial EngineKeys (recipe keys, overlays, a plan role's overrides): every name a key, every
    value of that key's type. Returns the values as EngineKeys would hold them (coerced)."""
    unknown = sorted(set(value) - KEY_NAMES)
    if unknown:
        from dsv4ctl.errors import did_you_mean

        raise ValueError(f"unknown key '{unknown[0]}' ({did_you_mean(unknown[0], sorted(KEY_NAMES))})")
    from pydantic import ValidationError

    try:
        keys = EngineKeys.model_validate(value)
    except ValidationError as exc:
        err = exc.errors()[0]
        raise ValueError(f"key '{err['loc'][0]}': {err['msg']}") from None
    return {name: getattr(keys, name) for name in value}
