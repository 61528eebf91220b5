"""How a plan lays the model out on one GPU: the few numbers the memory model and the rules share.
Reads the plan's EngineKeys defensively (unset values are None) and applies SGLang's V4 defaults."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from dsv4ctl.schema.keys import EngineKeys

GIB = 2**30
DEFAULT_MAX_RUNNING = 256  # V4 hook default
DEFAULT_CHUNKED_PREFILL = 8192
DEFAULT_DISPATCH_TOKENS = 128  # SGLANG_DEEPEP_NUM_MAX_DISPATCH_TOKENS_PER_RANK default
DEFAULT_MEGAMOE_TOKENS = 8192  # SGLANG_OPT_DEEPGEMM_MEGA_MOE_NUM_MAX_TOKENS_PER_RANK default
DEFAULT_MEM_FRACTION = 0.874  # what SGLang picks on large-HBM GPUs when unset (recipes §7 #3)
DISPATCH_ENV = "SGLANG_DEEPEP_NUM_MAX_DISPATCH_TOKENS_PER_RANK"
MEGAMOE_ENV = "SGLANG_OPT_DEEPGEMM_MEGA_MOE_NUM_MAX_TOKENS_PER_RANK"


def key(keys: EngineKeys, name: str, default: Any = None) -> Any:
    v = getattr(keys, name, None)
    return default if v is None else v


def env_int(env: dict[str, str], name: str) -> int | None:
    try:
        return int(str(env[name]).strip())
    except (KeyError, ValueError):
        return None


def env_on(env: dict[str, str], name: str) -> bool:
    return str(env.get(name, "")).strip().lower() in {"1", "true", "yes", "on"}


@dataclass(frozen=True)
class Layout:
    tp: int
    dp: int
    attn_dp: bool
    ep: int
    a2a: str
    expert_format: str
    spec: bool
    draft_tokens: int
    max_running: int
    chunked_prefill: int | None
    mem_fraction: float
    mem_fraction_set: bool
    context_length: int | None
    kv_dtype: str | None
    cuda_graph_max_bs: int | None
    dispatch_tokens: int
    megamoe_tokens: int
    deepep_sms: int

    @property
    def attn_dp_size(self) -> int:
        return self.dp if self.attn_dp else 1

    @property
    def attn_tp(self) -> int:
        return max(self.tp // self.attn_dp_size, 1)

    @property
    def running_per_rank(self) -> int:
        return -(-self.max_running // self.attn_dp_size)


def _expert_format(quant: str, env: dict[str, str]) -> str:
    if quant == "fp8" or env_on(env, "SGLANG_DSV4_FP4_DEQUANT"):
        return "fp8"
    return quant if quant in ("nvfp4", "bf16") else "fp4"


def _dispatch_tokens(keys: EngineKeys, env: dict[str, str]) -> int:
    v = env_int(env, DISPATCH_ENV)
    return v if v is not None else key(keys, "deepep_dispatch_tokens_per_rank", DEFAULT_DISPATCH_TOKENS)


def _megamoe_tokens(keys: EngineKeys, env: dict[str, str]) -> int:
    v = env_int(env, MEGAMOE_ENV)
    return v if v is not None else key(keys, "megamoe_tokens_per_rank", DEFAULT_MEGAMOE_TOKENS)


def _deepep_sms(keys: EngineKeys) -> int:
    cfg = key(keys, "deepep_config")
    if isinstance(cfg, dict):
        sms = (cfg.get("normal_dispatch") or {}).get("num_sms")
        if isinstance(sms, int):
            return sms
    return key(keys, "deepep_num_sms", 20)


class PlanLike(Protocol):
    """What the layout reads: a LaunchPlan, or one PD role's view of it (validate.context.View)."""

    keys: EngineKeys
    env: dict[str, str]
    quant: str
    variant: str


def layout_of(plan: PlanLike) -> Layout:
    k, env = plan.keys, dict(plan.env or {})
    tp = key(k, "tp", 1)
    spec = key(k, "spec_algorithm") is not None
    mfs = key(k, "mem_fraction_static")
    return Layout(
        tp=tp, dp=key(k, "dp", 1), attn_dp=bool(key(k, "attn_dp", False)),
        ep=key(k, "ep", 1) or 1, a2a=key(k, "moe_a2a", "none"),
        expert_format=_expert_format(str(getattr(plan, "quant", "fp4")), env),
        spec=spec, draft_tokens=key(k, "spec_draft_tokens", 1) if spec else 1,
        max_running=key(k, "max_running_requests", DEFAULT_MAX_RUNNING),
        chunked_prefill=key(k, "chunked_prefill_size"),
        mem_fraction=mfs if mfs is not None else DEFAULT_MEM_FRACTION, mem_fraction_set=mfs is not None,
        context_length=key(k, "context_length"), kv_dtype=key(k, "kv_cache_dtype"),
        cuda_graph_max_bs=key(k, "cuda_graph_max_bs"),
        dispatch_tokens=_dispatch_tokens(k, env), megamoe_tokens=_megamoe_tokens(k, env),
        deepep_sms=_deepep_sms(k),
    )
