"""LLMEngine on the FakeModel: batching, chunking and prefix reuse never change greedy output."""

import pytest

from dsv4rt.engine.config import EngineConfig
from dsv4rt.engine.engine import build_engine
from dsv4rt.engine.fake_model import FakeModel, greedy_reference
from dsv4rt.engine.model_runner import KVBudgetError
from dsv4rt.engine.sequence import FinishReason, SamplingParams, Sequence

PROMPTS = [[3, 4, 5], [9] * 11, [1, 2], list(range(20, 37)), [5, 6, 7, 8, 9]]


def make_engine(**kw):
    cfg = EngineConfig(model_path="-", **{"chunked_prefill_size": 8, "kv_budget_bytes": 1 << 20, **kw})
    return build_engine(cfg, FakeModel(), max_seq_len=64)


def run_all(engine, seqs):
    for s in seqs:
        engine.add(s)
    while engine.scheduler.has_work:
        engine.step()
    engine.scheduler.slots.check_integrity()
    return [s.output_ids for s in seqs]


def greedy(prompts, n=6, **kw):
    return [Sequence(list(p), SamplingParams(max_tokens=n, temperature=0, **kw)) for p in prompts]


@pytest.mark.parametrize("chunk,running", [(8, 8), (3, 2), (512, 1)])
def test_batched_chunked_greedy_equals_single_request(chunk, running):
    want = [greedy_reference(FakeModel(), p, 6) for p in PROMPTS]
    engine = make_engine(chunked_prefill_size=chunk, max_running_requests=running)
    assert run_all(engine, greedy(PROMPTS)) == want


def test_prefix_reuse_continues_the_slot_and_matches():
    engine = make_engine(max_running_requests=1)
    (first,) = greedy([[4, 5, 6]])
    run_all(engine, [first])
    turn2 = first.token_ids[:-1] + [first.output_ids[-1], 11, 12]
    (second,) = greedy([turn2])
    assert run_all(engine, [second]) == [greedy_reference(FakeModel(), turn2, 6)]
    assert second.num_cached == len(first.token_ids) - 1  # all computed tokens of turn 1


def test_seeded_sampling_is_repeatable_and_batch_independent():
    def sample(prompts, seed=7):
        p = SamplingParams(max_tokens=8, temperature=1.0, top_p=0.9, top_k=20, seed=seed)
        return run_all(make_engine(), [Sequence(list(x), p) for x in prompts])

    alone = sample([[1, 2, 3]])[0]
    assert sample([[9, 9], [1, 2, 3]])[1] == alone
    assert sample([[1, 2, 3]], seed=8)[0] != alone
    assert alone != greedy_reference(FakeModel(), [1, 2, 3], 8)


def test_stop_string_cuts_text_and_ends_request():
    engine = make_engine()
    engine.decode = lambda ids: "".join(chr(97 + i % 26) for i in ids)
    (ref,) = greedy([[3, 4, 5]], n=6)
    run_all(engine, [ref])
    stop = ref.text or engine.decode(ref.output_ids)[2:4]
    (s,) = greedy([[3, 4, 5]], n=6, stop=(stop,))
    run_all(engine, [s])
    assert s.finish_reason is FinishReason.STOP and s.text == engine.decode(ref.output_ids)[:2]


def test_text_is_decoded_incrementally_and_equals_the_whole_decode():
    """Each token decodes a short window (not the whole output: that was quadratic on the engine's
    thread), and the text, multi-byte characters split across tokens included, is the whole decode."""
    cfg = EngineConfig(model_path="-", chunked_prefill_size=8, kv_budget_bytes=1 << 20)
    engine = build_engine(cfg, FakeModel(vocab_size=256), max_seq_len=128)
    widths = []

    def decode(ids):  # byte-level: token t is byte t (random bytes: broken and multi-byte UTF-8 alike)
        widths.append(len(ids))
        return bytes(ids).decode("utf-8", errors="replace")

    engine.decode = decode
    seqs = [Sequence([3, 4, 5], SamplingParams(max_tokens=80, temperature=0, ignore_eos=True), keep_text=True),
            Sequence([0xC3], SamplingParams(max_tokens=60, temperature=0, ignore_eos=True), keep_text=True)]
    run_all(engine, seqs)
    for s in seqs:
        assert s.text == bytes(s.output_ids).decode("utf-8", errors="replace")
    assert max(widths) <= 12, max(widths)  # a window of a few tokens, not the 80 of the output


def test_eos_stops_unless_ignored_and_logprobs_are_reported():
    ref = greedy_reference(FakeModel(), [3, 4, 5], 6)
    engine = make_engine()
    a, b = greedy([[3, 4, 5]] * 2, logprobs=True, top_logprobs=2)
    a.eos_token_ids = (ref[2],)
    b.eos_token_ids, b.params = (ref[2],), SamplingParams(max_tokens=6, temperature=0, ignore_eos=True)
    run_all(engine, [a, b])
    assert a.output_ids == ref[:3] and a.finish_reason is FinishReason.STOP
    assert b.output_ids == ref and b.finish_reason is FinishReason.LENGTH
    lp, top = a.output_logprobs[0]
    assert top[0][0] == ref[0] and lp == pytest.approx(top[0][1]) and lp < 0


def test_context_length_bounds_prompt_and_output():
    engine = make_engine(context_length=10)
    with pytest.raises(ValueError):
        engine.add(greedy([list(range(10))])[0])
    (s,) = greedy([list(range(8))], n=50)
    run_all(engine, [s])
    assert len(s.output_ids) == 2 and s.finish_reason is FinishReason.LENGTH


def test_pool_sized_from_byte_budget():
    engine = make_engine(kv_budget_bytes=16 * 64 * 3, max_running_requests=8)
    assert engine.runner.num_slots == 3 and engine.scheduler.max_running == 3
    with pytest.raises(KVBudgetError, match="cannot hold one sequence"):
        make_engine(kv_budget_bytes=100)


def test_decode_rows_are_batched():
    engine = make_engine(chunked_prefill_size=64)
    run_all(engine, greedy(PROMPTS, n=3))
    assert (len(PROMPTS), 1) in engine.runner.model.calls
