"""The plan space: every hardware × variant × quant × recipe × toggle combination, for the
property tests and benchmarks/validate_space.py. Each point goes through the pipeline: it either
resolves (then it is rendered and the rules run) or is rejected by the resolver with one UserError line."""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any, Iterator

from dsv4ctl.errors import UserError
from dsv4ctl.pipeline import CheckedPlan, PlanRequest, make_plan
from dsv4ctl.schema.recipe import Toggles, choices

QUANTS = choices(Toggles, "quant")
MTP = (True, False)
MEGAMOE = choices(Toggles, "megamoe")
NODES = (1, 2)


@dataclass(frozen=True)
class Point:
    hw: str
    variant: str
    recipe: str
    toggles: dict[str, Any]
    sets: tuple[str, ...] = ()


def axes() -> dict[str, tuple]:
    from dsv4ctl.recipes import recipe_names
    from dsv4ctl.profiles import profile_names
    from dsv4ctl.variants import variant_names

    return {"hw": tuple(profile_names()), "variant": tuple(variant_names()), "quant": QUANTS,
            "recipe": tuple(recipe_names()), "mtp": MTP, "megamoe": MEGAMOE, "nodes": NODES}


def points() -> Iterator[Point]:
    a = axes()
    for hw, variant, quant, recipe, mtp, mm, nodes in itertools.product(*a.values()):
        yield Point(hw, variant, recipe, {"quant": quant, "mtp": mtp, "megamoe": mm, "nodes": nodes})


def request(p: Point) -> PlanRequest:
    return PlanRequest(hw=p.hw, variant=p.variant, recipe=p.recipe, toggles=Toggles(**p.toggles), sets=p.sets)


def evaluate(p: Point) -> tuple[CheckedPlan, None] | tuple[None, UserError]:
    """(checked plan, None), or (None, UserError) for a point the resolver rejects."""
    try:
        return make_plan(request(p)), None
    except UserError as exc:
        return None, exc
