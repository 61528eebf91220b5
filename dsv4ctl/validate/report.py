"""Findings and the per-GPU memory budget as text: the one way every command prints them."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from dsv4ctl.schema.finding import Finding
from dsv4ctl.schema.plan import LaunchPlan
from dsv4ctl.sizing import MemoryBudget
from dsv4ctl.validate.context import Ctx

if TYPE_CHECKING:  # rich.table is imported on use: `plan --format json` only needs the numbers
    from rich.table import Table

_STYLE = {"error": "bold red", "warning": "yellow", "info": "cyan"}


def print_findings(findings: list[Finding], console=None) -> None:
    """The one way findings are printed, in every command: `severity RULE: message (fix: …)`, one per
    line, errors first (as the rules return them)."""
    from rich.markup import escape

    from dsv4ctl.console import err

    console = console or err
    for f in findings:
        fix = f" [dim](fix: {escape(f.fix)})[/]" if f.fix else ""
        console.print(f"[{_STYLE[f.severity]}]{f.severity}[/] {escape(f.rule)}: {escape(f.message)}{fix}",
                      highlight=False)


def memory_table(b: MemoryBudget, title: str = "Memory per GPU") -> Table:
    from rich.table import Table

    mfs = f"{b.mem_fraction}" + (" assumed: unset" if b.mem_fraction_is_default else "")
    t = Table(title=f"{title} ({b.hbm_gib:.0f} GiB usable, --mem-fraction-static {mfs})")
    t.add_column("item")
    t.add_column("GiB", justify="right")
    t.add_column("share", justify="right")
    for name, gib in b.rows():
        style = "red" if gib < 0 else ""
        t.add_row(name, f"[{style}]{gib:.1f}[/]" if style else f"{gib:.1f}", f"{gib / b.hbm_gib:.0%}")
    return t


def capacity_lines(b: MemoryBudget) -> list[str]:
    return [
        f"KV per request at {b.context} tokens: {b.seq_gib_at_context:.3f} GiB → "
        f"{b.max_requests_at_context} concurrent requests per rank",
        f"max context at {b.running_per_rank} running requests per rank: {b.max_context_at_running} tokens",
        f"minimum --mem-fraction-static (weights + buffers): {b.min_mem_fraction:.3f}",
    ]


def budgets(plan: LaunchPlan) -> dict[str, MemoryBudget]:
    """Memory budget per serving role ("single" for one server; "prefill"/"decode" for PD), empty
    when the hardware or the variant is unknown."""
    from dsv4ctl.validate.context import views

    return _budgets(views(plan))


def _budgets(ctxs: list[Ctx]) -> dict[str, MemoryBudget]:
    out = {ctx.role or "single": ctx.budget for ctx in ctxs}
    return {role: b for role, b in out.items() if b is not None}


def print_memory(plan: LaunchPlan, console=None) -> dict[str, MemoryBudget]:
    """The per-GPU memory table and KV capacity lines of each serving role."""
    from dsv4ctl.console import out

    console = console or out
    found = budgets(plan)
    for role, budget in found.items():
        title = "Memory per GPU" + ("" if role == "single" else f" ({role})")
        console.print(memory_table(budget, title))
        for line in capacity_lines(budget):
            console.print(f"  {line}", highlight=False)
    return found


def plan_sizing(plan: LaunchPlan) -> dict[str, Any] | None:
    """Numbers for LaunchPlan.sizing: {role: budget as plain values}, or None."""
    from dsv4ctl.validate.context import views

    return sizing_of(views(plan))


def sizing_of(ctxs: list[Ctx]) -> dict[str, Any] | None:
    return {role: budget_dict(b) for role, b in _budgets(ctxs).items()} or None


def budget_dict(b: MemoryBudget) -> dict[str, Any]:
    """The budget as plain numbers (for plan.sizing and --format json)."""
    from dataclasses import asdict

    return {k: (round(v, 3) if isinstance(v, float) else v) for k, v in asdict(b).items()}
