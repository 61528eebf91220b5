"""Guardrails on tuned overlays: what may be filed back into hardware_profiles/tuned/.

Rejected, each with one line naming the file and field: a key that is not tunable (or any env entry),
a key without its baseline value, no evidence, evidence whose repeats show no gain beyond noise
(`objective.judge`), a failed accuracy gate, and — resolved into the overlay's own cell — a plan with
an error finding. The first four are checked whenever overlays are loaded; the rules at `propose`
and `dsv4ctl validate OVERLAY.yaml`."""

from __future__ import annotations

import json

from dsv4ctl.errors import UserError
from dsv4ctl.profiles import check_overlay as check_static  # noqa: F401 (run on every load, so it lives there)


def cell_of(overlay, where: str) -> dict[str, str | None]:
    """The one (hw, variant, recipe[, quant]) cell an overlay names."""
    cell = {}
    for field in ("hw", "variant", "recipe", "quant"):
        vals = getattr(overlay.when, field)
        if field != "quant" and (not vals or len(vals) != 1):
            raise UserError(f"when.{field} must name exactly one value", where=f"{where}: when.{field}",
                            fix="an overlay applies to one hardware / variant / recipe cell")
        cell[field] = vals[0] if vals else None
    return cell


def check_rules(overlay, where: str):
    """Resolve the overlay's cell with its keys; an error finding rejects it. Returns the plan."""
    from dsv4ctl.tune.plans import PlanSpec, checked_plan, errors

    cell = cell_of(overlay, where)
    spec = PlanSpec(cell["hw"], cell["variant"], cell["recipe"], {"quant": cell["quant"]} if cell["quant"] else {})
    plan = checked_plan(spec, [f"{k}={'null' if v is None else json.dumps(v)}" for k, v in overlay.keys.items()])
    bad = errors(plan)
    if bad:
        raise UserError(f"the tuned plan breaks a rule ({bad[0]})", where=f"{where}: keys",
                        fix="discard this overlay or re-tune (candidates with error findings are never proposed)")
    return plan


def check(path) -> object:
    """Every guardrail on an overlay file; returns the overlay when it passes."""
    from dsv4ctl.schema import TunedOverlay, load_model

    overlay = load_model(TunedOverlay, path)
    check_static(overlay, str(path))
    check_rules(overlay, str(path))
    return overlay
