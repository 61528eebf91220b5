"""A timed server-sent-event stream → one Result: TTFT, ITLs, text, usage, errors.

Input is the response body as (arrival time, bytes) pieces, each stamped when the socket read that
carried it came in; every event is timed by the piece that completed it (its blank line), so events
that arrived together share a time and an event split over reads takes the later one. Parsing happens
once, after the stream ended: a busy event loop delays the parsing, never the timestamps."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Iterator

from dsv4ctl.bench import fastjson


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
    send_delay_ms: float | None = None  # client-side: asked to send → request written to the socket


def sse_events(chunks: list[tuple[float, bytes]]) -> Iterator[tuple[float, bytes]]:
    """(arrival time, payload) for each `data:` event, timed by the piece that completed it."""
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


def decode_events(chunks: list[tuple[float, bytes]]) -> tuple[list[tuple[float, Any]], bool]:
    """(time, JSON object) per event and whether [DONE] came. One JSON parse for the whole stream
    (a JSON array of the payloads): per-call overhead, not decoding, was the cost per token."""
    timed, done = [], False
    for t, payload in sse_events(chunks):
        if payload == b"[DONE]":
            done = True
        else:
            timed.append((t, payload))
    try:
        objs = fastjson.loads(b"[" + b",".join(p for _, p in timed) + b"]")
        return [(t, o) for (t, _), o in zip(timed, objs)], done
    except fastjson.DecodeError:  # a malformed event: decode one by one and skip it
        return [(t, o) for t, p in timed if (o := _loads(p)) is not None], done


def _loads(payload: bytes) -> Any:
    try:
        return fastjson.loads(payload)
    except fastjson.DecodeError:
        return None


def _delta_text(choice: dict[str, Any]) -> str:
    delta = choice.get("delta")
    if delta is not None:  # chat: reasoning tokens are tokens too (thinking mode)
        return (delta.get("content") or "") + (delta.get("reasoning_content") or "")
    return choice.get("text") or ""


def parse_stream(t0: float, chunks: list[tuple[float, bytes]]) -> Result:
    """Turn timed body pieces into a Result: TTFT, ITLs, text, usage; an unfinished stream fails."""
    times, parts, res = [], [], Result(True)
    events, finished = decode_events(chunks)
    end = chunks[-1][0] if chunks else time.perf_counter()
    for t, obj in events:
        if not isinstance(obj, dict):
            continue
        if "error" in obj:
            return Result(False, f"server error: {str(obj['error'])[:200]}", e2e_ms=(end - t0) * 1000)
        res.model = obj.get("model") or res.model
        _take_usage(res, obj.get("usage"))
        for choice in obj.get("choices") or ():
            text = _delta_text(choice)
            if text:
                times.append(t)
                parts.append(text)
            finished = finished or choice.get("finish_reason") is not None
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
