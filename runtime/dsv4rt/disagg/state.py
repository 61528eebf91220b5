"""A request's whole V4 decoding state as Mooncake transfers: every per-slot cache buffer of the model
(window rings, CSA/HCA compressed entries and compressor rings, indexer keys and rings, the MTP
layer's window) plus one metadata row (room, first sampled token and its logprobs, prompt length).

Slot s of a buffer is one contiguous region (slot is dim 0), so a transfer is one (source, destination,
length) triple per buffer; compressed entries are sent only up to the last one the prompt completed.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch

from dsv4rt.disagg.protocol import BufferSpec

log = logging.getLogger(__name__)
MAX_TOP = 20  # top logprobs a request may ask for (SamplingParams.top_logprobs)
_META_HEAD = 6  # room_hi, room_lo, token, chosen logprob, top count, prompt length
META_WORDS = _META_HEAD + 2 * MAX_TOP


@dataclass
class Region:
    name: str
    tensor: torch.Tensor  # [slots, ...]
    ratio: int | None  # compressed entries: one row per `ratio` tokens; None: sent whole

    @property
    def slot_bytes(self) -> int:
        return self.tensor[0].numel() * self.tensor.element_size()

    def used_bytes(self, n_tokens: int) -> int:
        if self.ratio is None:
            return self.slot_bytes
        row = self.tensor[0, 0].numel() * self.tensor.element_size()
        return (n_tokens // self.ratio) * row

    def spec(self) -> BufferSpec:
        return BufferSpec(name=self.name, dtype=str(self.tensor.dtype), shape=list(self.tensor.shape[1:]))


def cache_regions(model) -> list[Region]:
    """Every per-slot buffer of the model's cached modules, in module order (stable across processes)."""
    from dsv4rt.model import CachedModule

    regions = []
    for mod_name, mod in model.named_modules():
        if isinstance(mod, CachedModule):
            for buf in mod.cache_shapes(model.max_seq_len):
                ratio = getattr(mod, "ratio", None) if buf == "entries" else None
                regions.append(Region(f"{mod_name}.{buf}", getattr(mod, buf), ratio))
    return regions


class SlotState:
    """The model's cache regions plus this worker's metadata rows (host memory, one per slot)."""

    def __init__(self, model, num_slots: int):
        self.meta = torch.zeros(num_slots, META_WORDS, dtype=torch.float64)
        self.regions = cache_regions(model) + [Region("meta", self.meta, None)]

    def layout(self) -> list[BufferSpec]:
        return [r.spec() for r in self.regions]

    def bases(self) -> list[int]:
        return [r.tensor.data_ptr() for r in self.regions]

    def memory(self) -> list[tuple[int, int]]:
        """(address, bytes) of every buffer, for Mooncake registration."""
        return [(r.tensor.data_ptr(), r.tensor.numel() * r.tensor.element_size()) for r in self.regions]

    def plan(self, src_slot: int, bases: list[int], dst_slot: int, n_tokens: int):
        """(sources, destinations, lengths) that copy slot `src_slot` here to `dst_slot` at `bases`."""
        srcs, dsts, lens = [], [], []
        for region, base in zip(self.regions, bases):
            n = region.used_bytes(n_tokens)
            if n:
                srcs.append(region.tensor.data_ptr() + src_slot * region.slot_bytes)
                dsts.append(base + dst_slot * region.slot_bytes)
                lens.append(n)
        return srcs, dsts, lens

    def write_meta(self, slot: int, room: int, token: int, logprob, prompt_len: int) -> None:
        chosen, top = logprob if logprob is not None else (0.0, [])
        row = [room >> 32, room & 0xFFFFFFFF, token, chosen, len(top), prompt_len]
        row += [t for t, _ in top] + [0] * (MAX_TOP - len(top)) + [v for _, v in top] + [0] * (MAX_TOP - len(top))
        self.meta[slot] = torch.tensor(row, dtype=torch.float64)

    def read_meta(self, slot: int, want_logprobs: bool) -> tuple[int, int, int, object]:
        """(room, token, prompt length, logprob entry or None) from a slot's metadata row."""
        row = self.meta[slot].tolist()
        room, token, n_top, prompt_len = (int(row[0]) << 32) | int(row[1]), int(row[2]), int(row[4]), int(row[5])
        ids, vals = row[_META_HEAD:_META_HEAD + MAX_TOP], row[_META_HEAD + MAX_TOP:]
        lp = (row[3], [(int(ids[i]), vals[i]) for i in range(n_top)]) if want_logprobs else None
        return room, token, prompt_len, lp


class TransferError(RuntimeError):
    """Mooncake could not start or could not move a room's state."""


class MooncakeTransport:
    """Mooncake's TransferEngine in peer-to-peer handshake mode: TCP on one host, RDMA over the
    plan's IB devices."""

    def __init__(self, hostname: str, protocol: str, device: str | None):
        try:
            from mooncake.engine import TransferEngine
        except ImportError as e:
            raise TransferError(f"mooncake is not importable ({e}); pip install 'dsv4ctl[pd]' "
                                "(and apt-get install libibverbs1)") from None
        self.engine = TransferEngine()
        if self.engine.initialize(hostname, "P2PHANDSHAKE", protocol, device or "") != 0:
            raise TransferError(f"Mooncake failed to start ({protocol} on {hostname}, device {device or '-'})")
        self.session = f"{hostname}:{self.engine.get_rpc_port()}"
        log.info("Mooncake %s transfer engine at %s", protocol, self.session)

    def register(self, memory: list[tuple[int, int]]) -> None:
        addrs, sizes = [a for a, _ in memory], [n for _, n in memory]
        if self.engine.batch_register_memory(addrs, sizes) != 0:
            raise TransferError("Mooncake could not register the state buffers")

    def write(self, peer: str, srcs: list[int], dsts: list[int], lens: list[int]) -> None:
        if self.engine.batch_transfer_sync_write(peer, srcs, dsts, lens) != 0:
            raise TransferError(f"Mooncake write to {peer} failed (see the worker log)")
