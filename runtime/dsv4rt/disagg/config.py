"""PD settings, the router's bootstrap fields of a request body, and the checkpoint identity that both
workers must share (torch-free)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

DEFAULT_BOOTSTRAP_PORT = 8998  # SGLang's --disaggregation-bootstrap-port default; the router assumes it too
_ID_SAMPLES, _ID_BLOCK = 16, 4096  # bytes read per shard for the identity: cheap even for V4-Pro


@dataclass(frozen=True)
class DisaggConfig:
    mode: str  # "prefill" | "decode"
    bootstrap_port: int = DEFAULT_BOOTSTRAP_PORT  # prefill: where decode workers register rooms
    transfer_backend: str = "mooncake"
    ib_device: str | None = None  # set: Mooncake RDMA over these devices; unset: TCP
    # prefill: how long a computed request waits for its decode worker's registration, and how long
    # a registration waits for its prefill request ("unknown bootstrap room" after that)
    bootstrap_timeout_s: float = 60.0
    # decode: how long a registered room waits for its state (prefill queueing + compute + transfer)
    transfer_timeout_s: float = 120.0
    cancel_grace_s: float = 10.0  # decode: a cancelled room's slot waits this long for prefill's ack

    def __post_init__(self) -> None:
        if self.mode not in ("prefill", "decode"):
            raise ValueError(f"disaggregation mode must be prefill or decode (got {self.mode!r})")
        if self.transfer_backend != "mooncake":
            raise ValueError(f"transfer backend {self.transfer_backend!r} is not implemented (only mooncake)")
        for name in ("bootstrap_timeout_s", "transfer_timeout_s", "cancel_grace_s"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be > 0 (got {getattr(self, name)})")

    @property
    def protocol(self) -> str:
        return "rdma" if self.ib_device else "tcp"


class Bootstrap(BaseModel):
    """The fields sglang-router adds to every request body it sends to a prefill/decode pair."""

    model_config = ConfigDict(extra="ignore")
    bootstrap_host: str | None = None
    bootstrap_port: int | None = Field(default=None, ge=1, le=65535)
    bootstrap_room: int | None = Field(default=None, ge=0, lt=2**64)


def checkpoint_identity(model_dir: str | Path) -> str:
    """A digest of config.json and, per safetensors shard, its name, size and 16 sampled 4 KiB blocks:
    two checkpoints of one architecture with other weights differ here, at a few reads per shard."""
    root = Path(model_dir)
    h = hashlib.sha256((root / "config.json").read_bytes())
    for shard in sorted(root.glob("*.safetensors")):
        size = shard.stat().st_size
        h.update(f"{shard.name}:{size}".encode())
        with shard.open("rb") as fh:
            for k in range(_ID_SAMPLES):
                fh.seek(max(0, size - _ID_BLOCK) * k // (_ID_SAMPLES - 1))
                h.update(fh.read(_ID_BLOCK))
    return h.hexdigest()[:16]
