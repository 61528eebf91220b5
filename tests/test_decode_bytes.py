"""benchmarks/decode_bytes.py: the roofline's byte count (the numerator of every '% of roofline')."""

from __future__ import annotations

import sys
from pathlib import Path

import torch

from dsv4rt.checkpoint.load import load_model

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import decode_bytes as db  # noqa: E402


def _nbytes(t: torch.Tensor) -> int:
    return t.numel() * t.element_size()


def test_step_bytes_count_each_part_once_and_drop_a_skipped_indexer(tiny_dir):
    m, _ = load_model(tiny_dir)
    a = m.args
    m.allocate_cache(2, 1024)  # 256 CSA entries > top-8: the indexer scores
    scored = db.step_bytes(m, 1, 200, [a.n_activated_experts] * a.n_layers)
    total_params = sum(_nbytes(p) for p in m.parameters())
    mtp = sum(_nbytes(p) for p in m.mtp.parameters())
    unread_experts = sum(_nbytes(p) for layer in m.layers for e in layer.ffn.experts[a.n_activated_experts:]
                         for p in e.parameters())
    # every parameter but the MTP layer, the experts no row picked, the embedding rows not looked up
    want = total_params - mtp - unread_experts - _nbytes(m.embed.weight) + _nbytes(m.embed.weight[0])
    assert scored["weights"] == want
    # 4 more tokens: one more indexer key per CSA layer; the CSA entries read stay at the top-8
    csa_keys = sum(_nbytes(layer.attn.indexer.compressor.entries[0, 0]) for layer in m.layers
                   if layer.attn.indexer is not None)
    assert db.step_bytes(m, 1, 200)["state"] - db.step_bytes(m, 1, 196)["state"] == csa_keys
    m.allocate_cache(2, 32)  # 8 entries: top-8 selects all, the indexer is skipped
    skipped = db.step_bytes(m, 1, 20, [a.n_activated_experts] * a.n_layers)
    csa = [layer.attn for layer in m.layers if layer.attn.indexer is not None]
    assert csa and all(db.indexer_skipped(attn) for attn in csa)
    assert scored["weights"] - skipped["weights"] == sum(_nbytes(attn.indexer.wq_b.weight) for attn in csa)
    assert 0 < skipped["state"] < db.step_bytes(m, 2, 20)["state"]
