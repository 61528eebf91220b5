"""A mock OpenAI server with known answers and injected delays; it records its own send times.

Raw asyncio protocol (no web framework) so that at hundreds of concurrent streams it is still the
truth: per request it records when the request was parsed and when each token chunk was written.
Used by the bench tests (in a thread) and by benchmarks/loadgen_fidelity.py (in its own process).
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from dataclasses import dataclass, field
from typing import Callable


@dataclass
class MockConfig:
    model: str = "mock-model"
    ttft_s: float = 0.0
    itl_s: float = 0.0
    answer: Callable[[str], str] | None = None  # prompt text -> answer text (known answers)
    fail_every: int = 0  # every k-th request gets HTTP 500
    hang_every: int = 0  # every k-th request never answers (client timeout)
    drop_every: int = 0  # every k-th stream is cut after 2 tokens
    usage: bool = True
    record: bool = True


@dataclass
class Truth:
    """Server-side timestamps (perf_counter of this process) per request."""

    recv: list[float] = field(default_factory=list)
    sends: list[list[float]] = field(default_factory=list)


def prompt_text(body: dict) -> str:
    if "messages" in body:
        return "\n".join(str(m.get("content", "")) for m in body["messages"])
    return str(body.get("prompt", ""))


def sse(obj: dict) -> bytes:
    data = b"data: " + json.dumps(obj).encode() + b"\n\n"
    return b"%x\r\n%s\r\n" % (len(data), data)


class Handler(asyncio.Protocol):
    def __init__(self, server: "MockServer"):
        self.srv, self.buf, self.transport = server, b"", None

    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buf += data
        while True:
            head_end = self.buf.find(b"\r\n\r\n")
            if head_end < 0:
                return
            head = self.buf[:head_end].decode("latin-1")
            length = 0
            for line in head.split("\r\n")[1:]:
                if line.lower().startswith("content-length:"):
                    length = int(line.split(":", 1)[1])
            if len(self.buf) < head_end + 4 + length:
                return
            body = self.buf[head_end + 4: head_end + 4 + length]
            self.buf = self.buf[head_end + 4 + length:]
            asyncio.ensure_future(self.srv.handle(self.transport, head.split(" ")[1], body))


class MockServer:
    def __init__(self, config: MockConfig | None = None):
        self.cfg = config or MockConfig()
        self.truth = Truth()
        self.count = 0
        self.bodies: list[dict] = []

    async def handle(self, tr, path: str, raw: bytes) -> None:
        t_recv = time.perf_counter()
        if path.startswith("/v1/models"):
            return self.reply(tr, 200, {"object": "list", "data": [{"id": self.cfg.model, "object": "model"}]})
        if path.startswith("/reset"):  # a fresh truth for the next client (benchmarks/load_path.py)
            self.truth, self.count = Truth(), 0
            return self.reply(tr, 200, {"status": "ok"})
        if path.startswith("/truth"):
            return self.reply(tr, 200, truth_summary(self.truth))
        if not path.startswith("/v1/"):
            return self.reply(tr, 200, {"status": "ok"})
        body = json.loads(raw or b"{}")
        self.count += 1
        n, cfg = self.count, self.cfg
        if cfg.record:
            self.bodies.append(body)
        if cfg.fail_every and n % cfg.fail_every == 0:
            return self.reply(tr, 500, {"error": {"message": "injected failure"}})
        if cfg.hang_every and n % cfg.hang_every == 0:
            return await asyncio.sleep(3600)
        try:
            tokens = self.tokens(body)
        except Exception as exc:  # a broken answer function must fail the request, not hang it
            return self.reply(tr, 500, {"error": {"message": repr(exc)}})
        chat = "chat" in path
        if not body.get("stream"):
            return self.reply(tr, 200, self.full(body, tokens, chat))
        await self.stream(tr, body, tokens, chat, t_recv, drop=bool(cfg.drop_every and n % cfg.drop_every == 0))

    def tokens(self, body: dict) -> list[str]:
        limit = int(body.get("max_tokens") or 16)
        if self.cfg.answer is None:
            return [" tok"] * limit
        words = self.cfg.answer(prompt_text(body)).split(" ")
        toks = [w if i == 0 else " " + w for i, w in enumerate(words)]
        return toks[:limit]

    def reply(self, tr, status: int, obj: dict) -> None:
        data = json.dumps(obj).encode()
        tr.write(b"HTTP/1.1 %d X\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
                 % (status, len(data), data))

    def usage(self, body: dict, tokens: list[str]) -> dict:
        return {"prompt_tokens": len(prompt_text(body).split()), "completion_tokens": len(tokens),
                "total_tokens": len(prompt_text(body).split()) + len(tokens)}

    def full(self, body: dict, tokens: list[str], chat: bool) -> dict:
        text = "".join(tokens)
        choice = {"index": 0, "finish_reason": "length"}
        choice.update({"message": {"role": "assistant", "content": text}} if chat else {"text": text})
        return {"id": "x", "model": self.cfg.model, "choices": [choice], "usage": self.usage(body, tokens)}

    async def stream(self, tr, body, tokens, chat, t_recv, drop) -> None:
        tr.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n")
        sends: list[float] = []
        model = self.cfg.model
        await asyncio.sleep(self.cfg.ttft_s)
        for i, tok in enumerate(tokens):
            if i:
                await asyncio.sleep(self.cfg.itl_s)
            if drop and i == 2:
                return tr.close()
            choice = {"index": 0, "delta": {"content": tok}} if chat else {"index": 0, "text": tok}
            tr.write(sse({"model": model, "choices": [choice]}))
            sends.append(time.perf_counter())
        last = {"index": 0, "finish_reason": "length", **({"delta": {}} if chat else {"text": ""})}
        tail = {"model": model, "choices": [last]}
        if self.cfg.usage:
            tail["usage"] = self.usage(body, tokens)
        tr.write(sse(tail) + b"%x\r\ndata: [DONE]\n\n\r\n0\r\n\r\n" % len(b"data: [DONE]\n\n"))
        if self.cfg.record:
            self.truth.recv.append(t_recv)
            self.truth.sends.append(sends)

    async def serve(self, host: str = "127.0.0.1", port: int = 0):
        loop = asyncio.get_running_loop()
        server = await loop.create_server(lambda: Handler(self), host, port, backlog=4096)
        return server, server.sockets[0].getsockname()[1]


def truth_summary(truth: Truth) -> dict:
    """Median TTFT / ITL (ms) as the server saw them: first write − request parsed; write gaps."""
    import statistics

    ttft = [(s[0] - r) * 1000 for r, s in zip(truth.recv, truth.sends) if s]
    itl = [(b - a) * 1000 for s in truth.sends for a, b in zip(s, s[1:])]
    return {"requests": len(ttft), "ttft_p50_ms": statistics.median(ttft) if ttft else None,
            "itl_p50_ms": statistics.median(itl) if itl else None}


class ThreadedMock:
    """Run a MockServer on its own event loop in a daemon thread (for tests)."""

    def __init__(self, config: MockConfig | None = None):
        self.server = MockServer(config)
        self.loop = asyncio.new_event_loop()
        ready = threading.Event()
        self.thread = threading.Thread(target=self._run, args=(ready,), daemon=True)
        self.thread.start()
        ready.wait(10)

    def _run(self, ready: threading.Event) -> None:
        asyncio.set_event_loop(self.loop)
        self._srv, self.port = self.loop.run_until_complete(self.server.serve())
        ready.set()
        self.loop.run_forever()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


def main() -> None:
    """`python tests/mock_openai.py PORT TTFT_S ITL_S`: serve until killed (the fidelity benchmark)."""
    import sys

    port, ttft, itl = int(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3])
    try:
        import uvloop
        uvloop.install()
    except ImportError:
        pass
    srv = MockServer(MockConfig(model="mock-model", ttft_s=ttft, itl_s=itl))

    async def forever():
        await srv.serve(port=port)
        print("ready", flush=True)
        await asyncio.Event().wait()

    asyncio.run(forever())


if __name__ == "__main__":
    main()
