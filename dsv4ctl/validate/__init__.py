"""Validation: a registry of small pure rules over a LaunchPlan.

`run_rules(plan)` returns the findings (errors first); `rule_catalog_markdown()` renders the registry
as docs/rules.md. Importing this package imports every theme module, which registers its rules."""

from __future__ import annotations

from typing import Any

from dsv4ctl.schema.finding import Finding
from dsv4ctl.validate import builtin, deepep, flags, megamoe, memory, quant, spec, topology  # noqa: F401 (registers)
from dsv4ctl.validate.catalog import rule_catalog_markdown
from dsv4ctl.validate.context import Ctx, views
from dsv4ctl.validate.registry import RULES, Hit, Rule, rule

SEVERITY_ORDER = {"error": 0, "warning": 1, "info": 2}

__all__ = ["Ctx", "Finding", "Hit", "RULES", "Rule", "rule", "rule_catalog_markdown", "run_rules",
           "exit_code"]


def run_rules(plan: Any, only: set[str] | None = None) -> list[Finding]:
    """Every rule over every serving role of the plan; one finding per (rule, message)."""
    seen: set[tuple[str, str]] = set()
    found: list[Finding] = []
    for ctx in views(plan):
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
