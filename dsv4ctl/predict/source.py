"""The one place `predict` gets a plan from: resolved from options, or read from a plan file, and
checked (findings + sizing). When the pipeline's `make_plan` / `check_plan` land this is the only
function to switch."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def checked_plan(hw: str | None = None, variant: str | None = None, recipe: str | None = None, *,
                 plan_file: Path | None = None, sets: list[str] | None = None, **toggles: Any):
    """A LaunchPlan with findings and sizing, from a plan file or from the plan options."""
    from dsv4ctl.commands.plan_options import add_findings, build_plan

    if plan_file is not None:
        from dsv4ctl.schema import load_plan

        return add_findings(load_plan(plan_file))
    return add_findings(build_plan(hw, variant, recipe, sets=sets, **toggles))
