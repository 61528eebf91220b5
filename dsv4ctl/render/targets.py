"""One plan's rendered commands for one target: plain commands, docker, Kubernetes or Slurm.

The commands carry a placeholder rendezvous host (topology.NODE0) that each target replaces with its
own way of naming a role's first node. Every shell token is quoted, environment names included."""

from __future__ import annotations

import shlex

from dsv4ctl.render.sglang import NodeCommand
from dsv4ctl.schema.plan import LaunchPlan


def env_words(env: dict[str, str]) -> list[str]:
    """`NAME=value` words for a shell, each part quoted (the schema already refuses odd names)."""
    return [f"{shlex.quote(k)}={shlex.quote(v)}" for k, v in env.items()]


def commands_text(commands: list[NodeCommand]) -> str:
    return "".join(f"# {c.role} rank {c.node_rank}\n" + " ".join([*env_words(c.process_env()), shlex.join(c.argv)]) + "\n"
                   for c in commands)


def render_target(plan: LaunchPlan, commands: list[NodeCommand], target: str, name: str, image: str | None) -> str:
    from dsv4ctl.render import docker, k8s, slurm

    if target == "sglang":
        return commands_text(commands)
    if target == "slurm":
        return slurm.render_slurm(plan, commands, name=name, image=image)
    renderer = k8s.render_k8s if target == "k8s" else docker.render_docker
    return renderer(plan, commands, name=name, image=image or docker.default_image(plan))
