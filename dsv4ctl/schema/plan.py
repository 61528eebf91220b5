"""LaunchPlan: the pure, serializable result of `dsv4ctl plan`; later commands read it back unchanged."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator

from dsv4ctl.schema.base import Strict
from dsv4ctl.schema.finding import Finding
from dsv4ctl.schema.keys import MAX_NODES, EngineKeys, EnvName, check_partial_keys

RoleName = Literal["single", "prefill", "decode", "router"]


class Role(Strict):
    """One process group. `keys`/`env` hold only what differs from the plan-wide values."""

    name: RoleName
    nodes: int = Field(default=1, ge=0, le=MAX_NODES)
    port: int = Field(default=30000, ge=1, le=65535)
    keys: dict[str, Any] = Field(default_factory=dict)
    env: dict[EnvName, str] = Field(default_factory=dict)

    # A hand-edited `tp: eight` under a role is caught here, with the file and field, not in a rule.
    _keys = field_validator("keys")(classmethod(lambda cls, v: check_partial_keys(v)))


class LaunchPlan(Strict):
    hardware: str
    variant: str
    recipe: str
    quant: str
    engine: Literal["sglang", "builtin"] = "sglang"
    engine_version: str
    recipe_source: str = ""
    nodes: int = Field(ge=1, le=MAX_NODES)
    gpus_per_node: int = Field(ge=1)
    keys: EngineKeys
    env: dict[EnvName, str] = Field(default_factory=dict)
    provenance: dict[str, str] = Field(default_factory=dict)
    roles: list[Role]
    sizing: dict[str, Any] | None = None
    findings: list[Finding] = Field(default_factory=list)

    def role(self, name: str) -> Role | None:
        return next((r for r in self.roles if r.name == name), None)

    def role_keys(self, name: str) -> EngineKeys:
        """The plan-wide keys with one role's overrides applied (Role validated them as partial keys)."""
        role = self.role(name)
        if role is None or not role.keys:
            return self.keys
        return self.keys.model_copy(update=role.keys)

    def role_env(self, name: str) -> dict[str, str]:
        role = self.role(name)
        return {**self.env, **(role.env if role else {})}


def plan_to_data(plan: LaunchPlan) -> dict[str, Any]:
    return plan.model_dump(mode="json")


def dump_plan(plan: LaunchPlan, path: str | Path) -> None:
    """Write a plan file (YAML, keys in schema order so a diff reads top-down)."""
    import yaml

    from dsv4ctl.files import write_text

    write_text(path, yaml.safe_dump(plan_to_data(plan), sort_keys=False, allow_unicode=True))


def load_plan(path: str | Path) -> LaunchPlan:
    """Read a plan file back; bad YAML or a bad field is a UserError naming the file and field."""
    from dsv4ctl.schema.io import load_yaml, validate

    return validate(LaunchPlan, load_yaml(Path(path)), str(path))
