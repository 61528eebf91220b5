"""`docker run` commands for a plan: one container per role and node rank, host networking (the PD
router and NCCL reach the other roles directly), the plan env as --env, shared memory and IPC for
NCCL, and the InfiniBand device plus IPC_LOCK where the plan needs RDMA (without them mooncake
silently falls back to TCP: reference/sglang-v4-recipes.md §7 #7)."""

from __future__ import annotations

import shlex

from dsv4ctl.render.sglang import NodeCommand
from dsv4ctl.schema.plan import LaunchPlan
from dsv4ctl.render.topology import NODE0, by_role, needs_ib

NODE0_VAR = "${NODE0_ADDR:?set NODE0_ADDR to the address of the role's first node}"
_IB_FLAGS = ["--device", "/dev/infiniband:/dev/infiniband", "--cap-add", "IPC_LOCK", "--ulimit", "memlock=-1"]


def docker_argv(cmd: NodeCommand, *, name: str, image: str, ib: bool, shm: str = "32g") -> list[str]:
    argv = ["docker", "run", "-d", "--name", f"{name}-{cmd.role}-{cmd.node_rank}", "--network", "host",
            "--ipc", "host", "--shm-size", shm, "-v", "${HOME}/.cache/huggingface:/root/.cache/huggingface"]
    if cmd.role != "router":  # a rank sharing its node gets its own devices; the quotes are docker's CSV syntax
        argv += ["--gpus", f'"device={",".join(map(str, cmd.gpus))}"' if cmd.gpus else "all"]
    if ib and cmd.role != "router":
        argv += _IB_FLAGS
    for key, value in cmd.env.items():
        argv += ["--env", f"{key}={value}"]
    return argv + [image, *cmd.argv]


def docker_commands(plan: LaunchPlan, commands: list[NodeCommand], *, name: str, image: str) -> list[tuple[NodeCommand, list[str]]]:
    ib = needs_ib(plan)
    ordered = [c for cmds in by_role(commands).values() for c in cmds]
    return [(c, docker_argv(c, name=name, image=image, ib=ib)) for c in ordered]


def _shell_word(word: str) -> str:
    """Quote for bash, except the two expansions we emit on purpose."""
    if word.startswith("${HOME}"):
        return '"${HOME}"' + shlex.quote(word[len("${HOME}"):])
    if NODE0 in word:
        return '"' + word.replace('"', '\\"').replace(NODE0, NODE0_VAR) + '"'
    return shlex.quote(word)


def render_docker(plan: LaunchPlan, commands: list[NodeCommand], *, name: str, image: str) -> str:
    lines = ["#!/bin/bash", f"# Rendered by dsv4ctl from plan {plan.hardware}/{plan.variant}/{plan.recipe}.",
             "set -euo pipefail"]
    multi = plan.nodes > 1
    for cmd, argv in docker_commands(plan, commands, name=name, image=image):
        where = f" (run on node {cmd.node_rank} of the {cmd.role} group)" if multi else ""
        lines.append(f"\n# {cmd.role} rank {cmd.node_rank}{where}")
        lines.append(" ".join(_shell_word(w) for w in argv))
    return "\n".join(lines) + "\n"


def default_image(plan: LaunchPlan) -> str:
    """The hardware profile's image for this plan: a quant- or DeepEP-specific one where the profile
    names it (GB200 DeepEP needs the cu129 build), else its SGLang image."""
    from dsv4ctl.profiles import find_profile

    profile = find_profile(plan.hardware)  # by name, inside the catalog only
    images = profile.images if profile is not None else {}
    if plan.keys.moe_a2a == "deepep" and "deepep" in images:
        return images["deepep"]
    return images.get(plan.quant) or images.get("sglang") or "lmsysorg/sglang:latest"
