"""Load an official-format V4 checkpoint (single or sharded safetensors) into a `Transformer`.

Quantized weights are dequantized on load, on CPU: FP8 e4m3 + `.scale` (128×128 UE8M0 blocks) and
FP4 experts (int8, two codes per byte + `.scale` per 32 inputs). Names written by transformers'
`save_pretrained` (`model.` prefix, `embed_tokens`, `hc_head.hc_fn`, `attn.norm`) are mapped back to
the official ones. Loading is strict: every missing, unexpected or misshaped tensor is reported by name.
"""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path

import torch
from safetensors import safe_open

from dsv4rt.checkpoint.quant import fp4_dequantize, fp8_dequantize
from dsv4rt.config import ModelArgs
from dsv4rt.model import Transformer

log = logging.getLogger(__name__)

# transformers' save_pretrained spelling -> official names (applied after stripping "model.")
_RENAMES = [
    (re.compile(r"^embed_tokens\.weight$"), "embed.weight"),
    (re.compile(r"^lm_head\.weight$"), "head.weight"),
    (re.compile(r"^hc_head\.hc_(fn|base|scale)$"), r"hc_head_\1"),
    (re.compile(r"^(layers\.\d+\.attn)\.norm\.weight$"), r"\1.kv_norm.weight"),
    (re.compile(r"\.gate\.e_score_correction_bias$"), ".gate.bias"),
]
# parameters the official checkpoints keep in fp32 whatever the compute dtype
_FP32_NAMES = re.compile(r"(hc_\w+_(fn|base|scale)|\.ape|attn_sink|gate\.bias)$")
_SCALE_SUFFIXES = (".scale", ".weight_scale_inv")


class CheckpointError(ValueError):
    """A checkpoint that does not match its config; the message names the tensor and the file."""


def official_name(name: str) -> str:
    name = name.removeprefix("model.")
    for pat, rep in _RENAMES:
        name = pat.sub(rep, name)
    return name


def shard_files(path: Path) -> list[Path]:
    """Files of a (possibly sharded) checkpoint, via model.safetensors.index.json when present."""
    index = path / "model.safetensors.index.json"
    if index.is_file():
        weight_map = json.loads(index.read_text()).get("weight_map", {})
        files = sorted({path / f for f in weight_map.values()})
        missing = [str(f) for f in files if not f.is_file()]
        if missing:
            raise CheckpointError(f"{index}: shard(s) listed but not found: {', '.join(missing)}")
        return files
    files = sorted(path.glob("*.safetensors"))
    if not files:
        raise CheckpointError(f"{path}: no *.safetensors files")
    return files


def _scale_name(name: str, keys: set[str]) -> str | None:
    base = name.removesuffix(".weight")
    for suffix in _SCALE_SUFFIXES:
        if base + suffix in keys:
            return base + suffix
    return None


def _dequantize(name: str, w: torch.Tensor, scale: torch.Tensor | None, file: Path) -> torch.Tensor:
    if w.dtype == torch.float8_e4m3fn:
        if scale is None:
            raise CheckpointError(f"{file}: FP8 tensor '{name}' has no '.scale' companion")
        return fp8_dequantize(w, scale)
    if w.dtype in (torch.int8, torch.uint8) and scale is not None:  # packed FP4
        return fp4_dequantize(w, scale)
    return w


def read_tensors(path: str | Path) -> dict[str, torch.Tensor]:
    """All tensors under official names, dequantized (float32 for quantized ones)."""
    out: dict[str, torch.Tensor] = {}
    for file in shard_files(Path(path)):
        with safe_open(str(file), framework="pt") as f:
            keys = set(f.keys())
            scales = {s for k in keys if (s := _scale_name(k, keys)) and k.endswith(".weight")}
            for k in sorted(keys - scales):
                s = _scale_name(k, keys) if k.endswith(".weight") else None
                out[official_name(k)] = _dequantize(k, f.get_tensor(k), f.get_tensor(s) if s else None, file)
    return out


def _check(expected: dict[str, torch.Tensor], got: dict[str, torch.Tensor], path: Path) -> None:
    missing = sorted(set(expected) - set(got))
    unexpected = sorted(set(got) - set(expected))
    misshaped = [f"{k}: expected {tuple(expected[k].shape)}, got {tuple(got[k].shape)}"
                 for k in sorted(set(expected) & set(got)) if expected[k].shape != got[k].shape]
    problems = ([f"missing tensor '{k}'" for k in missing] + [f"unexpected tensor '{k}'" for k in unexpected]
                + [f"misshaped tensor {m}" for m in misshaped])
    if problems:
        shown = "; ".join(problems[:20]) + (f"; ... {len(problems) - 20} more" if len(problems) > 20 else "")
        raise CheckpointError(f"{path}: checkpoint does not match config.json: {shown}")


def _cast(name: str, t: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    if not t.is_floating_point():
        return t.long()
    return t.float() if _FP32_NAMES.search(name) else t.to(dtype)


def load_model(path: str | Path, device: str | torch.device = "cpu",
               dtype: torch.dtype = torch.float32) -> tuple[Transformer, ModelArgs]:
    """Read config.json + safetensors from `path` -> (model in eval mode on `device`, args)."""
    path = Path(path)
    args = ModelArgs.from_pretrained_dir(path)
    tensors = read_tensors(path)
    if args.n_mtp_layers and not any(k.startswith("mtp.") for k in tensors):
        # transformers drops the MTP layer on save; the main model is still complete
        log.warning("%s: no mtp.* tensors, loading without the MTP draft head", path)
        args.n_mtp_layers = 0
    with torch.device("meta"):
        model = Transformer(args)
    _check(model.state_dict(), tensors, path)
    model.load_state_dict({k: _cast(k, v, dtype) for k, v in tensors.items()}, strict=True, assign=True)
    return model.to(device).eval(), args
