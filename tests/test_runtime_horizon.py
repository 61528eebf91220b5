"""A step's work follows the live sequences, not the slot capacity (`engine/cuda_graphs.horizon_for`):
the CSA indexer, the entry masks and the attention read only the entries below the step's horizon,
and greedy tokens are the same at a small and a huge context capacity. Before the horizon, a 1M-token
context made every decode step score 262,144 compressed entries a row (docs/performance.md)."""

from __future__ import annotations

import pytest
import torch

from dsv4rt import ops
from dsv4rt.checkpoint.load import load_model
from dsv4rt.engine.config import EngineConfig
from dsv4rt.engine.cuda_graphs import horizon_for
from dsv4rt.engine.engine import build_engine
from dsv4rt.engine.fake_model import FakeModel
from dsv4rt.engine.sequence import SamplingParams, Sequence


def test_horizon_buckets_cover_the_need_and_stop_at_the_capacity():
    assert [horizon_for(n, 1 << 20) for n in (1, 2048, 2049, 8192, 8193, 600_000)] == \
        [2048, 2048, 8192, 8192, 32768, 1 << 20]
    assert horizon_for(1, 64) == 64 and horizon_for(5000, 3000) == 3000


def run(eng, prompts, n=6):
    seqs = [Sequence(list(p), SamplingParams(max_tokens=n, temperature=0, ignore_eos=True)) for p in prompts]
    for s in seqs:
        eng.add(s)
    while eng.scheduler.has_work:
        eng.step()
    return [s.output_ids for s in seqs]


def test_runner_gives_each_step_the_bucket_of_its_longest_row():
    """The fake model refuses a row past the step's horizon; short rows get the smallest bucket even
    at a 1M-token capacity, a prompt past 2048 tokens the next one."""
    fake = FakeModel()
    cfg = EngineConfig(model_path="-", chunked_prefill_size=4096, kv_budget_bytes=1 << 30, max_running_requests=2)
    eng = build_engine(cfg, fake, max_seq_len=1 << 20)
    run(eng, [[3, 4, 5], [7] * 40])
    assert set(fake.horizons) == {2048}
    fake.horizons.clear()
    run(eng, [[5] * 2100])
    assert set(fake.horizons) == {8192}


def _record_reads(monkeypatch) -> list[int]:
    """Widths (entries) every indexer scoring and every entry mask of a step covers."""
    widths: list[int] = []
    topk, sink, decode = ops.indexer_topk, ops.sink_attention, ops.decode_attention

    def indexer(qi, ki, w, visible, k):
        widths.append(ki.shape[1])
        return topk(qi, ki, w, visible, k)

    def dec(q, win_kv, slots, pos, entries, entry_mask, *a, **kw):
        if entry_mask is not None:
            widths.append(entry_mask.shape[1])
        return decode(q, win_kv, slots, pos, entries, entry_mask, *a, **kw)

    def prefill(q, kv, mask, *a):
        widths.append(kv.shape[1])
        return sink(q, kv, mask, *a)

    for name, fn in (("indexer_topk", indexer), ("decode_attention", dec), ("sink_attention", prefill)):
        monkeypatch.setattr(ops, name, fn)
    return widths


@pytest.mark.parametrize("capacity", [1 << 17])
def test_compressed_reads_are_bounded_by_the_horizon_and_tokens_match(tiny_dir, monkeypatch, capacity):
    torch.set_num_threads(1)
    model, _ = load_model(tiny_dir)
    prompts = [list(range(5, 45)), list(range(100, 123))]

    def engine(ctx):
        cfg = EngineConfig(model_path=str(tiny_dir), chunked_prefill_size=64, max_running_requests=2,
                           kv_budget_bytes=1 << 31)
        return build_engine(cfg, model, max_seq_len=ctx)

    want = run(engine(64), prompts)  # capacity 64: the horizon is the capacity, as before it existed
    widths = _record_reads(monkeypatch)
    assert run(engine(capacity), prompts) == want
    chunk_keys = model.args.window_size + 64  # a prefill chunk's keys besides the entries: ring + chunk
    assert widths and max(widths) <= chunk_keys + 2048 // 4  # not capacity // 4 = 32,768 entries a row
