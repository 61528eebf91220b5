"""docs/rules.md, generated from the registry (tests fail when the file is stale)."""

from __future__ import annotations

from dsv4ctl.validate.registry import RULES

THEMES = {
    "deepep": "DeepEP all-to-all", "megamoe": "MegaMoE", "quant": "Checkpoint formats",
    "spec": "Speculative decoding", "topology": "Topology, context parallelism, PD",
    "flags": "Engine flags and parsers", "memory": "Memory", "builtin": "The included runtime",
}
HEADER = """# Rule catalog

Generated from the rule registry (`dsv4ctl/validate/`) by `dsv4ctl rules --write`; do not edit by
hand. `dsv4ctl plan` runs every rule; `dsv4ctl validate plan.yaml` re-checks a plan file and exits 0
(clean), 1 (warnings, with `--strict`) or 2 (errors). A fix in braces is filled with the plan's
numbers when the rule fires.
"""


def ordered_rules() -> list:
    """Registry rules grouped by theme, in the catalog's theme order."""
    order = list(THEMES)
    return sorted(RULES.values(), key=lambda r: order.index(r.theme) if r.theme in order else len(order))


def rule_catalog_markdown() -> str:
    rules = ordered_rules()
    lines = [HEADER, "| id | severity | what |", "|---|---|---|"]
    lines += [f"| [{r.id}](#{r.id.lower()}) | {r.severity} | {r.title} |" for r in rules]
    for theme, heading in THEMES.items():
        lines += ["", f"## {heading}"]
        for r in (r for r in rules if r.theme == theme):
            lines += ["", f"### {r.id}", "", f"**{r.severity}** — {r.title}.", "", r.doc, "",
                      f"Fix: {r.fix}"]
    return "\n".join(lines) + "\n"
