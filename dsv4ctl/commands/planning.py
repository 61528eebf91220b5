"""Planning commands: plan, explain, profiles, recipes, variants, schema. None of them imports torch."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional

import typer

from dsv4ctl.commands.plan_options import (
    ForceOpt, HwOpt, RecipeOpt, SetOpt, StrictOpt, VariantOpt, model_options,
)
from dsv4ctl.schema.recipe import CliOverrides, Toggles

if TYPE_CHECKING:
    from dsv4ctl.pipeline import CheckedPlan, PlanRequest

PLAN_FORMATS = ("rich", "shell", "json", "yaml", "env")
DATA_FORMATS = ("rich", "json", "yaml")
FormatOpt = Annotated[str, typer.Option("--format", "-f", help="rich | shell | json | yaml | env")]
DataFormatOpt = Annotated[str, typer.Option("--format", "-f", help="rich | json | yaml")]
OutputOpt = Annotated[Optional[Path], typer.Option("--output", "-o", help="Write the plan file (YAML).")]
HostOpt = Annotated[Optional[str], typer.Option("--host", help="Address the PD router uses for its servers.")]
Node0Opt = Annotated[Optional[str], typer.Option("--node0-addr", help="Node 0 address (multi-node).")]
RoleOpt = Annotated[Optional[str], typer.Option("--role", help="prefill | decode (PD plans).")]


def _check_format(fmt: str, allowed: tuple[str, ...]) -> None:
    if fmt not in allowed:
        from dsv4ctl.errors import UserError, did_you_mean

        raise UserError(f"unknown format '{fmt}'", where="--format", fix=did_you_mean(fmt, list(allowed)))


@model_options
def plan(
    hw: HwOpt, variant: VariantOpt = "flash", recipe: RecipeOpt = "balanced", toggles: Toggles = None,
    set_: SetOpt = None, fmt: FormatOpt = "rich", output: OutputOpt = None,
    explain_key: Annotated[Optional[str], typer.Option("--explain", help="Explain one key instead.")] = None,
    host: HostOpt = None, node0_addr: Node0Opt = None, force: ForceOpt = False, strict: StrictOpt = False,
) -> None:
    """Resolve a launch plan and print it (Rich summary), its commands (shell/env) or data (json/yaml).
    Exit 2 when the plan has error findings (the file is still written with -o), unless --force."""
    from dsv4ctl.pipeline import PlanRequest, RenderOptions, make_plan

    _check_format(fmt, PLAN_FORMATS)
    request = PlanRequest(hw=hw, variant=variant, recipe=recipe, toggles=toggles, sets=tuple(set_ or ()),
                          render=RenderOptions(host=host, node0_addr=node0_addr))
    if explain_key:
        return _explain(request, explain_key, None)
    checked = make_plan(request)
    if output:
        _write_plan(checked, output)
    quiet = output is not None and fmt == "rich"
    _print_plan(checked, fmt, quiet)
    code = _plan_verdict(checked, force, strict, shown=fmt == "rich" and not quiet)
    if code:
        raise typer.Exit(code)


def _write_plan(checked: CheckedPlan, output: Path) -> None:
    """The plan file is written even with error findings (to inspect and edit); the message says so."""
    from dsv4ctl.console import err
    from dsv4ctl.schema import dump_plan

    dump_plan(checked.plan, output)
    note = f" (it has {len(checked.errors)} error finding(s))" if checked.errors else ""
    err.print(f"wrote {output}{note}", highlight=False)


def _plan_verdict(checked: CheckedPlan, force: bool, strict: bool, shown: bool) -> int:
    from dsv4ctl.commands.verdict import verdict

    return verdict(checked, "plan", force=force, strict=strict, shown=shown)


def _print_plan(checked: CheckedPlan, fmt: str, quiet: bool) -> None:
    from dsv4ctl.render import data as text

    commands = _commands(checked)
    if fmt == "shell":
        print(text.to_shell(commands), end="")
    elif fmt == "env":
        print(text.to_env(commands), end="")
    elif fmt in ("json", "yaml"):
        from dsv4ctl.console import emit_data

        emit_data(text.to_data(checked.plan, commands), fmt)
    elif not quiet:
        from dsv4ctl.commands.plan_view import show_plan

        show_plan(checked.plan, commands)


def _commands(checked: CheckedPlan) -> list:
    if checked.plan.engine != "sglang":
        from dsv4ctl.console import err

        err.print(f"[dim]engine '{checked.plan.engine}': no sglang commands; run it with `dsv4ctl serve`[/]")
    return checked.commands


def _explain(request: PlanRequest, key: str, role: str | None) -> None:
    from dsv4ctl.commands.plan_view import show_explanation
    from dsv4ctl.pipeline import make_plan
    from dsv4ctl.resolve import check_explain_key, explain_key

    check_explain_key(key)
    checked = make_plan(request)
    show_explanation(explain_key(checked.plan, checked.layers, key, role))


@model_options
def explain(
    key: Annotated[str, typer.Argument(help="A key (e.g. max_running_requests) or env.NAME.")],
    hw: HwOpt, variant: VariantOpt = "flash", recipe: RecipeOpt = "balanced", toggles: Toggles = None,
    set_: SetOpt = None, cli: CliOverrides = None, role: RoleOpt = None,
) -> None:
    """Show each layer's value for KEY and which layer won (serve's --host/--port/… as the cli layer)."""
    from dsv4ctl.pipeline import PlanRequest

    _explain(PlanRequest(hw=hw, variant=variant, recipe=recipe, toggles=toggles, sets=tuple(set_ or ()), cli=cli),
             key, role)


def _emit_listing(title: str, rows: list[tuple[str, str]], fmt: str) -> None:
    _check_format(fmt, DATA_FORMATS)
    if fmt == "rich":
        from dsv4ctl.commands.plan_view import show_rows

        show_rows(title, rows)
    else:
        from dsv4ctl.console import emit_data

        emit_data([{"name": n, "summary": s} for n, s in rows], fmt)


def _emit_model(model, fmt: str) -> None:
    _check_format(fmt, DATA_FORMATS)
    from dsv4ctl.console import emit_data

    emit_data(model.model_dump(mode="json", by_alias=True), "yaml" if fmt == "rich" else fmt)


profiles_app = typer.Typer(help="Hardware profiles (hardware_profiles/*.yaml).", no_args_is_help=True)
recipes_app = typer.Typer(help="Recipes (dsv4ctl/recipes/*.yaml).", no_args_is_help=True)
variants_app = typer.Typer(help="DeepSeek-V4 variants (config.json facts, checkpoints).", no_args_is_help=True)


@profiles_app.command("list")
def profiles_list(fmt: DataFormatOpt = "rich") -> None:
    """One line per hardware profile."""
    from dsv4ctl.profiles import get_profile, profile_names

    _emit_listing("hardware profiles", [(n, get_profile(n).summary) for n in profile_names()], fmt)


@profiles_app.command("show")
def profiles_show(name: str, fmt: DataFormatOpt = "rich") -> None:
    """Every field of one hardware profile."""
    from dsv4ctl.profiles import get_profile

    _emit_model(get_profile(name), fmt)


@recipes_app.command("list")
def recipes_list(fmt: DataFormatOpt = "rich") -> None:
    """One line per recipe."""
    from dsv4ctl.recipes import get_recipe, recipe_names

    _emit_listing("recipes", [(n, get_recipe(n).summary) for n in recipe_names()], fmt)


@recipes_app.command("show")
def recipes_show(name: str, fmt: DataFormatOpt = "rich") -> None:
    """A recipe's keys and overrides as written."""
    from dsv4ctl.recipes import get_recipe

    _emit_model(get_recipe(name), fmt)


