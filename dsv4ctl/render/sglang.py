"""LaunchPlan → `sglang serve` argv + env, one command per node and role, in the plan's engine version.

Flag names come from the per-version vocabulary (sglang_flags.yaml); nothing here knows a version."""

from __future__ import annotations

import json
from typing import Any

from pydantic import Field

from dsv4ctl.vocab import FlagSpec, Vocabulary, vocabulary
from dsv4ctl.schema.base import Strict
from dsv4ctl.schema.keys import EngineKeys
from dsv4ctl.schema.plan import LaunchPlan
from dsv4ctl.sizing.placement import slots

NODE0_PLACEHOLDER = "<node0-addr>"
ROUTER_HEALTH_INTERVAL = "999999"
GPU_ENV = "CUDA_VISIBLE_DEVICES"


class NodeCommand(Strict):
    role: str
    node_rank: int = 0
    argv: list[str]
    env: dict[str, str] = Field(default_factory=dict)
    port: int
    gpus: list[int] = Field(default_factory=list)  # this rank's GPUs on a node it shares; []: the whole node

    def process_env(self) -> dict[str, str]:
        """The env a process on the host gets: the plan's, plus its own GPUs when it shares the node.
        Container targets give the GPUs their own way (docker `--gpus device=`, a pod's GPU count)."""
        return with_gpus(self.env, self.gpus)


def with_gpus(env: dict[str, str], gpus) -> dict[str, str]:
    """env plus CUDA_VISIBLE_DEVICES for a rank pinned to `gpus` (a copy of env when there are none)."""
    return {**env, GPU_ENV: ",".join(map(str, gpus))} if gpus else dict(env)


def _scalar(value: Any) -> str:
    return json.dumps(value) if isinstance(value, (dict, list)) else str(value)


def flag_argv(key: str, spec: FlagSpec, keys: EngineKeys, derived: bool) -> list[str]:
    """The argv one key contributes under one vocabulary entry ([] when unset / default / derived-only)."""
    value = getattr(keys, key)
    if value is None or value == spec.omit or (derived and spec.skip_derived):
        return []
    if spec.kind == "bool":
        return [spec.flag] if value else []
    if spec.kind == "bool_value_from":
        return [spec.flag, _scalar(getattr(keys, spec.from_))] if value else []
    if spec.kind == "choice":
        return list(spec.choices.get(str(value), []))
    if spec.kind == "list":
        return [spec.flag, *map(str, value)]
    if spec.kind == "template":
        return [spec.flag, spec.template.replace("{v}", str(value))]
    text = spec.values.get(str(value), _scalar(value))
    return [spec.flag, text]


def _is_derived(plan: LaunchPlan, role: str, key: str) -> bool:
    layer = plan.provenance.get(f"role.{role}.{key}") or plan.provenance.get(key, "")
    return layer.startswith("derived")


def _topology_argv(keys: EngineKeys, nodes: int, rank: int, node0: str, vocab: Vocabulary) -> list[str]:
    """Multi-node roles get nnodes/node-rank/dist-init-addr; a single-node role keeps its own address."""
    if nodes > 1:
        return ["--nnodes", str(nodes), "--node-rank", str(rank), "--dist-init-addr",
                f"{node0}:{vocab.multinode_port}"]
    return ["--dist-init-addr", keys.dist_init_addr] if keys.dist_init_addr else []


def engine_argv(plan: LaunchPlan, role: str, rank: int = 0, *, host: str | None = None,
                node0_addr: str | None = None) -> list[str]:
    vocab = vocabulary(plan.engine_version)
    keys = plan.role_keys(role)
    r = plan.role(role)
    # Cookbook order: trust flag, model, then the multi-node triple, then the tuning flags.
    first = "trust_remote_code"
    argv = [*vocab.command, *flag_argv(first, vocab.flags[first], keys, False), "--model-path", keys.model_path]
    argv += _topology_argv(keys, r.nodes if r else plan.nodes, rank, node0_addr or NODE0_PLACEHOLDER, vocab)
    for key, spec in vocab.flags.items():
        if key != first:
            argv += flag_argv(key, spec, keys, _is_derived(plan, role, key))
    return [*argv, "--host", host or keys.host, "--port", str(keys.port)]


def router_argv(plan: LaunchPlan, *, prefill_host: str, decode_host: str) -> list[str]:
    """The sglang router in front of a PD pair (REC's command; clients target its port)."""
    pre, dec, rtr = plan.role("prefill"), plan.role("decode"), plan.role("router")
    return ["python3", "-m", "sglang_router.launch_router", "--pd-disaggregation",
            "--prefill", f"http://{prefill_host}:{pre.port}", "--decode", f"http://{decode_host}:{dec.port}",
            "--host", plan.keys.host, "--port", str(rtr.port), "--disable-circuit-breaker",
            "--health-check-interval-secs", ROUTER_HEALTH_INTERVAL]


def render_commands(plan: LaunchPlan, *, host: str | None = None, node0_addr: str | None = None) -> list[NodeCommand]:
    """One NodeCommand per node of each engine role, then the router (PD). argv lists, never shell strings."""
    if plan.engine != "sglang":
        from dsv4ctl.errors import UserError

        raise UserError(f"plan engine is '{plan.engine}', not sglang", where=f"plan for {plan.hardware}",
                        fix="use `serve --engine builtin` for the included runtime")
    out: list[NodeCommand] = []
    pinned = {(s.role, s.rank): list(s.pinned) for s in slots(plan)}
    for role in plan.roles:
        if role.name == "router":
            addr = host or "127.0.0.1"
            argv = router_argv(plan, prefill_host=addr, decode_host=addr)
            out.append(NodeCommand(role="router", argv=argv, env={}, port=role.port))
            continue
        for rank in range(max(role.nodes, 1)):
            argv = engine_argv(plan, role.name, rank, host=host, node0_addr=node0_addr)
            out.append(NodeCommand(role=role.name, node_rank=rank, argv=argv, env=plan.role_env(role.name),
                                   port=role.port, gpus=pinned.get((role.name, rank), [])))
    return out
