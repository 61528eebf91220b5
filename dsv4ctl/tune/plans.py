"""The plan a candidate runs: the tune's base inputs plus the candidate's `--set`s, checked by the rules.

`checked_plan` hands them to the pipeline (`make_plan`, issue 19): every candidate is resolved and
checked exactly as `dsv4ctl plan` would."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# keys that place a plan, not tune it: a plan file's values for these are never re-applied as --set
_PLACEMENT = {"host", "port"}


@dataclass
class PlanSpec:
    """What `plan` would be called with: the cell, its toggles and --set list."""

    hw: str
    variant: str
    recipe: str
    toggles: dict[str, Any] = field(default_factory=dict)
    sets: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"hw": self.hw, "variant": self.variant, "recipe": self.recipe, "toggles": self.toggles,
                "sets": self.sets}


def checked_plan(spec: PlanSpec, extra_sets: list[str] | None = None):
    """The resolved plan with its findings and sizing (errors are the caller's to act on)."""
    from dsv4ctl.pipeline import PlanRequest, make_plan
    from dsv4ctl.schema.recipe import Toggles

    request = PlanRequest(hw=spec.hw, variant=spec.variant, recipe=spec.recipe, toggles=Toggles(**spec.toggles),
                          sets=(*spec.sets, *(extra_sets or ())))
    return make_plan(request).plan


def errors(plan) -> list[str]:
    return [f"{f.rule}: {f.message}" for f in plan.findings if f.severity == "error"]


def spec_from_plan_file(path: Path) -> PlanSpec:
    """A plan file as tune inputs: its cell, and every plan-wide key that differs from the freshly
    resolved cell as a --set (so the candidates' own sets land on top of exactly that plan)."""
    import json

    from dsv4ctl.errors import UserError
    from dsv4ctl.schema import load_plan

    plan = load_plan(path)
    if any(r.keys for r in plan.roles):
        raise UserError("role-specific keys are not tunable yet", where=str(path), fix="tune a single-role plan")
    spec = PlanSpec(plan.hardware, plan.variant, plan.recipe, {"quant": plan.quant,
                                                               "engine_version": plan.engine_version})
    fresh = checked_plan(spec)
    base = fresh.keys.model_dump()
    for key, value in plan.keys.model_dump().items():
        if key not in _PLACEMENT and base.get(key) != value:
            spec.sets.append(f"{key}={'null' if value is None else json.dumps(value)}")
    spec.sets += [f"env.{k}={v}" for k, v in plan.env.items() if fresh.env.get(k) != v]
    spec.sets += [f"env.{k}=" for k in fresh.env if k not in plan.env]
    return spec
