"""One streaming request against an OpenAI-compatible endpoint, timed at raw chunk arrival.

The read loop only appends (perf_counter(), bytes) per network chunk; SSE splitting and JSON parsing
happen after the stream ends, so a busy event loop delays parsing, not the timestamps.
"""

from __future__ import annotations

import asyncio
import collections
import json
import os
import time
from dataclasses import dataclass, field
from typing import Any

from dsv4ctl.bench.workloads import Prompt


@dataclass
class Endpoint:
    base_url: str
    model: str
    api: str = "chat"  # chat | completions
    api_key: str | None = None
    ignore_eos: bool = True
    temperature: float = 0.0
    timeout_s: float = 600.0
    extra_body: dict[str, Any] = field(default_factory=dict)

    @property
    def url(self) -> str:
        path = "chat/completions" if self.api == "chat" else "completions"
        return f"{self.base_url.rstrip('/')}/v1/{path}"

    def headers(self) -> dict[str, str]:
        h = {"Content-Type": "application/json"}
        if self.api_key:
            h["Authorization"] = f"Bearer {self.api_key}"
        return h

    def body(self, prompt: Prompt, stop: list[str] | None = None) -> bytes:
        """The request JSON, serialised before the clock starts."""
        b: dict[str, Any] = {"model": self.model, "max_tokens": prompt.output_len, "stream": True,
                             "stream_options": {"include_usage": True}, "temperature": self.temperature}
        if self.api == "chat":
            b["messages"] = prompt.messages or [{"role": "user", "content": prompt.text}]
        else:
            b["prompt"] = prompt.text
        if self.ignore_eos:  # honoured by sglang and vLLM: output lengths are what was asked
            b["ignore_eos"] = True
            b["min_tokens"] = prompt.output_len
        if stop:
            b["stop"] = stop
        b.update(self.extra_body)
        return json.dumps(b).encode()


@dataclass
class Result:
    ok: bool
    error: str | None = None
    status: int | None = None
    ttft_ms: float | None = None
    e2e_ms: float | None = None
    itl_ms: list[float] = field(default_factory=list)
    text: str = ""
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    tokens_from_usage: bool = False
    model: str | None = None
    spec_accept: float | None = None
    send_delay_ms: float | None = None  # client-side: asked to send → body written to the socket


async def send(session, ep: Endpoint, body: bytes) -> Result:
    """POST one streaming request; HTTP errors, timeouts and dropped streams become failed Results."""
    import aiohttp

    chunks: list[tuple[float, bytes]] = []
    payload = _timed_body(body)
    t0 = time.perf_counter()
    try:
        async with session.post(ep.url, data=payload, headers=ep.headers(),
                                timeout=aiohttp.ClientTimeout(total=ep.timeout_s)) as resp:
            proto = resp.connection.protocol if resp.connection else None
            if resp.status >= 400:
                text = (await resp.text())[:200]
                if getattr(proto, "tap", None) is not None:
                    proto.tap = []
                return Result(False, f"HTTP {resp.status}: {text}", resp.status, e2e_ms=_ms(t0))
            if getattr(proto, "tap", None) is not None:
                chunks = await _read_tapped(resp, proto)
            else:
                async for data in resp.content.iter_any():
                    chunks.append((time.perf_counter(), data))
    except asyncio.TimeoutError:
        return Result(False, f"timeout after {ep.timeout_s:g}s", e2e_ms=_ms(t0))
    except aiohttp.ClientPayloadError as exc:  # the connection closed mid-stream
        return Result(False, f"stream ended early (dropped): {exc}"[:200], e2e_ms=_ms(t0))
    except aiohttp.ClientError as exc:
        return Result(False, f"{type(exc).__name__}: {exc}"[:200], e2e_ms=_ms(t0))
    res = parse_stream(payload.sent_at or t0, chunks)
    res.send_delay_ms = ((payload.sent_at or t0) - t0) * 1000.0
    return res


def _timed_body(body: bytes):
    """The request body as an aiohttp payload that stamps when it is written to the socket.

    Latencies are measured from that moment, not from when the coroutine asked to send: on Python
    3.11 aiohttp writes the body in a task of its own, one event-loop turn later, and at high
    concurrency that turn waits behind every ready callback. The wait is reported as send_delay_ms."""
    from aiohttp.payload import BytesPayload

    class TimedBody(BytesPayload):
        sent_at: float | None = None

        async def write(self, writer) -> None:
            self.sent_at = time.perf_counter()
            await super().write(writer)

        async def write_with_length(self, writer, content_length) -> None:
            self.sent_at = time.perf_counter()
            await super().write_with_length(writer, content_length)

    return TimedBody(body, content_type="application/json")


def _ms(t0: float) -> float:
    return (time.perf_counter() - t0) * 1000.0


def sse_events(chunks: list[tuple[float, bytes]]):
    """(arrival time, payload) for each `data:` event, timed by the chunk that completed it."""
    buf = b""
    for t, data in chunks:
        buf += data
        while True:
            cut = buf.find(b"\n\n")
            if cut < 0:
                break
            event, buf = buf[:cut], buf[cut + 2:]
            for line in event.splitlines():
                if line.startswith(b"data:"):
                    yield t, line[5:].strip()


def _delta_text(choice: dict[str, Any]) -> str:
    delta = choice.get("delta")
    if delta is not None:  # chat: reasoning tokens are tokens too (thinking mode)
        return (delta.get("content") or "") + (delta.get("reasoning_content") or "")
    return choice.get("text") or ""


