"""Where each rendered command runs, shared by the Kubernetes, Slurm and Docker renderers.

The renderers ask the planner's `render_commands` for argv with a placeholder rendezvous address
and then put in their own target's way of naming the first node of a role ($(LWS_LEADER_ADDRESS),
${NODES[k]}, a container name). The argv is otherwise exactly the plan's.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable
from urllib.parse import urlsplit, urlunsplit

from dsv4ctl.render.sglang import NodeCommand
from dsv4ctl.schema.plan import LaunchPlan
from dsv4ctl.sizing.placement import ROLE_ORDER, slots

NODE0 = "DSV4CTL-NODE0"  # placeholder for the rendezvous host; a valid hostname, so renderers accept it


@dataclass
class Placed:
    cmd: NodeCommand
    node: int  # index into the allocation (Slurm) / pod within the role's group (k8s)
    leader: int  # the node of this role's rank 0: the rendezvous address


def by_role(commands: list[NodeCommand]) -> dict[str, list[NodeCommand]]:
    """Commands grouped by role, roles in start order, ranks ascending."""
    groups: dict[str, list[NodeCommand]] = {}
    for cmd in sorted(commands, key=lambda c: (ROLE_ORDER.get(c.role, 9), c.node_rank)):
        groups.setdefault(cmd.role, []).append(cmd)
    return groups


def place(plan: LaunchPlan, commands: list[NodeCommand]) -> list[Placed]:
    """Each command on its node (sizing.placement.slots: rank after rank, role after role, nodes shared
    round-robin when the plan has fewer than ranks), in start order. The router runs on the first node."""
    where = {(s.role, s.rank): s for s in slots(plan)}
    ordered = [c for cmds in by_role(commands).values() for c in cmds]
    return [Placed(c, where[(c.role, c.node_rank)].node, where[(c.role, c.node_rank)].leader) for c in ordered]


def swap(argv: list[str], old: str, new: str) -> list[str]:
    return [a.replace(old, new) for a in argv]


def set_flag(argv: list[str], flag: str, value: str) -> list[str]:
    """argv with the value after `flag` replaced (unchanged when the flag is absent)."""
    out = list(argv)
    if flag in out[:-1]:
        out[out.index(flag) + 1] = value
    return out


def rewrite_router_urls(argv: list[str], host_for: Callable[[str], str]) -> list[str]:
    """Point the router's --prefill/--decode URLs at the target's name for those roles' first node."""
    out = list(argv)
    for i, arg in enumerate(out[:-1]):
        if arg in ("--prefill", "--decode"):
            parts = urlsplit(out[i + 1])
            netloc = f"{host_for(arg[2:])}:{parts.port}" if parts.port else host_for(arg[2:])
            out[i + 1] = urlunsplit(parts._replace(netloc=netloc))
    return out


def gpus_per_pod(plan: LaunchPlan, role: str) -> int:
    """GPUs one pod (one node rank) of `role` asks for: its slot's share, at most a node's worth."""
    counts = [s.count for s in slots(plan) if s.role == role]
    return min(plan.gpus_per_node, counts[0]) if counts and counts[0] else 0


def needs_ib(plan: LaunchPlan) -> bool:
    """RDMA is needed for PD KV transfer over an IB device, and for multi-node NCCL unless the
    plan runs over multi-node NVLink (GB200/GB300)."""
    keys = plan.keys
    role_ib = any(plan.role_keys(r.name).ib_device for r in plan.roles)
    return bool(keys.ib_device or role_ib or (plan.nodes > 1 and not keys.mnnvl))
