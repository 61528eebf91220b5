"""The plan options shared by `plan`, `explain` and `serve` ("the same options as plan").

Use the Annotated aliases as parameter types and pass the values to `build_plan`."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

HwOpt = Annotated[str, typer.Option("--hw", help="Hardware profile (dsv4ctl profiles list).")]
VariantOpt = Annotated[str, typer.Option("--variant", help="flash | pro (| tiny | mini for the runtime).")]
RecipeOpt = Annotated[str, typer.Option("--recipe", help="low-latency | balanced | max-throughput | cp | pd-disagg.")]
QuantOpt = Annotated[Optional[str], typer.Option("--quant", help="fp4 | fp8 | nvfp4 (default: the profile's).")]
NodesOpt = Annotated[Optional[int], typer.Option("--nodes", min=1, help="Nodes per engine role.")]
MtpOpt = Annotated[Optional[bool], typer.Option("--mtp/--no-mtp", help="MTP speculative decoding on/off.")]
MegamoeOpt = Annotated[Optional[str], typer.Option("--megamoe", help="off | w4a8 | w4a4 (Blackwell).")]
HicacheOpt = Annotated[Optional[str], typer.Option("--hicache", help="off | l2 (hierarchical KV cache).")]
ReasoningOpt = Annotated[Optional[str], typer.Option("--reasoning-parser", help="e.g. deepseek-v4.")]
ToolOpt = Annotated[Optional[str], typer.Option("--tool-call-parser", help="e.g. deepseekv4.")]
ContextOpt = Annotated[Optional[int], typer.Option("--context-length", min=1, help="Max context tokens.")]
EngineVersionOpt = Annotated[Optional[str], typer.Option("--engine-version", help="SGLang flag vocabulary.")]
SetOpt = Annotated[Optional[list[str]], typer.Option("--set", help="key=value, role.key=value or env.NAME=value.")]


def make_toggles(quant=None, nodes=None, mtp=None, megamoe=None, hicache=None, reasoning_parser=None,
                 tool_call_parser=None, context_length=None, engine_version=None):
    """Toggles from CLI values; a bad choice is a one-line UserError naming the option."""
    from pydantic import ValidationError

    from dsv4ctl.errors import UserError
    from dsv4ctl.schema.recipe import Toggles

    raw = dict(quant=quant, nodes=nodes, mtp=mtp, megamoe=megamoe, hicache=hicache, reasoning_parser=reasoning_parser,
               tool_call_parser=tool_call_parser, context_length=context_length, engine_version=engine_version)
    try:
        return Toggles(**raw)
    except ValidationError as exc:
        err = exc.errors()[0]
        field = str(err["loc"][0])
        raise UserError(f"{err['msg']} (got {raw[field]!r})", where=f"--{field.replace('_', '-')}",
                        fix="pick one of the listed values") from None


def build_plan(hw: str, variant: str, recipe: str, *, sets: list[str] | None = None, **toggle_values):
    """Resolve a plan from the shared options (validation findings are added by the caller)."""
    from dsv4ctl.resolve import resolve_plan

    return resolve_plan(hw, variant, recipe, make_toggles(**toggle_values), list(sets or []))


def add_findings(plan):
    """Attach the validation findings and the per-GPU memory budget of each serving role."""
    from dsv4ctl.validate import run_rules
    from dsv4ctl.validate.report import plan_sizing

    return plan.model_copy(update={"findings": run_rules(plan), "sizing": plan_sizing(plan)})
