"""Shortcuts of the decode path that must not change a single number: the indexer skipped when the
top-k would select every entry, and the fused input projections (layers/fused.py)."""

from __future__ import annotations

import torch
from torch import nn

from dsv4rt.checkpoint.load import load_model
from dsv4rt.layers.fused import FusedLinears
from dsv4rt.model import Indexer


def _prefill_and_decode(m, max_seq_len: int):
    m.allocate_cache(2, max_seq_len)
    ids = torch.randint(2, m.args.vocab_size, (2, 24), generator=torch.Generator().manual_seed(1))
    slots = torch.tensor([1, 0])
    out = [m(ids[:, :20], torch.zeros(2, dtype=torch.long), slots)]
    out += [m(ids[:, 20 + k : 21 + k], torch.full((2,), 20 + k), slots) for k in range(4)]
    return torch.stack(out)


def test_indexer_skip_equals_scoring_when_topk_covers_all_entries(tiny_dir, monkeypatch):
    torch.set_num_threads(1)
    m, _ = load_model(tiny_dir)
    n_entries = 32 // 4
    assert m.args.index_topk == n_entries  # the tiny preset: top-8 of 8 entries at 32 positions
    skipped = _prefill_and_decode(m, 32)
    calls = []
    monkeypatch.setattr(Indexer, "selects_all", lambda self, n: calls.append(n) or False)
    scored = _prefill_and_decode(m, 32)
    assert calls and set(calls) == {n_entries}
    torch.testing.assert_close(skipped, scored, rtol=0, atol=0)


def test_fused_linears_equal_separate_ones_and_follow_new_weights():
    torch.manual_seed(0)
    lins = [nn.Linear(16, n, bias=False) for n in (3, 8, 5)]
    x = torch.randn(4, 16)
    want = [lin(x) for lin in lins]
    fused = FusedLinears(*lins)
    for a, b in zip(fused(x), want):
        torch.testing.assert_close(a, b)
    assert lins[1].weight.data_ptr() != fused.weight.data_ptr()  # members became views of the stack
    assert lins[1].weight.untyped_storage().data_ptr() == fused.weight.untyped_storage().data_ptr()
    lins[2].weight = nn.Parameter(torch.randn(5, 16))  # a checkpoint loaded with assign=True
    torch.testing.assert_close(fused(x)[2], x @ lins[2].weight.t())
    lins[0].weight.data.mul_(2)  # in place on a view: the stack sees it
    torch.testing.assert_close(fused(x)[0], 2 * want[0])
