"""Logits parity of dsv4rt against transformers' DeepseekV4ForCausalLM (the reference nobody here wrote).

Pinned: transformers==5.23.0 (pyproject `dev` extra). Random float32 configs are saved with
`save_pretrained`, loaded with `dsv4rt.checkpoint.load.load_model`, and compared on prefill logits,
token-by-token decode logits (per-slot state, rows at different positions) and greedy generations.
Error metric: max |ours - ref| / max |ref| per position, ≤ 1e-4.
"""

from __future__ import annotations

import pytest
import torch

transformers = pytest.importorskip("transformers")

from dsv4rt.checkpoint.load import load_model  # noqa: E402
from dsv4rt.generate import greedy_generate  # noqa: E402

TOL = 1e-4
VOCAB = 320

# Index heads = 16 keeps Σ_h relu(q·k) ties at exactly 0 (which torch.topk may break either way)
# out of the top-k; ties are a property of the random weights, not of either implementation.
BASE = dict(
    vocab_size=VOCAB, hidden_size=64, num_attention_heads=4, head_dim=64, qk_rope_head_dim=16,
    q_lora_rank=32, o_groups=2, o_lora_rank=16, index_n_heads=16, index_head_dim=32,
    n_routed_experts=8, num_experts_per_tok=2, moe_intermediate_size=32, compress_rope_theta=160000,
    rope_scaling={"type": "yarn", "factor": 4, "original_max_position_embeddings": 32,
                  "beta_fast": 32, "beta_slow": 1},
    max_position_embeddings=512, attn_implementation="eager",
)
SHAPES = {
    # all three layer types, the real ratios 4 / 128; sequences cross the 128 boundary twice
    "swa-csa-hca": dict(num_hidden_layers=3, compress_ratios=[0, 4, 128], sliding_window=8, index_topk=4,
                        num_hash_layers=1),
    # HCA at ratio 16 (transformers' compress_rates) to cross many boundaries; hash MoE on CSA and HCA
    "hash-csa-hca16": dict(num_hidden_layers=4, compress_ratios=[4, 128, 4, 0], sliding_window=16,
                           index_topk=3, num_hash_layers=2,
                           compress_rates={"compressed_sparse_attention": 4, "heavily_compressed_attention": 16}),
}


def _randomize(model, seed: int) -> None:
    """transformers initialises sinks, biases, ape and tid2eid to zero: make every path matter."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if any(s in name for s in ("sinks", "position_bias", ".base", "hc_base", "e_score")):
                p.copy_(torch.randn(p.shape, generator=g) * 0.5)
            elif "norm" in name:
                p.copy_(1 + torch.randn(p.shape, generator=g) * 0.1)
        for mod in model.modules():
            if hasattr(mod, "tid2eid"):
                experts = torch.rand(VOCAB, mod.num_experts, generator=g).argsort(-1)[:, : mod.top_k]
                mod.tid2eid.copy_(experts)
            if hasattr(mod, "e_score_correction_bias"):
                mod.e_score_correction_bias.copy_(torch.randn(mod.num_experts, generator=g) * 0.1)


@pytest.fixture(scope="module", params=sorted(SHAPES))
def pair(request, tmp_path_factory):
    """(transformers model, our model) with the same random weights."""
    torch.manual_seed(0)
    torch.set_num_threads(1)
    cfg = transformers.DeepseekV4Config(**BASE, **SHAPES[request.param])
    ref = transformers.DeepseekV4ForCausalLM(cfg).eval()
    _randomize(ref, seed=1)
    path = tmp_path_factory.mktemp(request.param)
    ref.save_pretrained(path)
    ours, _ = load_model(path)
    return ref, ours


def _rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).abs().amax(-1) / b.abs().amax(-1)).max().item()


def _ids(n: int, seed: int) -> torch.Tensor:
    return torch.randint(0, VOCAB, (1, n), generator=torch.Generator().manual_seed(seed))


def _ref_logits(ref, ids: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return ref(ids).logits[0]


def test_prefill_logits_match(pair):
    ref, ours = pair
    ids = _ids(300, seed=2)  # > 2·128: two HCA entries, window and top-k truncation active
    ours.allocate_cache(2, 512)
    got = ours(ids, torch.tensor([0]), torch.tensor([1]), return_all_logits=True)[0]
    assert _rel_err(got, _ref_logits(ref, ids)) <= TOL


def test_decode_matches_full_rerun_and_transformers_cache(pair):
    """Prefill 120 tokens, then decode 1 token at a time across the 4-, 16- and 128-boundaries."""
    ref, ours = pair
    ids, split = _ids(140, seed=3), 120
    full = _ref_logits(ref, ids)
    ours.allocate_cache(1, 256)
    got = [ours(ids[:, :split], torch.tensor([0]), torch.tensor([0]))[0]]
    got += [ours(ids[:, t : t + 1], torch.tensor([t]), torch.tensor([0]))[0] for t in range(split, 140)]
    assert _rel_err(torch.stack(got), full[split - 1 :]) <= TOL
    with torch.no_grad():  # transformers' own cache path agrees too
        out = ref(ids[:, :split], use_cache=True)
        steps = [ref(ids[:, t : t + 1], past_key_values=out.past_key_values, use_cache=True).logits[0, -1]
                 for t in range(split, split + 10)]
    assert _rel_err(torch.stack(got[1:11]), torch.stack(steps)) <= TOL


def test_batched_decode_rows_at_different_positions(pair):
    """Two sequences of different lengths in slots 2 and 0, prefilled apart, decoded in one batch."""
    ref, ours = pair
    seqs = [_ids(61, seed=4), _ids(37, seed=5)]
    slots, prompt, steps = [2, 0], [45, 22], 14
    ours.allocate_cache(3, 256)
    for s, n, slot in zip(seqs, prompt, slots):
        ours(s[:, :n], torch.tensor([0]), torch.tensor([slot]))
    got = []
    for k in range(steps):
        batch = torch.cat([s[:, n + k : n + k + 1] for s, n in zip(seqs, prompt)])
        got.append(ours(batch, torch.tensor([n + k for n in prompt]), torch.tensor(slots)))
    got = torch.stack(got, 1)  # [2, steps, V]
    for row, (s, n) in enumerate(zip(seqs, prompt)):
        assert _rel_err(got[row], _ref_logits(ref, s)[n : n + steps]) <= TOL


def test_chunked_prefill_equals_one_shot(pair):
    _, ours = pair
    ids = _ids(150, seed=6)
    ours.allocate_cache(1, 256)
    one = ours(ids, torch.tensor([0]), torch.tensor([0]), return_all_logits=True)[0]
    parts = [(0, 37), (37, 41), (41, 130), (130, 150)]
    got = torch.cat([ours(ids[:, a:b], torch.tensor([a]), torch.tensor([0]), return_all_logits=True)[0]
                     for a, b in parts])
    assert _rel_err(got, one) <= TOL


def test_greedy_generation_matches_token_for_token(pair):
    ref, ours = pair
    ids = _ids(30, seed=7)
    with torch.no_grad():
        want = ref.generate(ids, max_new_tokens=12, do_sample=False, min_new_tokens=12)[0, 30:].tolist()
    got, _ = greedy_generate(ours, ids[0].tolist(), 12)
    assert got == want
