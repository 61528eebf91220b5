"""The one place `predict` gets a plan from: resolved from options, or read from a plan file, and
checked by the pipeline (findings + sizing)."""

from __future__ import annotations

from pathlib import Path

from dsv4ctl.schema.plan import LaunchPlan
from dsv4ctl.schema.recipe import Toggles


def checked_plan(hw: str | None = None, variant: str | None = None, recipe: str | None = None, *,
                 plan_file: Path | None = None, sets: list[str] | None = None,
                 toggles: Toggles | None = None, **toggle_values: object) -> LaunchPlan:
    """A LaunchPlan with findings and sizing, from a plan file or from the plan options (a Toggles,
    or its fields as keywords)."""
    from dsv4ctl.pipeline import PlanRequest, check_plan, make_plan

    if plan_file is not None:
        from dsv4ctl.schema import load_plan

        return check_plan(load_plan(plan_file)).plan
    toggles = toggles or Toggles(**toggle_values)
    return make_plan(PlanRequest(hw=hw, variant=variant, recipe=recipe, toggles=toggles, sets=tuple(sets or ()))).plan
