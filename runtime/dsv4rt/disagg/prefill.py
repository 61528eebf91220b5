"""The prefill worker: runs the prompt, waits for the decode worker to register the request's room
(its destination slot), writes the slot's state there with Mooncake, says `done`, frees its slot.

Rooms meet from either side: the router sends the request to both workers at once, so a decode
registration may arrive before or after the prefill request. Each side waits at most
`bootstrap_timeout_s` for the other."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from dataclasses import replace

from dsv4rt.disagg.protocol import MAX_LINE, Cancel, Cancelled, Done, Fail, Hello, Link, ProtocolError, Register
from dsv4rt.disagg.side import DisaggSide
from dsv4rt.disagg.state import TransferError
from dsv4rt.server.protocol import APIError

log = logging.getLogger(__name__)
_TOMBSTONES = 4096  # failed rooms remembered, so a late registration is refused with the reason


class Room:
    def __init__(self, room: int):
        self.room = room
        self.reg: Register | None = None
        self.link: Link | None = None
        self.registered = asyncio.Event()  # set on registration, and on failure (to wake the waiter)
        self.failure: APIError | None = None
        self.claimed = False
        self.done = False
        self.transfer: asyncio.Future | None = None
        self.timer: asyncio.TimerHandle | None = None
        self.deadline = 0.0  # loop time by which the registration must be in (set when claimed)

    def fail(self, err: APIError) -> None:
        if self.failure is None and not self.done:
            self.failure = err
        self.registered.set()


class PrefillSide(DisaggSide):
    mode = "prefill"

    def __init__(self, cfg, state, bind_host):
        super().__init__(cfg, state, bind_host)
        self.rooms: dict[int, Room] = {}
        self.tombstones: OrderedDict[int, APIError] = OrderedDict()
        self.server: asyncio.AbstractServer | None = None

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._accept, self.bind_host, self.cfg.bootstrap_port, limit=MAX_LINE)
        log.info("PD bootstrap server on %s:%d", self.bind_host, self.cfg.bootstrap_port)

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
        await super().stop()

    def info(self) -> dict:
        return {**super().info(), "disaggregation_bootstrap_port": self.cfg.bootstrap_port}

    # -- the bootstrap channel -------------------------------------------------------------------

    async def _accept(self, reader, writer) -> None:
        link = Link(reader, writer)
        try:
            hello = await link.recv()
            if not isinstance(hello, Hello):
                raise ProtocolError(f"{link.peer} did not start with hello")
            link.hello, link.refusal = hello, self._refusal(hello)
            if link.refusal:
                log.warning("refusing decode worker %s: %s", hello.session, link.refusal)
            while (msg := await link.recv()) is not None:
                if isinstance(msg, Register):
                    await self._on_register(link, msg)
                elif isinstance(msg, Cancel):
                    self.spawn(self._on_cancel(link, msg))
        except ProtocolError as e:
            log.warning("%s", e)
        finally:
            link.close()
            self._on_link_lost(link)

    def _refusal(self, hello: Hello) -> str | None:
        """Why this decode worker cannot take our state (refused for every room it registers), or None."""
        if hello.version != Hello.model_fields["version"].default:
            return f"bootstrap protocol version {hello.version}, the prefill worker speaks {Hello().version}"
        if hello.identity != self.identity:
            return (f"checkpoint mismatch: the prefill worker serves checkpoint {self.identity} "
                    f"({self.state.model_path}), the decode worker {hello.identity}; both must load the same checkpoint")
        mine = self.slots.layout()
        for a, b in zip(mine, hello.layout):
            if a != b:
                return (f"state layout mismatch at {a.name}: prefill {a.dtype}{a.shape}, decode {b.dtype}{b.shape}; "
                        "both workers need the same --dtype and --context-length")
        if len(mine) != len(hello.layout):
            return f"state layout mismatch: prefill has {len(mine)} buffers, decode {len(hello.layout)}"
        return None

    async def _on_register(self, link: Link, msg: Register) -> None:
        room = self.rooms.get(msg.room)
        err = self.tombstones.get(msg.room)
        if link.refusal:
            err = APIError(409, link.refusal, code="pd_handshake_refused")
            self._tombstone(msg.room, err)
        elif err is None and room is not None and room.reg is not None:
            err = APIError(409, f"bootstrap room {msg.room} is registered twice", code="room_in_use")
        if err is not None:
            if room is not None and room.reg is None:
                room.fail(err)
            await link.send(Fail(room=msg.room, message=str(err), status=err.status))
            return
        if room is None:  # the decode side came first: wait for the prefill request
            room = self.rooms[msg.room] = Room(msg.room)
            room.timer = asyncio.get_running_loop().call_later(self.cfg.bootstrap_timeout_s, self._expire, room)
        room.reg, room.link = msg, link
        room.registered.set()

    def _expire(self, room: Room) -> None:
        if not room.claimed and self.rooms.get(room.room) is room:
            del self.rooms[room.room]
            msg = (f"unknown bootstrap room {room.room}: no prefill request with this room arrived within "
                   f"{self.cfg.bootstrap_timeout_s:g}s")
            self._tombstone(room.room, APIError(404, msg, code="unknown_bootstrap_room"))
            self.spawn(room.link.send(Fail(room=room.room, message=msg, status=404)))

    async def _on_cancel(self, link: Link, msg: Cancel) -> None:
        room = self.rooms.get(msg.room)
        if room is not None and room.link is link:
            if room.transfer is not None:
                await asyncio.wait([room.transfer])  # an ongoing write ends before we say "cancelled"
        err = APIError(503, f"the decode worker gave up on bootstrap room {msg.room}: {msg.reason}", code="pd_cancelled")
        self._tombstone(msg.room, err)  # the prefill request may still come: it fails at once
        if room is not None and room.link is link:
            room.fail(err)
            if not room.claimed:
                self.rooms.pop(msg.room, None)
        await link.send(Cancelled(room=msg.room))

    def _on_link_lost(self, link: Link) -> None:
        session = getattr(getattr(link, "hello", None), "session", link.peer)
        for room in [r for r in self.rooms.values() if r.link is link and not r.done]:
            err = APIError(502, f"the decode worker ({session}) closed the bootstrap connection "
                           f"(did it exit?); bootstrap room {room.room} is dropped", code="decode_gone")
            room.fail(err)
            self._tombstone(room.room, err)
            if not room.claimed:
                self.rooms.pop(room.room, None)

    def _tombstone(self, room: int, err: APIError) -> None:
        self.tombstones[room] = err
        while len(self.tombstones) > _TOMBSTONES:
            self.tombstones.popitem(last=False)

    # -- requests --------------------------------------------------------------------------------

    def _claim(self, room_id: int) -> Room:
        if room_id in self.tombstones:
            raise self.tombstones[room_id]
        room = self.rooms.get(room_id)
        if room is None:
            room = self.rooms[room_id] = Room(room_id)
        elif room.claimed:
            raise APIError(409, f"bootstrap room {room_id} is already in use by another request", code="room_in_use")
        if room.timer is not None:
            room.timer.cancel()
        room.claimed = True
        room.deadline = asyncio.get_running_loop().time() + self.cfg.bootstrap_timeout_s
        return room

    async def serve(self, state, seq, responder, stream: bool, body: dict):
        from dsv4rt.server.app import open_outputs, respond

        room = self._claim(self.bootstrap(body, self.mode).bootstrap_room)
        # the first token is all this worker samples; the decode worker applies stop rules to it
        seq.params, seq.hold_slot = replace(seq.params, max_tokens=1, stop=()), True
        try:
            outputs = self._sent(room, seq, open_outputs(state, seq))
            return await respond(state, seq, responder, outputs, stream, buffered=True)
        except BaseException as e:
            await self._failed(room, e)
            raise
        finally:
            if self.rooms.get(room.room) is room:
                del self.rooms[room.room]

    async def _sent(self, room: Room, seq, outputs):
        """The engine's outputs, the (only, finished) one after its state is in the decode slot."""
        try:
            async for out in outputs:
                if out.finished and out.error is None:
                    await self._transfer(room, seq, out)
                yield out
        finally:
            self.spawn(self._release_after(room, seq))

    async def _release_after(self, room: Room, seq) -> None:
        if room.transfer is not None:
            await asyncio.wait([room.transfer])
        await self.release(seq)

    async def _transfer(self, room: Room, seq, out) -> None:
        reg = await self._registration(room)
        self.slots.write_meta(seq.slot, room.room, out.token_id, out.logprob, len(seq.prompt_ids))
        plan = self.slots.plan(seq.slot, room.link.hello.bases, reg.slot, len(seq.prompt_ids))
        t0 = time.perf_counter()
        room.transfer = asyncio.ensure_future(asyncio.to_thread(self.transport.write, room.link.hello.session, *plan))
        try:
            await asyncio.shield(room.transfer)
        except TransferError as e:
            raise APIError(502, f"state transfer for bootstrap room {room.room} failed: {e}", "server_error",
                           code="kv_transfer_failed") from None
        seconds, nbytes = time.perf_counter() - t0, sum(plan[2])
        if not await room.link.send(Done(room=room.room, bytes=nbytes, seconds=seconds)):
            raise APIError(502, f"the decode worker for bootstrap room {room.room} went away", code="decode_gone")
        room.done = True
        self.record(nbytes, seconds)

    async def _registration(self, room: Room) -> Register:
        left = room.deadline - asyncio.get_running_loop().time()
        try:
            await asyncio.wait_for(room.registered.wait(), max(left, 0.0))
        except TimeoutError:
            raise APIError(504, f"no decode worker registered bootstrap room {room.room} within "
                           f"{self.cfg.bootstrap_timeout_s:g}s (is the decode worker up and reachable?)",
                           code="bootstrap_timeout") from None
        if room.failure is not None:
            raise room.failure
        return room.reg

    async def _failed(self, room: Room, exc: BaseException) -> None:
        """Tell a registered decode worker the room will never be written; remember why."""
        self.state.metrics.inc("disagg_failures_total")
        err = exc if isinstance(exc, APIError) else APIError(503, f"prefill request ended: {type(exc).__name__}")
        self._tombstone(room.room, room.failure or err)
        if room.link is not None and not room.done:
            if room.transfer is not None:
                await asyncio.wait([room.transfer])
            await room.link.send(Fail(room=room.room, message=str(err), status=err.status))
