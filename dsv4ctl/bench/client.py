"""One streaming request against an OpenAI-compatible endpoint, timed at raw chunk arrival.

The request goes out through the load generator's own HTTP/1.1 client (dsv4ctl.bench.rawhttp): each
socket read is stamped as it arrives and the stream is parsed once it ended (dsv4ctl.bench.sse), so a
busy event loop delays the parsing, not the timestamps. Every failure (HTTP status, timeout, dropped
stream, refused connection) becomes a failed Result of that request alone.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

from dsv4ctl.bench import fastjson
from dsv4ctl.bench.rawhttp import BadResponse, Session, StreamEnded
from dsv4ctl.bench.sse import Result, parse_stream
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
        return fastjson.dumps(b)


async def send(session: Session, ep: Endpoint, body: bytes) -> Result:
    """POST one streaming request; HTTP errors, timeouts and dropped streams become failed Results.
    Latencies count from when the request went to the socket; the wait before it is send_delay_ms."""
    t_ask = time.perf_counter()
    try:
        resp = await session.request("POST", session.path(ep.url), ep.headers(), body, ep.timeout_s)
    except asyncio.TimeoutError:
        return Result(False, f"timeout after {ep.timeout_s:g}s", e2e_ms=_ms(t_ask))
    except StreamEnded as exc:  # the connection closed mid-stream
        return Result(False, f"stream ended early (dropped): {exc}"[:200], e2e_ms=_ms(t_ask))
    except (OSError, BadResponse) as exc:
        return Result(False, f"{type(exc).__name__}: {exc}"[:200], e2e_ms=_ms(t_ask))
    if resp.status >= 400:
        text = resp.body()[:200].decode("utf-8", "replace")
        return Result(False, f"HTTP {resp.status}: {text}", resp.status, e2e_ms=_ms(resp.sent_at))
    res = parse_stream(resp.sent_at, resp.pieces)
    res.send_delay_ms = (resp.sent_at - t_ask) * 1000.0
    return res


def _ms(t0: float) -> float:
    return (time.perf_counter() - t0) * 1000.0


def make_session(base_url: str) -> Session:
    """One client session for a whole run: kept-alive connections to the endpoint's origin."""
    return Session(base_url)


def install_fast_loop() -> bool:
    """Use uvloop when installed: its event loop costs less per chunk, which is what caps one core."""
    try:
        import uvloop
    except ImportError:
        return False
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    return True
