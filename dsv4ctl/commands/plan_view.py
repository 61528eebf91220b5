"""Rich views for planning commands: plan summary, explain table, profile/recipe listings."""

from __future__ import annotations

from typing import Any

from rich.markup import escape
from rich.table import Table

from dsv4ctl.console import out
from dsv4ctl.schema.plan import LaunchPlan
from dsv4ctl.validate.report import print_findings, print_memory


def _fmt(value: Any) -> str:
    """A cell value, shortened for long lists and escaped (layer labels contain [brackets])."""
    if isinstance(value, list) and len(value) > 8:
        return escape(f"[{', '.join(map(str, value[:4]))}, …, {value[-1]}] ({len(value)})")
    return escape(str(value))


def show_plan(plan: LaunchPlan, commands: list) -> None:
    """Topology, the keys that differ from defaults with their layer, env, findings, commands."""
    roles = ", ".join(f"{r.name}×{r.nodes}n:{r.port}" for r in plan.roles)
    out.print(f"[bold]{plan.hardware} / {plan.variant} / {plan.quant} / {plan.recipe}[/]  "
              f"sglang {plan.engine_version}  {plan.nodes} node(s) × {plan.gpus_per_node} GPUs  roles: {roles}")
    out.print(f"[dim]recipe values: {plan.recipe_source}[/]")
    table = Table("key", "value", "from", title="resolved keys (non-default)", title_justify="left")
    for key, value in plan.keys.model_dump().items():
        source = plan.provenance.get(key, "")
        if not source.startswith("default"):
            table.add_row(key, _fmt(value), escape(source))
    for name, value in sorted(plan.provenance.items()):
        if name.startswith("role.") and ".env." not in name:
            _, role, key = name.split(".", 2)
            r = plan.role(role)
            shown = r.keys[key] if key in r.keys else getattr(r, key, None)  # the router's port is the Role's
            table.add_row(f"{role}: {key}", _fmt(shown), escape(value))
    out.print(table)
    if plan.env or any(r.env for r in plan.roles):
        env = Table("variable", "value", "from", title="environment", title_justify="left")
        for name, value in plan.env.items():
            env.add_row(name, escape(value), escape(plan.provenance.get(f"env.{name}", "")))
        for r in plan.roles:
            for name, value in r.env.items():
                env.add_row(f"{r.name}: {name}", escape(value), escape(plan.provenance.get(f"role.{r.name}.env.{name}", "")))
        out.print(env)
    print_memory(plan, out)
    from dsv4ctl.predict.summary import predicted_line

    out.print(escape(predicted_line(plan)), highlight=False)
    print_findings(plan.findings, out)
    for cmd in commands:
        gpus = f" (GPUs {','.join(map(str, cmd.gpus))})" if cmd.gpus else ""
        out.print(f"[bold]{cmd.role}[/] node {cmd.node_rank}{gpus}: " + escape(" ".join(cmd.argv)), highlight=False)


def show_explanation(exp) -> None:
    table = Table("#", "layer", "value", title=f"{exp.key}" + (f" (role {exp.role})" if exp.role else ""),
                  title_justify="left")
    for i, (layer, value) in enumerate(exp.steps, 1):
        table.add_row(str(i), escape(layer), _fmt(value))
    out.print(table)
    out.print(f"[bold]final[/]: {_fmt(exp.final)}  [bold]won[/]: {escape(exp.winner)}")
    from dsv4ctl.profiles import tuned_evidence

    for layer in dict.fromkeys(layer for layer, _ in exp.steps):  # a tuned overlay points at its evidence
        pointer = tuned_evidence(layer)
        if pointer:
            out.print(f"[bold]evidence[/]: {escape(pointer)}", highlight=False)


def show_rows(title: str, rows: list[tuple[str, str]]) -> None:
    table = Table("name", "summary", title=title, title_justify="left")
    for name, summary in rows:
        table.add_row(name, summary)
    out.print(table)
