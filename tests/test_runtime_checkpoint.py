"""Checkpoint formats: FP8/FP4 round trips, strict loading errors, config spellings, make-checkpoint."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file, save_file

from dsv4rt.checkpoint.load import CheckpointError, load_model, read_tensors
from dsv4rt.checkpoint.make import PRESETS, preset_config, write_checkpoint
from dsv4rt.checkpoint.quant import (FP4_TABLE, e8m0_to_float, fp4_dequantize, fp4_quantize, fp8_dequantize,
                                     fp8_quantize)
from dsv4rt.config import ConfigError, ModelArgs


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return write_checkpoint(tmp_path_factory.mktemp("tiny"), "tiny", seed=0)


def test_e8m0_decodes_powers_of_two():
    raw = torch.tensor([127, 128, 120, 0], dtype=torch.uint8)
    assert e8m0_to_float(raw).tolist() == [1.0, 2.0, 2.0 ** -7, 2.0 ** -127]
    assert e8m0_to_float(raw.view(torch.float8_e8m0fnu)).tolist() == [1.0, 2.0, 2.0 ** -7, 2.0 ** -127]


def test_fp4_nibble_order_low_first():
    # codes: element 0 -> 0b0010 (1.0), element 1 -> 0b1111 (-6.0); one scale of 2^0 for 32 elements
    packed = torch.zeros(1, 16, dtype=torch.uint8)
    packed[0, 0] = 0x2 | (0xF << 4)
    w = fp4_dequantize(packed.view(torch.int8), torch.full((1, 1), 127, dtype=torch.uint8))
    assert w[0, :3].tolist() == [1.0, -6.0, 0.0]


def test_fp8_roundtrip_through_safetensors(tmp_path):
    w = torch.randn(200, 300) * 0.05
    q, s = fp8_quantize(w)
    assert q.dtype == torch.float8_e4m3fn and s.dtype == torch.float8_e8m0fnu and s.shape == (2, 3)
    save_file({"x.weight": q, "x.scale": s}, str(tmp_path / "m.safetensors"))
    back = read_tensors(tmp_path)["x.weight"]
    assert torch.equal(back, fp8_dequantize(q, s))
    assert (back - w).abs().max() <= w.abs().max() * 2 ** -3  # e4m3: 3 mantissa bits
    q2, s2 = fp8_quantize(back)  # dequantized values are exactly representable again
    assert torch.equal(fp8_dequantize(q2, s2), back)


def test_fp4_roundtrip_through_safetensors(tmp_path):
    grid = FP4_TABLE[torch.randint(0, 16, (64, 128))] * 2.0 ** torch.randint(-4, 4, (64, 4)).repeat_interleave(32, 1)
    q, s = fp4_quantize(grid)
    assert q.shape == (64, 64) and q.dtype == torch.int8 and s.shape == (64, 4)
    save_file({"e.w1.weight": q, "e.w1.scale": s}, str(tmp_path / "m.safetensors"))
    assert torch.equal(read_tensors(tmp_path)["e.w1.weight"], grid)  # values on the grid survive exactly


def test_make_checkpoint_is_deterministic_and_official(tmp_path, tiny):
    again = write_checkpoint(tmp_path / "again", "tiny", seed=0)
    digest = lambda p: {f.name: hashlib.sha256(f.read_bytes()).hexdigest() for f in sorted(p.iterdir())}  # noqa: E731
    assert digest(tiny) == digest(again)
    index = json.loads((tiny / "model.safetensors.index.json").read_text())["weight_map"]
    shard = load_file(str(tiny / index["layers.2.ffn.experts.0.w1.weight"]))
    assert shard["layers.2.ffn.experts.0.w1.weight"].dtype == torch.int8  # FP4 experts
    assert shard["layers.2.attn.wq_b.weight"].dtype == torch.float8_e4m3fn
    assert shard["layers.2.attn.compressor.ape"].dtype == torch.float32
    assert "mtp.0.e_proj.weight" in index and "layers.0.ffn.gate.tid2eid" in index
    for name in ("tokenizer.json", "tokenizer_config.json", "generation_config.json", "config.json"):
        assert (tiny / name).is_file()


def test_tiny_preset_size_and_tokenizer(tiny):
    from tokenizers import Tokenizer

    model, args = load_model(tiny)
    n = sum(p.numel() for p in model.parameters())
    assert 15e6 <= n <= 20e6
    tok = Tokenizer.from_file(str(tiny / "tokenizer.json"))
    assert tok.get_vocab_size() == args.vocab_size
    assert tok.token_to_id("<｜begin▁of▁sentence｜>") == 0 and tok.token_to_id("<｜end▁of▁sentence｜>") == 1
    assert tok.token_to_id("</think>") is not None
    assert tok.decode(tok.encode("héllo <think>").ids, skip_special_tokens=False) == "héllo <think>"


def test_mini_preset_matches_the_issue():
    args = ModelArgs.from_config_dict(preset_config("mini"))
    assert (args.dim, args.n_layers, args.n_routed_experts, args.n_activated_experts) == (2048, 8, 64, 6)
    assert (args.n_heads, args.head_dim, args.q_lora_rank, args.o_groups, args.o_lora_rank) == (16, 512, 512, 4, 512)
    assert (args.index_n_heads, args.index_head_dim, args.index_topk, args.window_size) == (16, 128, 512, 128)
    assert set(PRESETS) == {"tiny", "mini"}


def _corrupt(src, dst, edit):
    dst.mkdir()
    for f in src.iterdir():
        if f.suffix == ".safetensors":
            tensors = load_file(str(f))
            edit(tensors)
            save_file(tensors, str(dst / f.name))
        else:
            (dst / f.name).write_bytes(f.read_bytes())
    return dst


def test_missing_and_misshaped_tensors_are_named(tmp_path, tiny):
    bad = _corrupt(tiny, tmp_path / "missing", lambda t: t.pop("layers.1.attn.attn_sink", None))
    with pytest.raises(CheckpointError, match=r"missing tensor 'layers\.1\.attn\.attn_sink'"):
        load_model(bad)

    def shrink(t):
        if "layers.0.attn_norm.weight" in t:
            t["layers.0.attn_norm.weight"] = t["layers.0.attn_norm.weight"][:-1].clone()

    bad = _corrupt(tiny, tmp_path / "shape", shrink)
    with pytest.raises(CheckpointError, match=r"misshaped tensor layers\.0\.attn_norm\.weight"):
        load_model(bad)


def test_config_spellings_agree(tiny):
    hf = ModelArgs.from_pretrained_dir(tiny)
    official = ModelArgs.from_config_dict(hf.to_official_dict())
    assert official == hf
    assert hf.compress_ratios == [0, 128, 4, 128, 4, 128, 0] and hf.rope_factor == 4
    with pytest.raises(ConfigError, match="num_hidden_layers"):
        ModelArgs.from_config_dict({"hidden_size": 8, "vocab_size": 10})


def test_transformers_layer_types_spelling():
    d = {"hidden_size": 64, "vocab_size": 10, "num_hidden_layers": 3, "num_attention_heads": 4, "q_lora_rank": 8,
         "n_routed_experts": 4, "moe_intermediate_size": 8, "head_dim": 64, "partial_rotary_factor": 0.25,
         "layer_types": ["sliding_attention", "compressed_sparse_attention", "heavily_compressed_attention"],
         "compress_rates": {"heavily_compressed_attention": 16}, "mlp_layer_types": ["hash_moe", "moe", "moe"],
         "o_groups": 2, "rope_parameters": {"compress": {"rope_type": "yarn", "factor": 4,
                                                          "original_max_position_embeddings": 32}}}
    args = ModelArgs.from_config_dict(d)
    assert args.compress_ratios == [0, 4, 16, 0] and args.n_hash_layers == 1 and args.rope_head_dim == 16
    assert args.rope_factor == 4 and args.original_seq_len == 32


def test_runtime_imports_without_transformers_or_gpu_libraries():
    code = (
        "import sys\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in {'transformers', 'triton', 'flashinfer', 'deep_gemm', 'deep_ep'}:\n"
        "            raise ImportError('blocked ' + name)\n"
        "sys.meta_path.insert(0, Block())\n"
        "import dsv4rt.model, dsv4rt.checkpoint.load, dsv4rt.checkpoint.make, dsv4rt.generate, dsv4rt.ops.registry\n"
        "print(dsv4rt.ops.registry.available())\n"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert "sink_attention" in res.stdout
