"""Which plan keys the included runtime honours: torch-free, so `dsv4ctl plan` can check a plan for the
runtime before anything starts, and `python -m dsv4rt serve --plan` refuses the same keys by name."""

from __future__ import annotations

from typing import Any

# plan key -> serve option it sets
PLAN_TO_OPTION = {
    "model_path": "model", "served_model_name": "served_model_name", "host": "host", "port": "port",
    "tp": "tp_size", "max_running_requests": "max_running_requests",
    "chunked_prefill_size": "chunked_prefill_size", "mem_fraction_static": "mem_fraction_static",
    "context_length": "context_length", "spec_algorithm": "speculative_algorithm",
    "spec_steps": "speculative_num_steps", "spec_topk": "speculative_eagle_topk",
    "spec_draft_tokens": "speculative_num_draft_tokens",
    "cuda_graph_max_bs": "cuda_graph_max_bs", "cuda_graph_bs": "cuda_graph_bs",
    "disable_cuda_graph": "disable_cuda_graph",
    "disagg_mode": "disaggregation_mode", "transfer_backend": "disaggregation_transfer_backend",
    "ib_device": "disaggregation_ib_device",
}
# keys with no effect here: parsers are always deepseek-recipe's, the tokenizer runs in-process, and the
# checkpoint's own tensors say whether experts are FP4 (dequantized at load)
PLAN_IGNORED = {"trust_remote_code", "reasoning_parser", "tool_call_parser", "tokenizer_worker_num",
                "disable_flashinfer_autotune", "fp4_experts", "dist_init_addr"}  # one process: no rendezvous
# keys we do not implement: accepted only at these neutral values (DESIGN §3 defaults)
PLAN_NEUTRAL = {
    "dp": (1,), "attn_dp": (False,), "ep": (None, 1), "pp": (1,), "prefill_cp": (False,), "cp_strategy": (None,),
    "cp_size": (None, 1), "moe_a2a": ("none",), "moe_runner": (None,), "mxfp4_moe_precision": (None,),
    "megamoe": ("off",), "deepep_num_sms": (None,), "deepep_dispatch_tokens_per_rank": (None,),
    "megamoe_tokens_per_rank": (None,), "shared_experts_fusion": ("auto",), "shared_expert_tp1": (False,),
    "two_batch_overlap": (False,),
    "swa_full_tokens_ratio": (None,), "kv_cache_dtype": (None, "auto"),
    "attention_backend": (None,), "page_size": (None,), "hicache": ("off",), "enable_prefill_delayer": (False,),
    "prefill_delayer_max_delay_ms": (None,), "mnnvl": (None, False),
    "mooncake_custom_mem_pool": (False,),
}

# serve options accepted for plan/renderer compatibility but implemented only at these values
# (speculative decoding: EAGLE chains with the MTP layer, no top-k > 1 trees)
OPTION_NEUTRAL = {"tp_size": (None, 1), "speculative_algorithm": (None, "EAGLE", "NEXTN"),
                  "speculative_eagle_topk": (None, 1), "disaggregation_transfer_backend": (None, "mooncake")}


def unsupported(keys: dict[str, Any]) -> dict[str, Any]:
    """The keys (with their values) the runtime cannot honour: unknown ones, and the unimplemented
    ones at anything but their neutral value."""
    return {k: v for k, v in keys.items()
            if k not in PLAN_TO_OPTION and k not in PLAN_IGNORED and v not in PLAN_NEUTRAL.get(k, (object(),))}


def refused(keys: dict[str, Any]) -> dict[str, Any]:
    """Everything `serve --plan` would refuse in these keys: `unsupported` plus mapped keys whose
    serve option is implemented only at some values (tp 1, EAGLE with top-k 1)."""
    mapped = {k: v for k, v in keys.items() if v not in OPTION_NEUTRAL.get(PLAN_TO_OPTION.get(k, ""), (v,))}
    return unsupported(keys) | mapped


PD_ROLES = ("prefill", "decode", "router")  # one runtime process per engine role, sglang-router in front


def extra_roles(role_names) -> list[str]:
    """Serving roles besides `single` (prefill/decode disaggregation, routers): each needs an engine
    process of its own (`python -m dsv4rt serve --plan-role ROLE`)."""
    return sorted(name for name in role_names if name != "single")
