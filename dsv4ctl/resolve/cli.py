"""The `cli` layer: plan keys typed on serve's command line (--model-path, --host, --port,
--served-model-name). It is the last explicit layer, after --set, so `explain` shows it and the
plan file in a run directory says where each value came from.

--port moves the endpoint: the single server, or the router of a PD plan."""

from __future__ import annotations

from dsv4ctl.resolve.layers import Layered
from dsv4ctl.schema.plan import LaunchPlan, Role
from dsv4ctl.schema.recipe import CliOverrides


def label(key: str) -> str:
    return f"cli:--{key.replace('_', '-')}"


def apply_cli(v: Layered, cli: CliOverrides | None, pd: bool) -> None:
    """The overrides as one layer of a role's (or the plan-wide) values; on PD plans the port belongs
    to the router, which has no engine keys."""
    for key, value in (cli.given() if cli is not None else {}).items():
        if not (key == "port" and pd):
            v.set(key, value, label(key))


def apply_cli_to_plan(plan: LaunchPlan, cli: CliOverrides | None) -> LaunchPlan:
    """A plan file with the overrides in it, provenance included (`serve --plan FILE --port P`)."""
    given = cli.given() if cli is not None else {}
    if not given:
        return plan
    front = "router" if plan.role("router") else "single"
    keys = {k: v for k, v in given.items() if not (k == "port" and front == "router")}
    prov = {**plan.provenance, **{k: label(k) for k in keys}}
    roles = list(plan.roles)
    if "port" in given:
        roles = [_with_port(r, given["port"]) if r.name == front else r for r in roles]
        prov[f"role.{front}.port"] = label("port")
    return plan.model_copy(update={"keys": plan.keys.model_copy(update=keys), "roles": roles, "provenance": prov})


def _with_port(role: Role, port: int) -> Role:
    # A role's own keys win over the plan's, so a port the role carries there moves too.
    keys = {**role.keys, "port": port} if "port" in role.keys else role.keys
    return role.model_copy(update={"port": port, "keys": keys})
