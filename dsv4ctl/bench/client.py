"""One streaming request against an OpenAI-compatible endpoint, timed at raw chunk arrival.

The read loop only appends (perf_counter(), bytes) per network chunk; SSE splitting and JSON parsing
happen after the stream ends, so a busy event loop delays parsing, not the timestamps.
"""

from __future__ import annotations

import asyncio
import json
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


async def send(session, ep: Endpoint, body: bytes) -> Result:
    """POST one streaming request; HTTP errors, timeouts and dropped streams become failed Results."""
    import aiohttp

    chunks: list[tuple[float, bytes]] = []
    t0 = time.perf_counter()
    try:
        async with session.post(ep.url, data=body, headers=ep.headers(),
                                timeout=aiohttp.ClientTimeout(total=ep.timeout_s)) as resp:
            if resp.status >= 400:
                text = (await resp.text())[:200]
                return Result(False, f"HTTP {resp.status}: {text}", resp.status, e2e_ms=_ms(t0))
            async for data in resp.content.iter_any():
                chunks.append((time.perf_counter(), data))
    except asyncio.TimeoutError:
        return Result(False, f"timeout after {ep.timeout_s:g}s", e2e_ms=_ms(t0))
    except aiohttp.ClientPayloadError as exc:  # the connection closed mid-stream
        return Result(False, f"stream ended early (dropped): {exc}"[:200], e2e_ms=_ms(t0))
    except aiohttp.ClientError as exc:
        return Result(False, f"{type(exc).__name__}: {exc}"[:200], e2e_ms=_ms(t0))
    return parse_stream(t0, chunks)


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


def parse_stream(t0: float, chunks: list[tuple[float, bytes]]) -> Result:
    """Turn timed raw chunks into a Result: TTFT, ITLs, text, usage; an unfinished stream fails."""
    times, parts, res, finished = [], [], Result(True), False
    for t, payload in sse_events(chunks):
        if payload == b"[DONE]":
            finished = True
            continue
        try:
            obj = json.loads(payload)
        except json.JSONDecodeError:
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


def make_session(limit: int):
    """One aiohttp session for a whole run: pooled keep-alive connections, no per-request DNS."""
    import aiohttp

    conn = aiohttp.TCPConnector(limit=limit, limit_per_host=limit, ttl_dns_cache=300, force_close=False)
    return aiohttp.ClientSession(connector=conn, timeout=aiohttp.ClientTimeout(total=None),
                                 read_bufsize=2**16, auto_decompress=False)


def install_fast_loop() -> bool:
    """Use uvloop when installed: its event loop costs less per chunk, which is what caps one core."""
    try:
        import uvloop
    except ImportError:
        return False
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    return True
