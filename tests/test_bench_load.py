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


@pytest.mark.parametrize("api", ["chat", "completions"])
def test_injected_latencies_come_back(mock, tmp_path, api):
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
    from dsv4ctl.bench.sse import parse_stream

    ev = lambda text: b'data: {"model": "m", "choices": [{"index": 0, "text": "%s"}]}\n\n' % text.encode()
    chunks = [(1.0, ev("a")), (1.5, b"data: {broken\n\n" + ev("b")[:10]), (1.7, ev("b")[10:] + ev("c")),
              (2.0, b'data: {"choices": [{"index": 0, "text": "", "finish_reason": "stop"}],'
                    b' "usage": {"prompt_tokens": 3, "completion_tokens": 3}}\n\ndata: [DONE]\n\n')]
    res = parse_stream(0.5, chunks)
    assert res.ok and res.text == "abc" and res.completion_tokens == 3 and res.tokens_from_usage
    assert res.ttft_ms == pytest.approx(500) and res.itl_ms == pytest.approx([700, 0])
    assert not parse_stream(0.5, chunks[:2]).ok  # no finish_reason, no [DONE]: dropped


# --- the load generator's own HTTP client (dsv4ctl.bench.rawhttp) and its records ----------------

def _sse(text: str) -> bytes:
    return b'data: {"model": "m", "choices": [{"index": 0, "text": "%s"}]}\n\n' % text.encode()


def _chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


class _Transport:
    def __init__(self):
        self.written, self.aborted = [], False

    def write(self, data):
        self.written.append(data)

    def abort(self):
        self.aborted = True


def _conn():
    from dsv4ctl.bench.rawhttp import _Conn

    conn = _Conn()
    conn.connection_made(_Transport())
    return conn


def test_raw_client_times_each_event_by_the_read_that_completed_it(monkeypatch):
    """Chunks split anywhere (inside a size line, a CRLF, an event) or joined in one read: every event
    keeps the time of the read that carried its end, the body is de-chunked exactly."""
    from dsv4ctl.bench import rawhttp
    from dsv4ctl.bench.sse import parse_stream

    body = _chunk(_sse("a")) + _chunk(_sse("b")) + _chunk(_sse("c") + _sse("d")) + \
        _chunk(b'data: {"choices": [{"index": 0, "text": "", "finish_reason": "length"}], '
               b'"usage": {"prompt_tokens": 3, "completion_tokens": 4}}\n\n') + _chunk(b"data: [DONE]\n\n") + b"0\r\n\r\n"
    head = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
    a_end, b_end = len(_chunk(_sse("a"))), len(_chunk(_sse("a"))) + len(_chunk(_sse("b")))
    cuts = [(head[:10], 1.0), (head[10:] + body[:2], 1.1), (body[2:a_end - 3], 1.2),  # "a" ends next read
            (body[a_end - 3:b_end + 3], 1.3),  # a's last "\n" and CRLF, all of b, 3 bytes of c's size line
            (body[b_end + 3:], 1.4)]  # c and d together, the usage, [DONE] and the last chunk
    clock = iter(t for _, t in cuts)
    conn = _conn()
    loop = asyncio.new_event_loop()
    try:
        asyncio.set_event_loop(loop)
        fut = loop.run_until_complete(_send(conn))
        monkeypatch.setattr(rawhttp.time, "perf_counter", lambda: next(clock))
        for data, _ in cuts:
            assert not fut.done()
            conn.data_received(data)
        resp = fut.result()
    finally:
        loop.close()
    assert resp.status == 200 and resp.body() == _dechunk(body)
    res = parse_stream(0.5, resp.pieces)
    assert res.ok and res.text == "abcd" and res.completion_tokens == 4 and res.tokens_from_usage
    assert res.ttft_ms == pytest.approx(800) and res.itl_ms == pytest.approx([0, 100, 0])
    assert res.e2e_ms == pytest.approx(900)


async def _send(conn):
    return conn.send(b"GET / HTTP/1.1\r\n\r\n")


def _dechunk(body: bytes) -> bytes:
    out, pos = b"", 0
    while True:
        eol = body.index(b"\r\n", pos)
        size = int(body[pos:eol], 16)
        if not size:
            return out
        out += body[eol + 2: eol + 2 + size]
        pos = eol + 4 + size


