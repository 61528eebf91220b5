"""A `pd-disagg` plan on the included runtime: one `python -m dsv4rt serve --plan-role prefill|decode`
process per engine role and the real sglang-router in front, as three ChildSpecs (the session starts
the engine roles, waits for their /health, then starts the router).

The prefill worker's bootstrap port is SGLang's default (8998): the plan has no key for it, and the
router is told it explicitly (`--prefill URL PORT`)."""

from __future__ import annotations

import sys
from typing import Any

from dsv4ctl.errors import UserError
from dsv4ctl.launch.ports import ensure_free
from dsv4ctl.launch.supervisor import ChildSpec

BOOTSTRAP_PORT = 8998
ROUTER_MODULE = "sglang_router.launch_router"
ROUTER_HEALTH_INTERVAL_S = "5"  # the router re-checks workers this often; dead ones stop getting requests


def is_pd(plan: Any) -> bool:
    return {r.name for r in plan.roles} >= {"prefill", "decode"}


def _url(host: str, port: int) -> str:
    return f"http://{'127.0.0.1' if host in ('0.0.0.0', '::', '') else host}:{port}"


def router_argv(host: str, prefill_port: int, decode_port: int, router_port: int, api_key: str | None) -> list[str]:
    argv = [sys.executable, "-m", ROUTER_MODULE, "--pd-disaggregation",
            "--prefill", _url(host, prefill_port), str(BOOTSTRAP_PORT), "--decode", _url(host, decode_port),
            "--host", host, "--port", str(router_port), "--disable-circuit-breaker",
            "--health-check-interval-secs", ROUTER_HEALTH_INTERVAL_S]
    return argv + (["--api-key", api_key] if api_key else [])


def pd_specs(plan: Any, worker_argv, *, host: str, router_port: int | None, api_key: str | None,
             env: dict[str, str]) -> list[ChildSpec]:
    """prefill, decode, router. `worker_argv(port)` is the runtime's argv for one server of the plan."""
    if plan.nodes != 1:
        raise UserError(f"the included runtime serves PD on one node (the plan has {plan.nodes})",
                        where="serve --engine builtin", fix="use a 1-node pd-disagg plan, or --engine sglang")
    pre, dec, rtr = plan.role("prefill"), plan.role("decode"), plan.role("router")
    if rtr is None:
        raise UserError("the PD plan has no router role", where="plan roles", fix="resolve it with --recipe pd-disagg")
    port = router_port or rtr.port
    return [
        ChildSpec("prefill", worker_argv(pre.port) + ["--plan-role", "prefill", "--disaggregation-bootstrap-port",
                                                      str(BOOTSTRAP_PORT)], dict(env), pre.port, host),
        ChildSpec("decode", worker_argv(dec.port) + ["--plan-role", "decode"], dict(env), dec.port, host),
        ChildSpec("router", router_argv(host, pre.port, dec.port, port, api_key), {}, port, host),
    ]


def check_bootstrap_port(host: str) -> None:
    """The bootstrap port is not a role's port, so the generic preflight does not see it."""
    ensure_free(host or "0.0.0.0", BOOTSTRAP_PORT, "prefill bootstrap")

