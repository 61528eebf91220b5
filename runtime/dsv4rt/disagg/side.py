"""What the prefill and the decode side share: the state regions registered with Mooncake, the
checkpoint identity, the router's bootstrap fields, transfer metrics, and the slot release that waits
until nothing can write into a slot any more."""

from __future__ import annotations

import asyncio
import logging
import socket

from dsv4rt.disagg.config import Bootstrap, DisaggConfig, checkpoint_identity
from dsv4rt.disagg.state import MooncakeTransport, SlotState
from dsv4rt.server.protocol import APIError

log = logging.getLogger(__name__)
_BYTE_BUCKETS = tuple(float(1 << k) for k in range(10, 34, 2))  # 1 KiB .. 8 GiB


def mooncake_hostname(bind_host: str | None) -> str:
    """The address peers reach this worker's Mooncake engine at: the bind address, or this host's."""
    if bind_host and bind_host not in ("0.0.0.0", "::", ""):
        return bind_host
    return socket.gethostbyname(socket.gethostname())


class DisaggSide:
    mode = ""

    def __init__(self, cfg: DisaggConfig, state, bind_host: str | None):
        runner = state.engine.engine.runner
        self.cfg, self.state = cfg, state
        self.identity = checkpoint_identity(state.model_path)
        self.slots = SlotState(runner.model, runner.num_slots)
        self.transport = MooncakeTransport(mooncake_hostname(bind_host), cfg.protocol, cfg.ib_device)
        self.transport.register(self.slots.memory())
        self.bind_host = bind_host or "127.0.0.1"
        self._tasks: set[asyncio.Task] = set()
        m = state.metrics
        self.seconds = m.add_histogram("disagg_transfer_seconds", "Per PD request: seconds moving its state "
                                       "(prefill: the Mooncake write; decode: registration to arrival).")
        self.nbytes = m.add_histogram("disagg_transfer_bytes", "Per PD request: state bytes moved.", _BYTE_BUCKETS)
        for name, help_ in (("disagg_transfers_total", "PD state transfers completed."),
                            ("disagg_transfer_bytes_total", "PD state bytes moved."),
                            ("disagg_failures_total", "PD requests that failed in the handshake or transfer.")):
            m.add_counter(name, help_)
        log.info("PD %s worker: checkpoint %s, %d state buffers, Mooncake %s (%s)", self.mode, self.identity,
                 len(self.slots.regions), self.transport.session, cfg.protocol)

    async def start(self) -> None:
        pass

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()

    def info(self) -> dict:
        return {"disaggregation_mode": self.mode, "disaggregation_transfer_backend": self.cfg.transfer_backend,
                "disaggregation_ib_device": self.cfg.ib_device, "checkpoint_identity": self.identity}

    def record(self, nbytes: int, seconds: float) -> None:
        m = self.state.metrics
        m.observe(self.nbytes, nbytes)
        m.observe(self.seconds, seconds)
        m.inc("disagg_transfers_total")
        m.inc("disagg_transfer_bytes_total", nbytes)

    def spawn(self, coro) -> None:
        """A background task that must outlive the request (slot release after a write has ended)."""
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def release(self, seq) -> None:
        await self.state.engine.call(lambda e: e.scheduler.release_held(seq.seq_id))

    @staticmethod
    def bootstrap(body: dict, mode: str) -> Bootstrap:
        try:
            boot = Bootstrap.model_validate(body)
        except ValueError as e:
            raise APIError(400, f"bad bootstrap fields: {str(e).splitlines()[-1]}", param="bootstrap_room") from None
        if boot.bootstrap_room is None:
            raise APIError(400, f"this is a PD {mode} worker: requests need bootstrap_room (and bootstrap_host/"
                           "port on decode); send them through sglang-router --pd-disaggregation",
                           param="bootstrap_room", code="missing_bootstrap")
        return boot


def build_side(cfg: DisaggConfig, state, bind_host: str | None) -> DisaggSide:
    if cfg.mode == "prefill":
        from dsv4rt.disagg.prefill import PrefillSide

        return PrefillSide(cfg, state, bind_host)
    from dsv4rt.disagg.decode import DecodeSide

    return DecodeSide(cfg, state, bind_host)