@pytest.mark.parametrize("head,reads,body", [
    (b"HTTP/1.1 500 X\r\nContent-Length: 5\r\n\r\n", [b"err", b"or"], b"error"),
    (b"HTTP/1.0 200 OK\r\n\r\n", [b"until ", b"close"], b"until close"),  # no length: read to EOF
    (b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n", [], b""),
])
def test_raw_client_reads_length_and_eof_bodies(head, reads, body):
    conn = _conn()
    loop = asyncio.new_event_loop()
    try:
        fut = loop.run_until_complete(_send(conn))
        for data in [head, *reads]:
            conn.data_received(data)
        if b"Content-Length" not in head:
            assert not fut.done()
            conn.connection_lost(None)
        assert fut.result().body() == body
    finally:
        loop.close()


def test_raw_client_errors_are_the_request_s_own(mock_plain):
    """A refused port, garbage instead of HTTP and a stream cut short fail one request each, with a
    reason; the session goes on with the next request."""
    from dsv4ctl.bench.client import make_session, send

    async def go():
        bad = Endpoint("http://127.0.0.1:9", "m", api="completions", timeout_s=5)  # port 9: refused
        async with make_session(bad.base_url) as s:
            refused = await send(s, bad, b"{}")
        ep = Endpoint(mock_plain.base_url, "mock-model", api="completions", timeout_s=5)
        async with make_session(ep.base_url) as s:
            good = [await send(s, ep, ep.body(p)) for p in random_prompts(3, 4, 3)]
            status, models = await s.get_json("/v1/models")
        return refused, good, status, models

    refused, good, status, models = asyncio.run(go())
    assert not refused.ok and "Error" in refused.error
    assert all(r.ok and r.completion_tokens == 3 for r in good) and status == 200
    assert models["data"][0]["id"] == "mock-model"


@pytest.fixture
def mock_plain():
    srv = ThreadedMock(MockConfig())
    yield srv
    srv.close()


def test_bad_response_fails_only_that_request():
    from dsv4ctl.bench.rawhttp import BadResponse

    conn = _conn()
    loop = asyncio.new_event_loop()
    try:
        fut = loop.run_until_complete(_send(conn))
        conn.data_received(b"SSH-2.0-OpenSSH_9.6\r\n\r\n")
        with pytest.raises(BadResponse, match="status line"):
            fut.result()
        assert conn.closed and conn.transport.aborted
    finally:
        loop.close()


def test_records_are_flushed_within_the_interval_and_on_every_exit(tmp_path):
    """A line waits in memory at most flush_s (a timer on the loop, not the next write), and a run
    that fails (Ctrl-C here) still leaves every finished record on disk."""
    seen = {}

    async def go():
        with records.RecordWriter(tmp_path, flush_s=0.5) as w:
            w.write({"index": 0, "ok": True})
            seen["now"] = len(list(records.read_records(tmp_path)))
            await asyncio.sleep(0.8)
            seen["later"] = len(list(records.read_records(tmp_path)))
            w.write({"index": 1, "ok": True, "text": "naïve"})
            raise KeyboardInterrupt  # Ctrl-C mid-run

    with pytest.raises(KeyboardInterrupt):
        asyncio.run(go())
    assert seen == {"now": 0, "later": 1}
    recs = list(records.read_records(tmp_path))
    assert [r["index"] for r in recs] == [0, 1] and recs[1]["text"] == "naïve"


def test_json_falls_back_to_the_stdlib(monkeypatch):
    from dsv4ctl.bench import fastjson

    obj = {"a": [1, 2.5, None, "é"], "b": {"c": True}}
    fast = fastjson.dumps(obj)
    monkeypatch.setattr(fastjson, "_orjson", None)
    assert fastjson.backend() == "json" and fastjson.loads(fastjson.dumps(obj)) == obj
    assert fastjson.loads(fast) == obj
    with pytest.raises(fastjson.DecodeError):
        fastjson.loads(b"{broken")


def test_a_kept_alive_connection_the_server_dropped_is_replaced_once():
    """The server closes a reused connection without answering (its keep-alive timeout raced our
    request): the request goes again on a fresh connection. A fresh connection closed that way is an
    error of that request, never retried."""
    from dsv4ctl.bench.rawhttp import Session, StreamEnded

    async def handle(reader, writer):
        for served in range(1, 3):
            try:
                path = (await reader.readuntil(b"\r\n\r\n")).split(b" ")[1]
            except asyncio.IncompleteReadError:
                break
            if served == 2 or path == b"/never":
                break
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}")
        writer.close()

    async def go():
        srv = await asyncio.start_server(handle, "127.0.0.1", 0)
        async with srv, Session(f"http://127.0.0.1:{srv.sockets[0].getsockname()[1]}") as s:
            first = await s.get_json("/a")
            second = await s.get_json("/b")  # the kept-alive connection is dropped: retried on a new one
            with pytest.raises(StreamEnded):
                await s.request("GET", "/never", {})
        return first, second

    assert asyncio.run(go()) == ((200, {}), (200, {}))
