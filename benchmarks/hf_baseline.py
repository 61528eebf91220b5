"""transformers' `DeepseekV4ForCausalLM.generate` on a dsv4rt model's weights (the × column of
benchmarks/gpu_decode.py). transformers reads the official tensor names that its `save_pretrained`
writes, so the dequantized model is saved once in bf16 under those names and loaded back."""

from __future__ import annotations

import json
import time
from pathlib import Path

import torch
from safetensors.torch import save_file


def export_for_transformers(model, ckpt: Path, out: Path) -> Path:
    """Unquantized copy (no MTP: transformers drops it) of `model` with ckpt's config.json."""
    out.mkdir(parents=True, exist_ok=True)
    cfg = json.loads((ckpt / "config.json").read_text())
    cfg.pop("quantization_config", None)
    (out / "config.json").write_text(json.dumps(cfg))
    sd = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items() if not k.startswith("mtp.")}
    save_file(sd, str(out / "model.safetensors"), metadata={"format": "pt"})
    return out


def load(path: Path):
    import transformers

    return transformers.DeepseekV4ForCausalLM.from_pretrained(path, dtype=torch.bfloat16).cuda().eval()


def _generate_seconds(ref, ids: torch.Tensor, new: int) -> float:
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    with torch.no_grad():
        ref.generate(ids, max_new_tokens=new, min_new_tokens=new, do_sample=False)
    torch.cuda.synchronize()
    return time.perf_counter() - t0


def decode_tok_s(ref, batch: int, prompt_len: int, new: int, seed: int = 0) -> float:
    """Decode tokens/s: (time for 1+new tokens − time for 1 token) excludes the prefill."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(2, ref.config.vocab_size, (batch, prompt_len), generator=g).cuda()
    _generate_seconds(ref, ids, 2)  # warm-up
    t1 = _generate_seconds(ref, ids, 1)
    tn = _generate_seconds(ref, ids, 1 + new)
    return batch * new / (tn - t1)
