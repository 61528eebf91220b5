"""A small HTTP/1.1 client for the load generator: kept-alive connections as asyncio protocols.

Why not aiohttp: at a few hundred streams per second on one core, the client's own cost per request
(aiohttp writes the body in a task of its own, one loop turn after the coroutine asked; its parser and
StreamReader run per chunk) shows up as latency and lost requests/s. Here a request is written to the
socket in the call that sends it, each socket read is stamped (perf_counter) in `data_received` and
de-chunked on the spot, and the waiting task wakes once, when the response is complete. What a
request measures is the same: from the moment its bytes go to the socket to the read that carried
each event (dsv4ctl.bench.sse). Plain HTTP and HTTPS (asyncio's TLS); no proxies, no redirects.
"""

from __future__ import annotations

import asyncio
import ssl as ssl_lib
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

USER_AGENT = "dsv4ctl-bench"
MAX_HEAD = 64 * 1024
_NOTHING = "connection closed before any response byte"


class StreamEnded(ConnectionError):
    """The server closed the connection before the response was complete."""


class BadResponse(ValueError):
    """Bytes that are not an HTTP/1.x response."""


@dataclass
class Response:
    status: int
    pieces: list[tuple[float, bytes]]  # the body, de-chunked: (arrival time of its read, bytes)
    sent_at: float  # perf_counter() just before the request was written to the socket

    def body(self) -> bytes:
        return b"".join(p for _, p in self.pieces)


