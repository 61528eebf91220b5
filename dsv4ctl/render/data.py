"""Text forms of a plan's commands: shell (copy-paste), env (KEY=VALUE per command), json/yaml (data)."""

from __future__ import annotations

import shlex
from typing import Any

from dsv4ctl.render.sglang import NodeCommand
from dsv4ctl.render.targets import env_words
from dsv4ctl.schema.plan import LaunchPlan, plan_to_data


def _header(cmd: NodeCommand) -> str:
    return f"# role {cmd.role}, node-rank {cmd.node_rank}, port {cmd.port}"


def to_shell(commands: list[NodeCommand]) -> str:
    """One block per command: env assignments prefixed, argv quoted, one flag pair per line."""
    blocks = []
    for cmd in commands:
        lines = env_words(cmd.process_env())
        lines.append(" ".join(shlex.quote(a) for a in cmd.argv[:2]))
        rest, i = cmd.argv[2:], 0
        while i < len(rest):  # keep each flag with its values on one line
            j = i + 1
            while j < len(rest) and not rest[j].startswith("--"):
                j += 1
            lines.append("  " + " ".join(shlex.quote(a) for a in rest[i:j]))
            i = j
        blocks.append(_header(cmd) + "\n" + " \\\n".join(lines))
    return "\n\n".join(blocks) + "\n"


def to_env(commands: list[NodeCommand]) -> str:
    blocks = [_header(c) + "\n" + "".join(f"{w}\n" for w in env_words(c.process_env())) for c in commands]
    return "\n".join(blocks)


def to_data(plan: LaunchPlan, commands: list[NodeCommand]) -> dict[str, Any]:
    return {"plan": plan_to_data(plan), "commands": [c.model_dump() for c in commands]}
