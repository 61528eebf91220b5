"""/server_info and /model_info in SGLang's shape: sglang-router reads both from every worker before it
routes (PD mode among them), so a PD pair of the included runtime registers like SGLang workers."""

from __future__ import annotations

from importlib import metadata


def server_info(state) -> dict:
    sch = state.engine.scheduler
    info = {
        "model_path": state.model_path, "served_model_name": state.model_name, "tokenizer_path": None,
        "context_length": state.context_length, "max_running_requests": sch.max_running,
        "max_queued_requests": sch.max_queue, "chunked_prefill_size": sch.chunk_size,
        "tp_size": 1, "dp_size": 1, "pp_size": 1, "disaggregation_mode": "null",
        "engine": "dsv4rt", "version": metadata.version("dsv4ctl"),
    }
    if state.disagg is not None:
        info.update(state.disagg.info())
    return info


def model_info(state) -> dict:
    return {
        "model_path": state.model_path, "tokenizer_path": None, "is_generation": True,
        "served_model_name": state.model_name, "max_context_length": state.context_length,
        "vocab_size": state.vocab_size, "eos_token_ids": list(state.eos_token_ids),
        "model_type": "deepseek_v4", "architectures": ["DeepseekV4ForCausalLM"],
    }
