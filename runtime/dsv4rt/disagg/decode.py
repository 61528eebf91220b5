"""The decode worker: holds a slot for each request, registers it with the request's prefill worker
under the router's bootstrap room, waits for `done` (the state and first token are in the slot),
then decodes and streams like any other request.

A slot that was registered is released only when nothing can write into it any more: after `done`
or `fail`, after the prefill worker answered `cancel` with `cancelled`, or after the bootstrap
connection closed (the prefill worker no longer writes rooms of a lost connection)."""

from __future__ import annotations

import asyncio
import logging
import time

from dsv4rt.disagg.config import DEFAULT_BOOTSTRAP_PORT
from dsv4rt.disagg.protocol import Cancel, Cancelled, Done, Fail, Hello, Link, ProtocolError, Register, open_link
from dsv4rt.disagg.side import DisaggSide
from dsv4rt.server.protocol import APIError

log = logging.getLogger(__name__)
CONNECT_TIMEOUT_S = 10.0


def _settle(fut: asyncio.Future, value) -> None:
    if not fut.done():
        fut.set_result(value)


class RemoteState:
    """`Sequence.remote` of a decode request: the scheduler parks the sequence until `ready`."""

    def __init__(self, room: int):
        self.room, self.ready, self.registered = room, False, False
        self.loop = asyncio.get_running_loop()
        self.admitted = self.loop.create_future()  # -> slot
        self.outcome = self.loop.create_future()  # -> Done | Fail
        self.quiet = self.loop.create_future()  # set once nothing can write into the slot any more

    def on_admit(self, seq) -> None:  # engine thread
        self.loop.call_soon_threadsafe(_settle, self.admitted, seq.slot)


class PrefillLink:
    """The connection to one prefill worker's bootstrap server, shared by all rooms sent there."""

    def __init__(self, side: DecodeSide, host: str, port: int):
        self.side, self.host, self.port = side, host, port
        self.link: Link | None = None
        self.rooms: dict[int, RemoteState] = {}
        self._lock = asyncio.Lock()

    @property
    def where(self) -> str:
        return f"{self.host}:{self.port}"

    async def connect(self) -> None:
        async with self._lock:
            if self.link is not None and not self.link.closed:
                return
            try:
                self.link = await open_link(self.host, self.port, CONNECT_TIMEOUT_S)
            except (OSError, TimeoutError) as e:
                raise APIError(502, f"cannot reach the prefill worker's bootstrap server at {self.where}: "
                               f"{e or type(e).__name__}", "server_error", code="bootstrap_unreachable") from None
            s = self.side
            await self.link.send(Hello(identity=s.identity, session=s.transport.session, layout=s.slots.layout(),
                                       bases=s.slots.bases()))
            s.spawn(self._read(self.link))

    async def register(self, remote: RemoteState, slot: int, prompt_len: int) -> None:
        self.rooms[remote.room] = remote
        remote.registered = True
        if not await self.link.send(Register(room=remote.room, slot=slot, prompt_len=prompt_len)):
            self.lost(self.link)

    async def cancel(self, remote: RemoteState, reason: str) -> None:
        if self.link is None or not await self.link.send(Cancel(room=remote.room, reason=reason)):
            _settle(remote.quiet, True)

    async def _read(self, link: Link) -> None:
        try:
            while (msg := await link.recv()) is not None:
                remote = self.rooms.get(msg.room)
                if remote is None:
                    continue
                if isinstance(msg, (Done, Fail)):
                    _settle(remote.outcome, msg)
                if isinstance(msg, (Fail, Cancelled)):
                    _settle(remote.quiet, True)
                    self.rooms.pop(msg.room, None)
        except ProtocolError as e:
            log.warning("%s", e)
        finally:
            self.lost(link)

    def lost(self, link: Link) -> None:
        link.close()
        if link is not self.link:  # an older connection's reader ending: its rooms were failed already
            return
        msg = f"the prefill worker at {self.where} closed the bootstrap connection (did it exit?)"
        for remote in self.rooms.values():
            _settle(remote.outcome, Fail(room=remote.room, message=msg, status=502))
            _settle(remote.quiet, True)
        self.rooms.clear()


class DecodeSide(DisaggSide):
    mode = "decode"

    def __init__(self, cfg, state, bind_host):
        super().__init__(cfg, state, bind_host)
        self.links: dict[tuple[str, int], PrefillLink] = {}

    def _link(self, host: str, port: int) -> PrefillLink:
        if (host, port) not in self.links:
            self.links[host, port] = PrefillLink(self, host, port)
        return self.links[host, port]

    async def serve(self, state, seq, responder, stream: bool, body: dict):
        from dsv4rt.server.app import open_outputs, respond

        boot = self.bootstrap(body, self.mode)
        link = self._link(boot.bootstrap_host or "127.0.0.1", boot.bootstrap_port or DEFAULT_BOOTSTRAP_PORT)
        t0 = time.perf_counter()
        remote = seq.remote = RemoteState(boot.bootstrap_room)
        seq.hold_slot = True
        outputs = open_outputs(state, seq)
        try:
            await self._receive(seq, remote, link)
        except BaseException:
            self.state.metrics.inc("disagg_failures_total")
            state.engine.abort(seq.seq_id)
            self.spawn(self._release_quiet(seq, remote, link))
            raise
        return await respond(state, seq, responder, outputs, stream, t0=t0)

    async def _receive(self, seq, remote: RemoteState, link: PrefillLink) -> None:
        slot = await remote.admitted
        await link.connect()
        t0 = time.perf_counter()
        await link.register(remote, slot, len(seq.prompt_ids))
        try:
            msg = await asyncio.wait_for(asyncio.shield(remote.outcome), self.cfg.transfer_timeout_s)
        except TimeoutError:
            raise APIError(504, f"the state of bootstrap room {remote.room} did not arrive from the prefill worker "
                           f"at {link.where} within {self.cfg.transfer_timeout_s:g}s", code="kv_transfer_timeout") from None
        if isinstance(msg, Fail):
            raise APIError(msg.status, f"prefill worker at {link.where}: {msg.message}", code="prefill_failed")
        _settle(remote.quiet, True)
        room, token, prompt_len, lp = self.slots.read_meta(slot, seq.params.logprobs)
        if room != remote.room or prompt_len != len(seq.prompt_ids):
            raise APIError(502, f"bootstrap room {remote.room}: the slot holds room {room} with a {prompt_len}-token "
                           f"prompt, this request has {len(seq.prompt_ids)} tokens", code="pd_state_mismatch")
        self.record(msg.bytes, time.perf_counter() - t0)
        if not await self.state.engine.call(lambda e: self._resume(e, seq, token, lp)):
            raise APIError(500, "the request ended before its state arrived", "server_error", code="engine_error")

    @staticmethod
    def _resume(engine, seq, token: int, logprob):  # engine thread
        if seq.is_finished:
            return None
        seq.hold_slot, seq.remote.ready = False, True
        return engine.resume(seq, token, logprob)

    async def _release_quiet(self, seq, remote: RemoteState, link: PrefillLink) -> None:
        """Free the slot once nothing can write into it: cancel a room still in flight, and wait for
        the answer (at most cancel_grace_s; then drop the connection, which ends the peer's rooms)."""
        if remote.registered and not remote.quiet.done():
            await link.cancel(remote, "the decode request ended before the state arrived")
            try:
                await asyncio.wait_for(asyncio.shield(remote.quiet), self.cfg.cancel_grace_s)
            except TimeoutError:
                log.warning("prefill %s did not answer cancel of room %d; closing the connection", link.where,
                            remote.room)
                link.lost(link.link)
        await self.release(seq)
