"""Load generator against the mock server: injected TTFT/ITL come back, errors are counted, resume works."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from mock_openai import MockConfig, ThreadedMock  # noqa: E402

from dsv4ctl.bench import metrics, records  # noqa: E402
from dsv4ctl.bench.client import Endpoint  # noqa: E402
from dsv4ctl.bench.loadgen import BenchFailed, LoadPlan, run_points  # noqa: E402
from dsv4ctl.bench.workloads import random_prompts  # noqa: E402


@pytest.fixture
def mock(request):
    srv = ThreadedMock(request.param if hasattr(request, "param") else MockConfig(ttft_s=0.08, itl_s=0.01))
    yield srv
    srv.close()


def run(srv, tmp_path, n=24, conc=4, out_len=12, timeout=30.0, max_err=0.05, api="chat"):
    ep = Endpoint(srv.base_url, "mock-model", api=api, timeout_s=timeout)
    asyncio.run(run_points(ep, random_prompts(n, 8, out_len), LoadPlan([conc], max_error_rate=max_err), tmp_path))
    return metrics.summarize_load(records.read_records(tmp_path))


@pytest.mark.parametrize("api,raw_ts", [("chat", "1"), ("completions", "1"), ("chat", "0")])
def test_injected_latencies_come_back(mock, tmp_path, api, raw_ts, monkeypatch):
    monkeypatch.setenv("DSV4CTL_BENCH_RAW_TIMESTAMPS", raw_ts)  # socket-level stamps, and plain reads
    s = run(mock, tmp_path, api=api)
    assert s.completed == 24 and s.error_rate == 0
    assert 80 <= s.ttft_ms.median <= 80 * 1.3
    assert 10 <= s.itl_ms.median <= 10 * 1.5
    assert s.total_output_tokens == 24 * 12  # from the server's usage
    recs = list(records.read_records(tmp_path))
    assert all(r["tokens_from_usage"] for r in recs if r["phase"] == "measure")
    assert {r["phase"] for r in recs} == {"warmup", "measure"}


@pytest.mark.parametrize("mock", [MockConfig(fail_every=5, drop_every=7)], indirect=True)
def test_5xx_and_dropped_streams_are_counted(mock, tmp_path):
    s = run(mock, tmp_path, n=30, max_err=0.9)
    recs = [r for r in records.read_records(tmp_path) if r["phase"] == "measure"]
    errors = [r["error"] for r in recs if not r["ok"]]
    assert s.failed == len(errors) > 0
    assert any("HTTP 500" in e for e in errors) and any("stream ended early" in e for e in errors)


@pytest.mark.parametrize("mock", [MockConfig(fail_every=2)], indirect=True)
def test_error_rate_over_threshold_fails_loudly(mock, tmp_path):
    with pytest.raises(BenchFailed, match="error rate"):
        run(mock, tmp_path, n=20)
    assert len(list(records.read_records(tmp_path))) > 0  # what finished is kept


@pytest.mark.parametrize("mock", [MockConfig(hang_every=4)], indirect=True)
def test_timeouts_are_counted(mock, tmp_path):
    s = run(mock, tmp_path, n=12, timeout=0.5, max_err=0.9)
    errs = [r["error"] for r in records.read_records(tmp_path) if not r["ok"]]
    assert s.failed >= 2 and all("timeout" in e for e in errs)


@pytest.mark.parametrize("mock", [MockConfig(model="other-model")], indirect=True)
def test_wrong_model_name_fails_before_load(mock, tmp_path):
    with pytest.raises(BenchFailed, match="other-model"):
        run(mock, tmp_path)
    assert not list(records.read_records(tmp_path))


@pytest.mark.parametrize("mock", [MockConfig(fail_every=0, usage=False)], indirect=True)
def test_missing_usage_is_flagged(mock, tmp_path):
    run(mock, tmp_path, n=4)
    recs = [r for r in records.read_records(tmp_path) if r["phase"] == "measure"]
    assert not any(r["tokens_from_usage"] for r in recs) and recs[0]["completion_tokens"] == 12


def test_goodput_and_percentiles():
    recs = [{"ok": True, "start": i * 0.1, "ttft_ms": t, "e2e_ms": t + 90, "itl_ms": [10] * 9,
             "completion_tokens": 10, "prompt_tokens": 5} for i, t in enumerate([10, 20, 30, 400])]
    s = metrics.summarize_load(recs, gpus=4, slo={"ttft": 100, "tpot": 11}, percentiles=[50, 95])
    assert s.slo_attainment == 0.75 and s.ttft_ms.median == 25
    assert s.model_extra["mean_ttft_ms"] == s.ttft_ms.mean  # sglang.bench_serving key names
    assert s.ttft_ms.model_extra["p95"] == pytest.approx(0.95 * 3 * 0 + 400 - 0.15 * 370, rel=1e-6)
    assert s.output_throughput_per_gpu == pytest.approx(s.output_throughput / 4)


def test_send_delay_is_reported_apart_from_ttft(mock, tmp_path):
    s = run(mock, tmp_path, n=8)
    assert s.send_delay_ms.count == 8 and 0 <= s.send_delay_ms.median < 50


def test_stream_parser_skips_a_malformed_event_and_times_by_chunk():
    from dsv4ctl.bench.client import parse_stream

    ev = lambda text: b'data: {"model": "m", "choices": [{"index": 0, "text": "%s"}]}\n\n' % text.encode()
    chunks = [(1.0, ev("a")), (1.5, b"data: {broken\n\n" + ev("b")[:10]), (1.7, ev("b")[10:] + ev("c")),
              (2.0, b'data: {"choices": [{"index": 0, "text": "", "finish_reason": "stop"}],'
                    b' "usage": {"prompt_tokens": 3, "completion_tokens": 3}}\n\ndata: [DONE]\n\n')]
    res = parse_stream(0.5, chunks)
    assert res.ok and res.text == "abc" and res.completion_tokens == 3 and res.tokens_from_usage
    assert res.ttft_ms == pytest.approx(500) and res.itl_ms == pytest.approx([700, 0])
    assert not parse_stream(0.5, chunks[:2]).ok  # no finish_reason, no [DONE]: dropped
