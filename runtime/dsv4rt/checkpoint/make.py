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
from dsv4rt.presets import preset_config, preset_names

PRESETS = tuple(preset_names())  # the configs live in dsv4rt/presets.yaml (the planner reads them too)

_FP4 = re.compile(r"\.experts\.\d+\.w[123]\.weight$")
_FP8 = re.compile(r"(attn\.(wq_a|wq_b|wkv|wo_a|wo_b)|indexer\.wq_b|shared_experts\.w[123]|[eh]_proj)\.weight$")
_F32 = re.compile(r"(hc_\w+_(fn|base|scale)|\.ape|attn_sink|gate\.bias)$")


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
