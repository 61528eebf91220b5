"""A `pd-disagg` plan on the included runtime: one `python -m dsv4rt serve --plan-role prefill|decode`
process per engine role and the real sglang-router in front, as three ChildSpecs (the session starts
the engine roles, waits for their /health, then starts the router).

The prefill worker's bootstrap port is SGLang's default (8998, or $DSV4CTL_PD_BOOTSTRAP_PORT): the plan
has no key for it, and the router is told it explicitly (`--prefill URL PORT`). The router's own
Prometheus exporter gets a free port (its default, 29000, is taken by any second router on the host)."""

from __future__ import annotations

import os
import sys
from typing import Any

from dsv4ctl.errors import UserError
from dsv4ctl.launch.ports import ensure_free, free_port
from dsv4ctl.launch.preflight import host_gpus
from dsv4ctl.launch.supervisor import ChildSpec
from dsv4ctl.render.sglang import with_gpus
from dsv4ctl.sizing.placement import slot_of

BOOTSTRAP_PORT_ENV = "DSV4CTL_PD_BOOTSTRAP_PORT"  # default 8998 (SGLang's); two PD runs on one host need two
ROUTER_MODULE = "sglang_router.launch_router"
ROUTER_HEALTH_INTERVAL_S = "5"  # the router re-checks workers this often; dead ones stop getting requests


def bootstrap_port() -> int:
    raw = os.environ.get(BOOTSTRAP_PORT_ENV, "8998")
    if not raw.isdigit() or not 0 < int(raw) < 65536:
        raise UserError(f"${BOOTSTRAP_PORT_ENV}={raw!r} is not a port", where=BOOTSTRAP_PORT_ENV, fix="set 1..65535")
    return int(raw)


def is_pd(plan: Any) -> bool:
    return {r.name for r in plan.roles} >= {"prefill", "decode"}


def _url(host: str, port: int) -> str:
    return f"http://{'127.0.0.1' if host in ('0.0.0.0', '::', '') else host}:{port}"


def router_argv(host: str, prefill_port: int, decode_port: int, router_port: int, api_key: str | None) -> list[str]:
    argv = [sys.executable, "-m", ROUTER_MODULE, "--pd-disaggregation",
            "--prefill", _url(host, prefill_port), str(bootstrap_port()), "--decode", _url(host, decode_port),
            "--host", host, "--port", str(router_port), "--disable-circuit-breaker",
            "--health-check-interval-secs", ROUTER_HEALTH_INTERVAL_S, "--prometheus-port", str(free_port())]
    return argv + (["--api-key", api_key] if api_key else [])


def pd_specs(plan: Any, worker_argv, *, host: str, router_port: int | None, api_key: str | None,
             env: dict[str, str]) -> list[ChildSpec]:
    """prefill, decode, router. `worker_argv(port)` is the runtime's argv for one server of the plan."""
    if any(r.nodes > 1 for r in plan.roles):
        raise UserError("the included runtime serves each PD role on one node (a role of the plan spans more)",
                        where="serve --engine builtin", fix="use a 1-node pd-disagg plan, or --engine sglang")
    pre, dec, rtr = plan.role("prefill"), plan.role("decode"), plan.role("router")
    if rtr is None:
        raise UserError("the PD plan has no router role", where="plan roles", fix="resolve it with --recipe pd-disagg")
    port = router_port or rtr.port
    return [
        ChildSpec("prefill", worker_argv(pre.port) + ["--plan-role", "prefill", "--disaggregation-bootstrap-port",
                                                      str(bootstrap_port())], role_env(plan, "prefill", env), pre.port, host),
        ChildSpec("decode", worker_argv(dec.port) + ["--plan-role", "decode"], role_env(plan, "decode", env), dec.port, host),
        ChildSpec("router", router_argv(host, pre.port, dec.port, port, api_key), {}, port, host),
    ]


def role_env(plan: Any, role: str, env: dict[str, str]) -> dict[str, str]:
    """A worker's env: `env`, plus its own GPUs when the plan puts both roles on one node's GPUs."""
    slot = slot_of(plan, role)
    pins = slot.pinned if slot is not None else ()
    return host_gpus(with_gpus(env, pins)) if pins else dict(env)


def check_bootstrap_port(host: str) -> None:
    """The bootstrap port is not a role's port, so the generic preflight does not see it."""
    ensure_free(host or "0.0.0.0", bootstrap_port(), "prefill bootstrap")

