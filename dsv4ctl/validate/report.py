"""Rich rendering of findings and of the per-GPU memory budget, shared by `plan` and `validate`."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from dsv4ctl.schema.finding import Finding
from dsv4ctl.sizing import MemoryBudget

if TYPE_CHECKING:  # rich.table is imported on use: `plan --format json` only needs the numbers
    from rich.table import Table

_STYLE = {"error": "bold red", "warning": "yellow", "info": "cyan"}


def findings_table(findings: list[Finding]) -> Table:
    from rich.table import Table

    t = Table(title="Findings", show_lines=False, expand=False)
    t.add_column("severity", no_wrap=True)
    t.add_column("rule", no_wrap=True)  # ids are what users grep for and pass to `dsv4ctl rules`
    t.add_column("message", overflow="fold")
    t.add_column("fix", overflow="fold")
    for f in findings:
        t.add_row(f"[{_STYLE[f.severity]}]{f.severity}[/]", f.rule, f.message, f.fix)
    return t


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


def budgets(plan: Any) -> dict[str, MemoryBudget]:
    """Memory budget per serving role ("single" for one server; "prefill"/"decode" for PD), empty
    when the hardware or the variant is unknown."""
    from dsv4ctl.validate.context import views

    out = {ctx.role or "single": ctx.budget for ctx in views(plan)}
    return {role: b for role, b in out.items() if b is not None}


def print_memory(plan: Any, console=None) -> dict[str, MemoryBudget]:
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


def plan_sizing(plan: Any) -> dict[str, Any] | None:
    """Numbers for LaunchPlan.sizing: {role: budget as plain values}, or None."""
    found = budgets(plan)
    return {role: budget_dict(b) for role, b in found.items()} or None


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
