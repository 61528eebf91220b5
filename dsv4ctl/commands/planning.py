"""Planning commands: plan, explain, profiles, recipes, variants, schema. None of them imports torch."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from dsv4ctl.commands.plan_options import (
    ContextOpt, EngineVersionOpt, HicacheOpt, HwOpt, MegamoeOpt, MtpOpt, NodesOpt, QuantOpt, ReasoningOpt,
    RecipeOpt, SetOpt, ToolOpt, VariantOpt, add_findings, build_plan, make_toggles,
)

PLAN_FORMATS = ("rich", "shell", "json", "yaml", "env")
DATA_FORMATS = ("rich", "json", "yaml")
FormatOpt = Annotated[str, typer.Option("--format", "-f", help="rich | shell | json | yaml | env")]
DataFormatOpt = Annotated[str, typer.Option("--format", "-f", help="rich | json | yaml")]


def _check_format(fmt: str, allowed: tuple[str, ...]) -> None:
    if fmt not in allowed:
        from dsv4ctl.errors import UserError, did_you_mean

        raise UserError(f"unknown format '{fmt}'", where="--format", fix=did_you_mean(fmt, list(allowed)))


def plan(
    hw: HwOpt, variant: VariantOpt = "flash", recipe: RecipeOpt = "balanced", quant: QuantOpt = None,
    nodes: NodesOpt = None, mtp: MtpOpt = None, megamoe: MegamoeOpt = None, hicache: HicacheOpt = None,
    reasoning_parser: ReasoningOpt = None, tool_call_parser: ToolOpt = None, context_length: ContextOpt = None,
    engine_version: EngineVersionOpt = None, set_: SetOpt = None, fmt: FormatOpt = "rich",
    output: Annotated[Optional[Path], typer.Option("--output", "-o", help="Write the plan file (YAML).")] = None,
    explain_key: Annotated[Optional[str], typer.Option("--explain", help="Explain one key instead.")] = None,
    host: Annotated[Optional[str], typer.Option("--host", help="Bind address rendered into commands.")] = None,
    node0_addr: Annotated[Optional[str], typer.Option("--node0-addr", help="Node 0 address (multi-node).")] = None,
) -> None:
    """Resolve a launch plan and print it (Rich summary), its commands (shell/env) or data (json/yaml)."""
    _check_format(fmt, PLAN_FORMATS)
    toggles = dict(quant=quant, nodes=nodes, mtp=mtp, megamoe=megamoe, hicache=hicache,
                   reasoning_parser=reasoning_parser, tool_call_parser=tool_call_parser,
                   context_length=context_length, engine_version=engine_version)
    if explain_key:
        return _explain(hw, variant, recipe, explain_key, None, set_, toggles)
    result = add_findings(build_plan(hw, variant, recipe, sets=set_, **toggles))
    if output:
        from dsv4ctl.schema import dump_plan

        dump_plan(result, output)
    _print_plan(result, fmt, host, node0_addr, quiet=output is not None and fmt == "rich")
    if output:
        from dsv4ctl.console import err

        err.print(f"wrote {output}")


def _print_plan(result, fmt: str, host, node0_addr, quiet: bool) -> None:
    from dsv4ctl.render import data as text

    commands = _commands(result, host, node0_addr)
    if fmt == "shell":
        print(text.to_shell(commands), end="")
    elif fmt == "env":
        print(text.to_env(commands), end="")
    elif fmt in ("json", "yaml"):
        from dsv4ctl.console import emit_data

        emit_data(text.to_data(result, commands), fmt)
    elif not quiet:
        from dsv4ctl.commands.plan_view import show_plan

        show_plan(result, commands)


def _commands(result, host, node0_addr):
    if result.engine != "sglang":
        from dsv4ctl.console import err

        err.print(f"[dim]engine '{result.engine}': no sglang commands; run it with `dsv4ctl serve`[/]")
        return []
    from dsv4ctl.render.sglang import render_commands

    return render_commands(result, host=host, node0_addr=node0_addr)


def _explain(hw, variant, recipe, key, role, sets, toggles: dict) -> None:
    from dsv4ctl.commands.plan_view import show_explanation
    from dsv4ctl.resolve import explain as do_explain

    show_explanation(do_explain(hw, variant, recipe, key, make_toggles(**toggles), list(sets or []), role))


def explain(
    key: Annotated[str, typer.Argument(help="A key (e.g. max_running_requests) or env.NAME.")],
    hw: HwOpt, variant: VariantOpt = "flash", recipe: RecipeOpt = "balanced", quant: QuantOpt = None,
    nodes: NodesOpt = None, mtp: MtpOpt = None, megamoe: MegamoeOpt = None, hicache: HicacheOpt = None,
    reasoning_parser: ReasoningOpt = None, tool_call_parser: ToolOpt = None, context_length: ContextOpt = None,
    engine_version: EngineVersionOpt = None, set_: SetOpt = None,
    role: Annotated[Optional[str], typer.Option("--role", help="prefill | decode (PD plans).")] = None,
) -> None:
    """Show each layer's value for KEY and which layer won."""
    toggles = dict(quant=quant, nodes=nodes, mtp=mtp, megamoe=megamoe, hicache=hicache,
                   reasoning_parser=reasoning_parser, tool_call_parser=tool_call_parser,
                   context_length=context_length, engine_version=engine_version)
    _explain(hw, variant, recipe, key, role, set_, toggles)


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
    from dsv4ctl.resolve.catalog import get_profile, profile_names

    _emit_listing("hardware profiles", [(n, get_profile(n).summary) for n in profile_names()], fmt)


@profiles_app.command("show")
def profiles_show(name: str, fmt: DataFormatOpt = "rich") -> None:
    """Every field of one hardware profile."""
    from dsv4ctl.resolve.catalog import get_profile

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
