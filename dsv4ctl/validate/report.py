"""Rich rendering of findings and of the per-GPU memory budget, shared by `plan` and `validate`."""

from __future__ import annotations

from typing import Any

from rich.table import Table

from dsv4ctl.schema.finding import Finding
from dsv4ctl.sizing import MemoryBudget

_STYLE = {"error": "bold red", "warning": "yellow", "info": "cyan"}


def findings_table(findings: list[Finding]) -> Table:
    t = Table(title="Findings", show_lines=False, expand=False)
    for col in ("severity", "rule", "message", "fix"):
        t.add_column(col, overflow="fold")
    for f in findings:
        t.add_row(f"[{_STYLE[f.severity]}]{f.severity}[/]", f.rule, f.message, f.fix)
    return t


def memory_table(b: MemoryBudget, title: str = "Memory per GPU") -> Table:
    t = Table(title=f"{title} ({b.hbm_gib:.0f} GiB HBM, --mem-fraction-static {b.mem_fraction})")
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


def plan_budget_or_none(plan: Any) -> MemoryBudget | None:
    """The plan's memory budget, or None when its hardware or variant is unknown."""
    from dsv4ctl.validate.context import Ctx

    return Ctx(plan).budget


def print_memory(plan: Any, console=None) -> MemoryBudget | None:
    """The per-GPU memory table and the KV capacity lines (nothing when hardware/variant unknown)."""
    from dsv4ctl.console import out

    console = console or out
    budget = plan_budget_or_none(plan)
    if budget is not None:
        console.print(memory_table(budget))
        for line in capacity_lines(budget):
            console.print(f"  {line}", highlight=False)
    return budget


def plan_sizing(plan: Any) -> dict[str, Any] | None:
    """Numbers for LaunchPlan.sizing: the budget as plain values, or None."""
    budget = plan_budget_or_none(plan)
    return budget_dict(budget) if budget is not None else None


def print_report(plan: Any, findings: list[Finding] | None = None, console=None) -> list[Finding]:
    """Memory table, KV capacity and findings of a plan; returns the findings it printed. This is
    the one call `dsv4ctl plan` and `dsv4ctl validate` make."""
    from dsv4ctl.console import out
    from dsv4ctl.validate import run_rules

    console = console or out
    findings = run_rules(plan) if findings is None else findings
    print_memory(plan, console)
    if findings:
        console.print(findings_table(findings))
    else:
        console.print("[green]no findings: the plan validates clean[/]")
    return findings


def budget_dict(b: MemoryBudget) -> dict[str, Any]:
    """The budget as plain numbers (for plan.sizing and --format json)."""
    from dataclasses import asdict

    return {k: (round(v, 3) if isinstance(v, float) else v) for k, v in asdict(b).items()}
