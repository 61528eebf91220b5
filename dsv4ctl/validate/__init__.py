"""Validation: a registry of small pure rules over a LaunchPlan.

`check(plan, rendered)` returns the findings (errors first) and the per-role memory sizing, from one
set of views; `rule_catalog_markdown()` renders the registry as docs/rules.md. Importing this package
imports every theme module, which registers its rules. The pipeline (dsv4ctl.pipeline) renders the
plan and passes the result in: rules never render."""

from __future__ import annotations

from typing import Any

from dsv4ctl.schema.finding import Finding
from dsv4ctl.schema.plan import LaunchPlan
from dsv4ctl.validate import builtin, deepep, flags, megamoe, memory, quant, spec, topology  # noqa: F401 (registers)
from dsv4ctl.validate.catalog import rule_catalog_markdown
from dsv4ctl.validate.context import Ctx, Rendered, views
from dsv4ctl.validate.registry import RULES, Hit, Rule, rule

SEVERITY_ORDER = {"error": 0, "warning": 1, "info": 2}

__all__ = ["Ctx", "Finding", "Hit", "RULES", "Rendered", "Rule", "check", "rule", "rule_catalog_markdown",
           "run_rules", "exit_code"]


def run_rules(plan: LaunchPlan, only: set[str] | None = None, rendered: Rendered | None = None) -> list[Finding]:
    """Every rule over every serving role of the plan; one finding per (rule, message). Without
    `rendered`, the rules that read the command line stay silent (use dsv4ctl.pipeline.check_plan)."""
    return _run(views(plan, rendered), only)


def check(plan: LaunchPlan, rendered: Rendered) -> tuple[list[Finding], dict[str, Any] | None]:
    """(findings, sizing) of a plan from one set of views: each budget is computed once."""
    from dsv4ctl.validate.report import sizing_of

    ctxs = views(plan, rendered)
    return _run(ctxs, None), sizing_of(ctxs)


def _run(ctxs: list[Ctx], only: set[str] | None) -> list[Finding]:
    seen: set[tuple[str, str]] = set()
    found: list[Finding] = []
    for ctx in ctxs:
        for r in RULES.values():
            if only is not None and r.id not in only:
                continue
            for f in r.run(ctx):
                if (f.rule, f.message) not in seen:
                    seen.add((f.rule, f.message))
                    found.append(f)
    return sorted(found, key=lambda f: SEVERITY_ORDER[f.severity])


def exit_code(findings: list[Finding], strict: bool = False) -> int:
    """0 clean, 1 warnings under --strict, 2 errors (the `validate` contract)."""
    if any(f.severity == "error" for f in findings):
        return 2
    if strict and any(f.severity == "warning" for f in findings):
        return 1
    return 0