class _Conn(asyncio.Protocol):
    """One connection: one request at a time, its response parsed as the reads come in."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.waiter: asyncio.Future | None = None
        self._start(0.0)

    def _start(self, sent_at: float) -> None:
        self.state, self.buf, self.status, self.keep = "head", b"", 0, True
        self.left, self.pieces, self.sent_at = 0, [], sent_at

    def connection_made(self, transport) -> None:
        self.transport = transport

    def connection_lost(self, exc) -> None:
        self.closed = True
        if self.waiter is not None and not self.waiter.done():
            if self.state == "eof":
                self._finish()
            elif self.state == "head" and not self.buf:
                self.waiter.set_exception(StreamEnded(_NOTHING))
            else:
                got = sum(len(p) for _, p in self.pieces)
                self.waiter.set_exception(StreamEnded(f"connection closed after {got} body bytes"))

    def send(self, data: bytes) -> asyncio.Future:
        self.waiter = asyncio.get_running_loop().create_future()
        self._start(time.perf_counter())
        self.transport.write(data)
        return self.waiter

    def fail(self, exc: BaseException) -> None:
        """Give up on the response (timeout, cancel): the connection cannot be reused."""
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(exc)
        self.close()

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.abort()

    def data_received(self, data: bytes) -> None:
        t = time.perf_counter()
        if self.waiter is None or self.waiter.done():
            return self.close()  # bytes nobody asked for: this connection is out of step
        try:
            if self.state == "head":
                data = self._head(data)
                if data is None:
                    return
            self._body(t, data)
        except BadResponse as exc:
            self.fail(exc)

    def _head(self, data: bytes) -> bytes | None:
        buf = self.buf + data
        end = buf.find(b"\r\n\r\n")
        if end < 0:
            if len(buf) > MAX_HEAD:
                raise BadResponse("response head over 64 KiB")
            self.buf = buf
            return None
        lines = buf[:end].decode("latin-1").split("\r\n")
        parts = lines[0].split(" ", 2)
        if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or not parts[1].isdigit():
            raise BadResponse(f"not an HTTP/1.x status line: {lines[0][:80]!r}")
        self.status, self.buf = int(parts[1]), b""
        headers = {k.strip().lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:])}
        conn = headers.get("connection", "").lower()
        self.keep = conn != "close" if parts[0] == "HTTP/1.1" else conn == "keep-alive"
        if "chunked" in headers.get("transfer-encoding", "").lower():
            self.state = "size"
        elif "content-length" in headers:
            self.state, self.left = "length", int(headers["content-length"])
        else:
            self.state, self.keep = "eof", False
        return buf[end + 4:]

    def _body(self, t: float, data: bytes) -> None:
        if self.state == "length":
            if data:
                data = data[: self.left]
                self.pieces.append((t, data))
                self.left -= len(data)
            if self.left <= 0:
                self._finish()
        elif self.state == "eof":
            if data:
                self.pieces.append((t, data))
        else:
            self._chunks(t, self.buf + data if self.buf else data)

    def _chunks(self, t: float, data: bytes) -> None:
        """De-chunk as far as `data` goes; an incomplete size line or CRLF waits in self.buf."""
        pos, n, self.buf = 0, len(data), b""
        while pos < n or self.state == "trailer":
            if self.state == "data":
                take = min(self.left, n - pos)
                self.pieces.append((t, data[pos: pos + take]))
                pos, self.left = pos + take, self.left - take
                if not self.left:
                    self.state = "crlf"
                continue
            eol = data.find(b"\r\n", pos)
            if eol < 0:
                self.buf = data[pos:]
                return
            line, pos = data[pos:eol], eol + 2
            if self.state == "crlf":
                self.state = "size"
            elif self.state == "size":
                try:
                    self.left = int(line.split(b";", 1)[0], 16)
                except ValueError:
                    raise BadResponse(f"bad chunk size {line[:20]!r}") from None
                self.state = "data" if self.left else "trailer"
            elif not line:  # the blank line that ends the trailers: the response is complete
                return self._finish()

    def _finish(self) -> None:
        self.state = "done"
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(Response(self.status, self.pieces, self.sent_at))
        if not self.keep:
            self.close()


class Session:
    """Kept-alive connections to one origin (scheme://host:port); a connection is reused once its
    response has been read to the end, and closed after any error, timeout or cancel."""

    def __init__(self, base_url: str):
        u = urlsplit(base_url)
        if u.scheme not in ("http", "https") or not u.hostname:
            raise ValueError(f"not an http(s) URL: {base_url!r}")
        self.host, self.netloc = u.hostname, u.netloc.rpartition("@")[2]
        self.port = u.port or (443 if u.scheme == "https" else 80)
        self.ssl = ssl_lib.create_default_context() if u.scheme == "https" else None
        self.prefix = u.path.rstrip("/")
        self.idle: list[_Conn] = []
        self.conns: set[_Conn] = set()
        self._heads: dict[tuple, bytes] = {}

    async def _acquire(self, timeout: float | None) -> tuple[_Conn, bool]:
        """(connection, whether it was kept alive from an earlier request); connecting counts
        against the request's timeout."""
        while self.idle:
            conn = self.idle.pop()
            if not conn.closed:
                return conn, True
            self.conns.discard(conn)  # the server closed it while it was idle
        loop = asyncio.get_running_loop()
        _, conn = await asyncio.wait_for(loop.create_connection(_Conn, self.host, self.port, ssl=self.ssl), timeout)
        self.conns.add(conn)
        return conn, False

    def _head(self, method: str, path: str, headers: dict[str, str]) -> bytes:
        key = (method, path, *headers.items())
        head = self._heads.get(key)
        if head is None:
            lines = [f"{method} {path} HTTP/1.1", f"Host: {self.netloc}", f"User-Agent: {USER_AGENT}",
                     *(f"{k}: {v}" for k, v in headers.items()), "Content-Length: "]
            head = self._heads[key] = "\r\n".join(lines).encode("latin-1")
        return head

    async def request(self, method: str, path: str, headers: dict[str, str], body: bytes = b"",
                      timeout: float | None = None) -> Response:
        """Send one request and wait for its complete response. Raises asyncio.TimeoutError,
        StreamEnded, BadResponse or OSError; the connection is then closed, never reused. A kept-alive
        connection the server had closed before reading anything is replaced once."""
        data = b"%s%d\r\n\r\n%s" % (self._head(method, path, headers), len(body), body)
        conn, reused = await self._acquire(timeout)
        try:
            return await self._exchange(conn, data, timeout)
        except StreamEnded as exc:
            if not (reused and exc.args and exc.args[0] == _NOTHING):
                raise
        return await self._exchange((await self._acquire(timeout))[0], data, timeout)

    async def _exchange(self, conn: _Conn, data: bytes, timeout: float | None) -> Response:
        fut = conn.send(data)
        timer = asyncio.get_running_loop().call_later(timeout, conn.fail, asyncio.TimeoutError()) \
            if timeout else None
        try:
            resp = await fut
        except BaseException:
            conn.fail(StreamEnded("abandoned"))
            self.conns.discard(conn)
            raise
        finally:
            if timer is not None:
                timer.cancel()
        if conn.closed:
            self.conns.discard(conn)
        else:
            self.idle.append(conn)
        return resp

    def path(self, url_or_path: str) -> str:
        """The request target for a full URL of this origin, or a path under the base URL's path."""
        if "://" in url_or_path:
            u = urlsplit(url_or_path)
            return (u.path or "/") + (f"?{u.query}" if u.query else "")
        return self.prefix + url_or_path

    async def get_json(self, path: str, timeout: float = 10.0):
        """(status, parsed JSON or None) of a GET under the base URL."""
        from dsv4ctl.bench import fastjson

        resp = await self.request("GET", self.path(path), {"Accept": "application/json"}, timeout=timeout)
        try:
            return resp.status, fastjson.loads(resp.body())
        except fastjson.DecodeError:
            return resp.status, None

    async def close(self) -> None:
        for conn in list(self.conns):
            conn.close()
        self.conns.clear()
        self.idle.clear()

    async def __aenter__(self) -> "Session":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