def decode_events(chunks: list[tuple[float, bytes]]) -> tuple[list[tuple[float, Any]], bool]:
    """(time, JSON object) per event and whether [DONE] came. One json.loads for the whole stream
    (a JSON array of the payloads): per-call overhead, not decoding, was the cost per token."""
    timed, done = [], False
    for t, payload in sse_events(chunks):
        if payload == b"[DONE]":
            done = True
        else:
            timed.append((t, payload))
    try:
        objs = json.loads(b"[" + b",".join(p for _, p in timed) + b"]")
        return [(t, o) for (t, _), o in zip(timed, objs)], done
    except json.JSONDecodeError:  # a malformed event: decode one by one and skip it
        return [(t, o) for t, p in timed if (o := _loads(p)) is not None], done


def _loads(payload: bytes) -> Any:
    try:
        return json.loads(payload)
    except json.JSONDecodeError:
        return None


def parse_stream(t0: float, chunks: list[tuple[float, bytes]]) -> Result:
    """Turn timed raw chunks into a Result: TTFT, ITLs, text, usage; an unfinished stream fails."""
    times, parts, res = [], [], Result(True)
    events, finished = decode_events(chunks)
    for t, obj in events:
        if not isinstance(obj, dict):
            continue
        if "error" in obj:
            return Result(False, f"server error: {str(obj['error'])[:200]}", e2e_ms=_ms(t0))
        res.model = obj.get("model") or res.model
        _take_usage(res, obj.get("usage"))
        for choice in obj.get("choices") or ():
            text = _delta_text(choice)
            if text:
                times.append(t)
                parts.append(text)
            finished = finished or choice.get("finish_reason") is not None
    end = chunks[-1][0] if chunks else time.perf_counter()
    if not finished:
        return Result(False, "stream ended before finish_reason/[DONE]", e2e_ms=(end - t0) * 1000)
    res.e2e_ms = (end - t0) * 1000.0
    res.text = "".join(parts)
    if times:
        res.ttft_ms = (times[0] - t0) * 1000.0
        res.itl_ms = [(b - a) * 1000.0 for a, b in zip(times, times[1:])]
    if res.completion_tokens is None:  # no usage from the server: count chunks, and say so
        res.completion_tokens = len(times)
    return res


def _take_usage(res: Result, usage: dict[str, Any] | None) -> None:
    if not usage:
        return
    res.prompt_tokens = usage.get("prompt_tokens", res.prompt_tokens)
    if usage.get("completion_tokens") is not None:
        res.completion_tokens = usage["completion_tokens"]
        res.tokens_from_usage = True
    for key, value in usage.items():  # e.g. sglang/vLLM spec-decode accept length, when reported
        if "accept" in key and isinstance(value, (int, float)):
            res.spec_accept = float(value)


async def _read_tapped(resp, proto) -> list[tuple[float, bytes]]:
    """Wait once for the end of the body (no wake-up per chunk), then time each SSE event by the
    raw socket read that carried its terminating blank line (k-th raw "\\n\\n" = k-th event)."""
    await resp.content.wait_eof()
    body = _drain(resp.content)
    raw, proto.tap = proto.tap, []  # the connection's next response starts a fresh tap
    ends, carry = [], b""
    for t, data in raw:
        n = (carry + data).count(b"\n\n") - carry.count(b"\n\n")
        ends += [t] * n
        carry = data[-1:]
    pieces = body.split(b"\n\n")
    if len(pieces) - 1 != len(ends):  # unexpected framing: fall back to one arrival for the body
        return [(raw[-1][0] if raw else time.perf_counter(), body)]
    return [(t, p + b"\n\n") for t, p in zip(ends, pieces)]


def _drain(content) -> bytes:
    """All buffered body bytes at once. read_nowait() pops chunk by chunk (≈6 µs each, a third of
    the client's per-token cost at c=256); the private buffer is joined when it looks as expected."""
    buf = getattr(content, "_buffer", None)
    if isinstance(buf, collections.deque) and isinstance(getattr(content, "_size", None), int):
        body = b"".join(buf)
        buf.clear()
        content._size = 0  # at_eof() is then true, so the connection goes back to the pool
        return body
    return content.read_nowait(-1)


def _timed_connector(limit: int):
    """A TCPConnector whose protocol stamps each raw socket read with perf_counter() inside
    data_received, before aiohttp parses it: timestamps do not wait for the task to be scheduled."""
    import functools

    import aiohttp
    from aiohttp.client_proto import ResponseHandler

    class TimedHandler(ResponseHandler):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.tap: list[tuple[float, bytes]] = []

        def data_received(self, data: bytes) -> None:
            self.tap.append((time.perf_counter(), data))
            super().data_received(data)

    conn = aiohttp.TCPConnector(limit=limit, limit_per_host=limit, ttl_dns_cache=300, force_close=False)
    timed = os.environ.get("DSV4CTL_BENCH_RAW_TIMESTAMPS", "1") != "0"  # 0: plain iter_any reads
    if timed and isinstance(getattr(conn, "_factory", None), functools.partial):  # private in aiohttp 3.x
        conn._factory = functools.partial(TimedHandler, loop=conn._factory.keywords.get("loop"))
    return conn


def make_session(limit: int):
    """One aiohttp session for a whole run: pooled keep-alive connections, no per-request DNS.
    A large read buffer because the timed path reads the body once, at its end."""
    import aiohttp

    return aiohttp.ClientSession(connector=_timed_connector(limit), timeout=aiohttp.ClientTimeout(total=None),
                                 read_bufsize=2**23, auto_decompress=False)


def install_fast_loop() -> bool:
    """Use uvloop when installed: its event loop costs less per chunk, which is what caps one core."""
    try:
        import uvloop
    except ImportError:
        return False
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    return True
