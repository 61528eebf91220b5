"""Slurm sbatch script: one `srun` per node rank (one task; the whole node's GPUs, or its own
CUDA_VISIBLE_DEVICES range when PD roles share the node), the rendezvous address taken from the
first node of each role, the router started on the first node once the servers answer /health.
Commands are the plan's argv, quoted for bash; env goes in through `env K=V`."""

from __future__ import annotations

import re
import shlex

from dsv4ctl.render.sglang import NodeCommand
from dsv4ctl.schema.plan import LaunchPlan
from dsv4ctl.render.topology import NODE0, Placed, place, rewrite_router_urls

_HEADER = """#!/bin/bash
# Rendered by dsv4ctl from plan {plan_id}. Submit with: sbatch {name}.sbatch
#SBATCH --job-name={name}
#SBATCH --nodes={nodes}
#SBATCH --ntasks-per-node=1
#SBATCH --gpus-per-node={gpus}
#SBATCH --exclusive
#SBATCH --output={name}-%j.out
set -euo pipefail
mapfile -t NODES < <(scontrol show hostnames "$SLURM_JOB_NODELIST")
mkdir -p logs

wait_healthy() {{  # the router needs its prefill and decode servers up first
  until curl -sf "http://$1/health" >/dev/null; do sleep 10; done
}}
"""


def node_var(index: int) -> str:
    return f"${{NODES[{index}]}}"


def quote(arg: str, hosts: dict[str, str]) -> str:
    """shlex-quote an argument, turning each host placeholder into a double-quoted bash expansion."""
    rx = re.compile("|".join(re.escape(k) for k in sorted(hosts, key=len, reverse=True)))
    out, pos = [], 0
    for m in rx.finditer(arg):
        if m.start() > pos:
            out.append(shlex.quote(arg[pos : m.start()]))
        out.append(f'"{hosts[m.group()]}"')
        pos = m.end()
    if pos < len(arg) or not out:
        out.append(shlex.quote(arg[pos:]))
    return "".join(out)


def _srun(p: Placed, argv: list[str], hosts: dict[str, str], image: str | None) -> str:
    env = [quote(f"{k}={v}", hosts) for k, v in p.cmd.process_env().items()]
    # --overlap: the router (and single-node PD roles) share a node with another step.
    opts = [f'--nodelist="{node_var(p.node)}"', "--nodes=1", "--ntasks=1", "--overlap",
            f"--output=logs/{p.cmd.role}-{p.cmd.node_rank}.log"]
    if image:
        opts.append(f"--container-image={shlex.quote(image)}")
    words = ["srun", *opts, "env", *env, *(quote(a, hosts) for a in argv)]
    return " ".join(words) + " &"


def render_slurm(plan: LaunchPlan, commands: list[NodeCommand], *, name: str, image: str | None = None) -> str:
    placed = place(plan, commands)
    leaders = {p.cmd.role: node_var(p.leader) for p in placed}
    role_host = {f"{NODE0}-{r}": h for r, h in leaders.items()}  # router URLs name other roles' leaders
    lines = [_HEADER.format(name=name, nodes=plan.nodes, gpus=plan.gpus_per_node,
                            plan_id=f"{plan.hardware}/{plan.variant}/{plan.recipe}")]
    for p in placed:
        hosts = {NODE0: node_var(p.leader), **role_host}
        argv = p.cmd.argv
        if p.cmd.role == "router":
            argv = rewrite_router_urls(argv, lambda role: f"{NODE0}-{role}")
            lines += [f'wait_healthy "{leaders[r]}:{_port(commands, r)}"' for r in ("prefill", "decode") if r in leaders]
        lines.append(f"# {p.cmd.role} rank {p.cmd.node_rank}")
        lines.append(_srun(p, argv, hosts, image))
    lines.append("wait -n  # the job ends when any server exits\nexit 1\n")
    return "\n".join(lines)


def _port(commands: list[NodeCommand], role: str) -> int | None:
    return next((c.port for c in commands if c.role == role and c.node_rank == 0), None)
