"""Where each engine rank of a plan runs: the node of the allocation and the GPUs on it (the one home
of placement: the renderers, `serve` and the NODE-GPUS-OVERCLAIM rule all read `slots`).

Ranks are placed role after role (prefill, then decode), each on the next node; a plan with fewer
nodes than ranks (single-node PD) shares its nodes round-robin. Ranks on one node get disjoint,
contiguous GPU ranges in placement order; a rank alone on its node starts at GPU 0. The router runs on
the first node and claims no GPU."""

from __future__ import annotations

from dataclasses import dataclass

from dsv4ctl.schema.plan import LaunchPlan

ROLE_ORDER = {"single": 0, "prefill": 1, "decode": 2, "router": 3}


@dataclass(frozen=True)
class Slot:
    role: str
    rank: int  # the role's node rank
    node: int  # index into the allocation (Slurm) / the host it runs on
    leader: int  # the node of this role's rank 0: the rendezvous address
    first_gpu: int = 0
    count: int = 0  # GPUs this rank claims on its node (0: the router)
    shared: bool = False  # another engine rank runs on the same node: pin the GPUs

    @property
    def gpus(self) -> tuple[int, ...]:
        return tuple(range(self.first_gpu, self.first_gpu + self.count))

    @property
    def pinned(self) -> tuple[int, ...]:
        """The GPUs this rank is pinned to: its own range when it shares the node, () for the whole node."""
        return self.gpus if self.shared else ()


def rank_gpus(plan: LaunchPlan, role: str) -> int:
    """GPUs one node rank of `role` claims: its tp × pp ranks spread over the role's nodes."""
    if role == "router":
        return 0
    keys, r = plan.role_keys(role), plan.role(role)
    ranks = max(r.nodes if r is not None else plan.nodes, 1)
    return max(1, -(-keys.tp * keys.pp // ranks))


def _engine_ranks(plan: LaunchPlan) -> list[tuple[str, int]]:
    roles = sorted((r for r in plan.roles if r.name != "router"), key=lambda r: ROLE_ORDER.get(r.name, 9))
    return [(r.name, rank) for r in roles for rank in range(max(r.nodes, 1))]


def slots(plan: LaunchPlan) -> list[Slot]:
    """One Slot per engine node rank (role order, ranks ascending), then the router's."""
    nodes = max(plan.nodes, 1)
    ranks = _engine_ranks(plan)
    per_node = [0] * nodes
    for i in range(len(ranks)):
        per_node[i % nodes] += 1
    used, leaders, out = [0] * nodes, {}, []
    for i, (role, rank) in enumerate(ranks):
        node, count = i % nodes, rank_gpus(plan, role)
        leaders.setdefault(role, node)
        out.append(Slot(role, rank, node, leaders[role], used[node], count, per_node[node] > 1))
        used[node] += count
    out += [Slot(r.name, 0, 0, 0) for r in plan.roles if r.name == "router"]
    return out


def slot_of(plan: LaunchPlan, role: str, rank: int = 0) -> Slot | None:
    return next((s for s in slots(plan) if s.role == role and s.rank == rank), None)


def node_claims(plan: LaunchPlan) -> dict[int, list[Slot]]:
    """The engine slots of each node that hosts more than one engine rank."""
    by_node: dict[int, list[Slot]] = {}
    for s in slots(plan):
        if s.count:
            by_node.setdefault(s.node, []).append(s)
    return {n: group for n, group in by_node.items() if len(group) > 1}
