"""Random V4 checkpoints in the official format (`dsv4ctl runtime make-checkpoint`).

Tensor names and dtypes follow v4-architecture.md §3: FP8 e4m3 + UE8M0 128×128 scales for the big
attention / shared-expert / MTP projections, FP4 routed experts, BF16 norms / embeddings /
compressors / gates, F32 mHC, `ape`, sinks and gate bias, I64 `tid2eid`. The tensor list comes from
the model itself (a meta-device `Transformer`), so names can never drift from what `load_model` wants.
Deterministic for a seed and a device: `device="cuda"` draws (and quantizes) on the GPU, which makes
the 4B-parameter `mini` in seconds rather than the ~2 minutes of a CPU's random numbers, but from
another random stream (different weights than the CPU's for the same seed).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import torch
from safetensors.torch import save_file

from dsv4rt.checkpoint.quant import fp4_quantize, fp8_quantize
from dsv4rt.checkpoint.tokenizer import write_tokenizer
from dsv4rt.config import ModelArgs
from dsv4rt.model import Transformer

_COMMON = {
    "architectures": ["DeepseekV4ForCausalLM"], "model_type": "deepseek_v4", "num_key_value_heads": 1,
    "qk_rope_head_dim": 64, "n_shared_experts": 1, "scoring_func": "sqrtsoftplus", "topk_method": "noaux_tc",
    "norm_topk_prob": True, "routed_scaling_factor": 1.5, "swiglu_limit": 10.0, "hc_mult": 4,
    "hc_sinkhorn_iters": 20, "hc_eps": 1e-6, "rms_norm_eps": 1e-6, "num_nextn_predict_layers": 1,
    "bos_token_id": 0, "eos_token_id": 1, "tie_word_embeddings": False, "rope_theta": 10000,
    "compress_rope_theta": 160000, "hidden_act": "silu", "attention_bias": False, "torch_dtype": "bfloat16",
    "num_hash_layers": 3, "expert_dtype": "fp4",
    "quantization_config": {"activation_scheme": "dynamic", "fmt": "e4m3", "quant_method": "fp8",
                            "scale_fmt": "ue8m0", "weight_block_size": [128, 128]},
}
# shared/reference/v4-architecture.md §6 (max_position_embeddings raised to 2048 for the 1K-token check)
PRESETS = {
    "tiny": {
        "vocab_size": 4096, "hidden_size": 256, "num_hidden_layers": 6, "num_attention_heads": 8, "head_dim": 128,
        "q_lora_rank": 128, "o_groups": 4, "o_lora_rank": 64, "sliding_window": 32,
        "compress_ratios": [0, 128, 4, 128, 4, 128, 0],
        "rope_scaling": {"type": "yarn", "factor": 4, "original_max_position_embeddings": 256,
                         "beta_fast": 32, "beta_slow": 1},
        "max_position_embeddings": 2048, "index_n_heads": 4, "index_head_dim": 128, "index_topk": 8,
        "n_routed_experts": 16, "num_experts_per_tok": 4, "moe_intermediate_size": 128,
    },
    # the GPU benchmark model (issue 4): ≈3.5 B parameters in the main model
    "mini": {
        "vocab_size": 32000, "hidden_size": 2048, "num_hidden_layers": 8, "num_attention_heads": 16, "head_dim": 512,
        "q_lora_rank": 512, "o_groups": 4, "o_lora_rank": 512, "sliding_window": 128,
        "compress_ratios": [0, 0, 4, 128, 4, 128, 4, 128, 0],
        "rope_scaling": {"type": "yarn", "factor": 16, "original_max_position_embeddings": 65536,
                         "beta_fast": 32, "beta_slow": 1},
        "max_position_embeddings": 1048576, "index_n_heads": 16, "index_head_dim": 128, "index_topk": 512,
        "n_routed_experts": 64, "num_experts_per_tok": 6, "moe_intermediate_size": 1024,
    },
}
_FP4 = re.compile(r"\.experts\.\d+\.w[123]\.weight$")
_FP8 = re.compile(r"(attn\.(wq_a|wq_b|wkv|wo_a|wo_b)|indexer\.wq_b|shared_experts\.w[123]|[eh]_proj)\.weight$")
_F32 = re.compile(r"(hc_\w+_(fn|base|scale)|\.ape|attn_sink|gate\.bias)$")


def preset_config(preset: str) -> dict:
    if preset not in PRESETS:
        raise ValueError(f"unknown preset '{preset}' (choose from {', '.join(PRESETS)})")
    return {**_COMMON, **PRESETS[preset]}


def _init_value(name: str, shape: torch.Size, g: torch.Generator, args: ModelArgs) -> torch.Tensor:
    """Random values that keep activations O(1): fan-in scaled linears, unit norms, neutral mHC
    (on the generator's device)."""
    dev = g.device
    if name.endswith("tid2eid"):
        return torch.rand(shape[0], args.n_routed_experts, generator=g, device=dev).argsort(-1)[:, : shape[1]]
    if name.endswith("norm.weight"):
        return torch.ones(shape, device=dev)
    if name.endswith("hc_head_scale") or re.search(r"hc_(attn|ffn)_scale$", name):
        return torch.ones(shape, device=dev)
    if re.search(r"(_base|\.ape|attn_sink|gate\.bias)$", name):
        return torch.randn(shape, generator=g, device=dev) * 0.1
    std = 0.02 if name.startswith("embed") or "hc_" in name else shape[-1] ** -0.5
    return torch.randn(shape, generator=g, device=dev) * std


def _encode(name: str, value: torch.Tensor) -> dict[str, torch.Tensor]:
    """One model tensor -> the checkpoint tensors that store it (weight [+ scale])."""
    base = name.removesuffix(".weight")
    if _FP4.search(name):
        q, s = fp4_quantize(value)
        return {name: q, f"{base}.scale": s}
    if _FP8.search(name):
        q, s = fp8_quantize(value)
        return {name: q, f"{base}.scale": s}
    if not value.is_floating_point():
        return {name: value.long().contiguous()}
    return {name: (value.float() if _F32.search(name) else value.to(torch.bfloat16)).contiguous()}


def _shard_of(name: str) -> str:
    m = re.match(r"(layers|mtp)\.(\d+)\.", name)
    tag = f"{m.group(1)}-{int(m.group(2)):03d}" if m else "globals"
    return f"model-{tag}.safetensors"


def write_checkpoint(out: str | Path, preset: str = "tiny", seed: int = 0, device: str = "cpu") -> Path:
    """Write config.json, sharded safetensors + index, tokenizer and generation_config.json to `out`
    (the values drawn and quantized on `device`)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    cfg = preset_config(preset)
    args = ModelArgs.from_config_dict(cfg)
    with torch.device("meta"):
        shapes = {k: v.shape for k, v in Transformer(args).state_dict().items()}
    g = torch.Generator(device).manual_seed(seed)
    shards: dict[str, dict[str, torch.Tensor]] = {}
    for name in sorted(shapes, key=_shard_of):  # stable order -> same bytes for the same seed
        encoded = _encode(name, _init_value(name, shapes[name], g, args))
        shards.setdefault(_shard_of(name), {}).update({k: v.cpu() for k, v in encoded.items()})
    weight_map, total = {}, 0
    for file, tensors in shards.items():
        save_file(tensors, str(out / file), metadata={"format": "pt"})
        weight_map.update({k: file for k in tensors})
        total += sum(t.numel() * t.element_size() for t in tensors.values())
    index = {"metadata": {"total_size": total}, "weight_map": dict(sorted(weight_map.items()))}
    (out / "model.safetensors.index.json").write_text(json.dumps(index, indent=2) + "\n")
    (out / "config.json").write_text(json.dumps(cfg, indent=2) + "\n")
    gen = {"bos_token_id": 0, "eos_token_id": 1, "do_sample": True, "temperature": 1.0, "top_p": 1.0}
    (out / "generation_config.json").write_text(json.dumps(gen, indent=2) + "\n")
    write_tokenizer(out, args.vocab_size)
    return out
