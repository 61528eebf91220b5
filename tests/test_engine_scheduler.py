"""Torch-free bookkeeping: sampling params, stop strings, slot manager and scheduler policy."""

import subprocess
import sys

import pytest

from dsv4rt.engine.scheduler import QueueFull, Scheduler
from dsv4rt.engine.sequence import (FinishReason, SamplingError, SamplingParams, Sequence, SeqStatus,
                                    find_stop, safe_text_end)
from dsv4rt.engine.slots import SlotManager


def make_sched(slots=4, running=4, queue=8, chunk=8, reuse=True):
    return Scheduler(SlotManager(slots, reuse), running, queue, chunk)


def seq(n=5, base=1, **kw):
    return Sequence(list(range(base, base + n)), SamplingParams(**kw))


def run_prefill(sched, batch):
    """What the engine does after a forward: advance positions, sample one token when done."""
    for s, n in batch.prefill:
        s.num_computed += n
        if not s.in_prefill:
            s.append(7)
    for s in batch.decode:
        s.num_computed += 1
        s.append(7)


def test_bookkeeping_is_torch_free():
    code = "import sys, dsv4rt.engine.scheduler, dsv4rt.engine.slots; assert 'torch' not in sys.modules"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


@pytest.mark.parametrize("kw,param", [({"max_tokens": 0}, "max_tokens"), ({"temperature": -1}, "temperature"),
                                      ({"top_p": 0}, "top_p"), ({"top_k": -2}, "top_k"),
                                      ({"top_logprobs": 21}, "top_logprobs"), ({"stop": ("",)}, "stop")])
def test_sampling_params_reject_bad_values(kw, param):
    with pytest.raises(SamplingError) as e:
        SamplingParams(**kw)
    assert e.value.param == param


def test_greedy_flag():
    assert SamplingParams(temperature=0).greedy and SamplingParams(top_k=1).greedy
    assert not SamplingParams(temperature=0.7).greedy


def test_find_stop_and_holdback():
    assert find_stop("hello world", ("wor", "lo")) == 3
    assert find_stop("hello", ("x",)) == -1
    assert find_stop("abcabc", ("abc",), 1) == 3
    assert safe_text_end("hello wo", ("world",)) == 6  # "wo" may become "world"
    assert safe_text_end("hello", ("world",)) == 5
    assert safe_text_end("ab\ufffd", ()) == 2  # incomplete UTF-8 waits for the next token
    assert safe_text_end("xa", ("ab", "aab")) == 1


def test_token_stops():
    s = seq(3, max_tokens=3, stop_token_ids=(9,))
    s.eos_token_ids = (2,)
    s.append(5)
    assert s.check_token_stop(100) is None
    s.append(2)
    assert s.check_token_stop(100) is FinishReason.STOP
    s2 = seq(3, max_tokens=3, ignore_eos=True)
    s2.eos_token_ids = (2,)
    s2.append(2)
    assert s2.check_token_stop(100) is None
    s2.append(9)
    assert s2.check_token_stop(5) is FinishReason.LENGTH  # context length reached


def test_slots_allocate_release_and_integrity():
    sm = SlotManager(2, enable_prefix_reuse=False)
    a, _ = sm.allocate([1, 2])
    b, _ = sm.allocate([3])
    assert {a, b} == {0, 1} and sm.num_available == 0
    with pytest.raises(RuntimeError):
        sm.allocate([4])
    sm.release(a, [1, 2])
    sm.release(b, None)
    sm.check_integrity()
    assert sm.num_available == 2 and not sm.cached


def test_prefix_reuse_needs_whole_history_as_prefix():
    sm = SlotManager(2)
    s0, _ = sm.allocate([1, 2, 3])
    sm.release(s0, [1, 2, 3, 4])
    assert sm.allocate([1, 2, 3, 5, 6]) == (1, 0)  # history not a prefix: fresh slot
    assert sm.allocate([1, 2, 3, 4, 9]) == (s0, 4)
    sm.release(s0, [1, 2, 3, 4])
    sm.release(1, [1, 2])
    assert sm.allocate([1, 2, 3, 4]) == (1, 2)  # the full history must leave one token to compute
    sm.check_integrity()


def test_cached_slots_are_evicted_lru_when_free_runs_out():
    sm = SlotManager(2)
    for p in ([1], [2]):
        sm.release(sm.allocate(p)[0], p)
    slot, reused = sm.allocate([3, 4])
    assert (slot, reused) == (0, 0) and list(sm.cached) == [1]


def test_chunked_prefill_respects_budget_and_finishes():
    sch = make_sched(chunk=8)
    a, b = seq(10), seq(5, base=50)
    sch.add(a), sch.add(b)
    batch = sch.schedule()
    assert [(s.seq_id, n) for s, n in batch.prefill] == [(a.seq_id, 8)] and not batch.decode
    run_prefill(sch, batch)
    batch = sch.schedule()
    assert [n for _, n in batch.prefill] == [2, 5]
    run_prefill(sch, batch)
    batch = sch.schedule()
    assert batch.decode == [a, b] and not batch.prefill


def test_max_running_and_queue_bound():
    sch = make_sched(slots=4, running=2, queue=3)
    seqs = [seq(2, base=10 * i) for i in range(3)]
    for s in seqs:
        sch.add(s)
    with pytest.raises(QueueFull):
        sch.add(seq())
    batch = sch.schedule()
    assert len(batch.prefill) == 2 and len(sch.running) == 2 and list(sch.waiting) == [seqs[2]]


def test_finish_and_abort_free_slots_at_once():
    sch = make_sched(slots=1, running=1)
    a, b = seq(3), seq(3, base=20)
    sch.add(a), sch.add(b)
    run_prefill(sch, sch.schedule())
    assert sch.slots.num_available == 0 and sch.abort(b.seq_id) is b  # b was still waiting
    assert sch.abort(a.seq_id) is a and a.finish_reason is FinishReason.ABORT
    assert a.status is SeqStatus.FINISHED and sch.slots.num_available == 1 and not sch.has_work
    sch.slots.check_integrity()
    assert sch.abort(12345) is None


def test_decode_and_new_prefill_share_a_step():
    sch = make_sched(slots=2, running=2)
    a = seq(3)
    sch.add(a)
    run_prefill(sch, sch.schedule())
    b = seq(4, base=30)
    sch.add(b)
    batch = sch.schedule()
    assert batch.decode == [a] and [s for s, _ in batch.prefill] == [b]