@variants_app.command("list")
def variants_list(fmt: DataFormatOpt = "rich") -> None:
    """One line per variant."""
    from dsv4ctl.variants import all_variants

    _emit_listing("variants", [(n, v.summary) for n, v in all_variants().items()], fmt)


@variants_app.command("show")
def variants_show(name: str, fmt: DataFormatOpt = "rich") -> None:
    """config.json facts and checkpoints of one variant."""
    from dsv4ctl.variants import get_variant

    _emit_model(get_variant(name), fmt)


def schema(name: Annotated[Optional[str], typer.Argument(help="One model, e.g. launch-plan.")] = None) -> None:
    """Export JSON Schema for the data files and the plan file (for editors)."""
    import json

    from dsv4ctl.errors import UserError, did_you_mean
    from dsv4ctl.schema import EXPORTED

    if name is not None and name not in EXPORTED:
        raise UserError(f"unknown schema '{name}'", where="schema", fix=did_you_mean(name, list(EXPORTED)))
    chosen = {name: EXPORTED[name]} if name else EXPORTED
    data = {n: m.model_json_schema() for n, m in chosen.items()}
    print(json.dumps(data[name] if name else data, indent=2))


def register(app: typer.Typer) -> None:
    """Add this module's commands to the root app."""
    app.command("plan")(plan)
    app.command("explain")(explain)
    app.command("schema")(schema)
    app.add_typer(profiles_app, name="profiles")
    app.add_typer(recipes_app, name="recipes")
    app.add_typer(variants_app, name="variants")
