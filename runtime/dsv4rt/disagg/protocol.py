"""The bootstrap channel between a decode worker and a prefill worker: one TCP connection per pair,
newline-delimited JSON messages (pydantic), each at most 1 MiB.

decode -> prefill: `hello` (once per connection: identity, state layout, Mooncake session, buffer
addresses), `register` (a room's destination slot), `cancel` (the decode side gave up on a room).
prefill -> decode: `done` (the state is in the slot), `fail` (the room will never be written),
`cancelled` (the answer to `cancel`: nothing is or will be in flight for that room).
"""

from __future__ import annotations

import asyncio
import json
from typing import Annotated, Literal, Union

from pydantic import BaseModel, Field, TypeAdapter, ValidationError

VERSION = 1
MAX_LINE = 1 << 20


class BufferSpec(BaseModel):
    name: str
    dtype: str
    shape: list[int]  # per slot


class Hello(BaseModel):
    op: Literal["hello"] = "hello"
    version: int = VERSION
    identity: str
    session: str  # Mooncake session of the decode worker, host:rpc_port
    layout: list[BufferSpec]
    bases: list[int]  # address of slot 0 of each buffer, in layout order


class Register(BaseModel):
    op: Literal["register"] = "register"
    room: int
    slot: int
    prompt_len: int


class Cancel(BaseModel):
    op: Literal["cancel"] = "cancel"
    room: int
    reason: str = ""


class Done(BaseModel):
    op: Literal["done"] = "done"
    room: int
    bytes: int
    seconds: float


class Fail(BaseModel):
    op: Literal["fail"] = "fail"
    room: int
    message: str
    status: int = 500


class Cancelled(BaseModel):
    op: Literal["cancelled"] = "cancelled"
    room: int


Message = Annotated[Union[Hello, Register, Cancel, Done, Fail, Cancelled], Field(discriminator="op")]
_MESSAGE = TypeAdapter(Message)


class ProtocolError(RuntimeError):
    """The peer sent something that is not a message of this protocol."""


class Link:
    """One bootstrap connection: send is serialized, recv returns None at end of stream."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self.reader, self.writer = reader, writer
        self._lock = asyncio.Lock()
        self.closed = False
        self.hello: Hello | None = None  # prefill side: what the decode worker announced
        self.refusal: str | None = None  # prefill side: why its rooms are refused

    @property
    def peer(self) -> str:
        addr = self.writer.get_extra_info("peername") or ("?", 0)
        return f"{addr[0]}:{addr[1]}"

    async def send(self, msg: BaseModel) -> bool:
        """False when the connection is gone (the reader side reports that)."""
        if self.closed:
            return False
        try:
            async with self._lock:
                self.writer.write(msg.model_dump_json().encode() + b"\n")
                await self.writer.drain()
        except (ConnectionError, RuntimeError, OSError):
            return False
        return True

    async def recv(self):
        try:
            line = await self.reader.readline()
        except (ConnectionError, asyncio.LimitOverrunError, ValueError, OSError):
            return None
        if not line:
            return None
        try:
            return _MESSAGE.validate_python(json.loads(line))
        except (json.JSONDecodeError, ValidationError) as e:
            raise ProtocolError(f"bad bootstrap message from {self.peer}: {str(e)[:200]}") from None

    def close(self) -> None:
        self.closed = True
        self.writer.close()


async def open_link(host: str, port: int, timeout_s: float) -> Link:
    reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port, limit=MAX_LINE), timeout_s)
    return Link(reader, writer)
