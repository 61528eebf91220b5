"""`dsv4ctl predict`: throughput and latency of a plan without a GPU (dsv4ctl/predict/). No torch."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from dsv4ctl.commands.plan_options import SetOpt, model_options
from dsv4ctl.schema.recipe import Toggles

FORMATS = ("rich", "json", "yaml")
OptHw = Annotated[Optional[str], typer.Option("--hw", help="Hardware profile (dsv4ctl profiles list).")]
OptVariant = Annotated[Optional[str], typer.Option("--variant", help="flash | pro.")]
OptRecipe = Annotated[Optional[str], typer.Option("--recipe", help="low-latency | balanced | max-throughput | cp | pd-disagg.")]
PlanFileOpt = Annotated[Optional[Path], typer.Option("--plan", help="A plan file (dsv4ctl plan -o) instead of options.")]
IslOpt = Annotated[int, typer.Option("--isl", help="Prompt tokens per request.")]
OslOpt = Annotated[int, typer.Option("--osl", help="Output tokens per request.")]
ConcOpt = Annotated[str, typer.Option("--concurrency", "-c", help="Clients, one or a ladder: 1,16,64,256.")]
AcceptOpt = Annotated[Optional[float], typer.Option("--accept-length", help="MTP tokens per cycle (default: per recipe).")]
FmtOpt = Annotated[str, typer.Option("--format", "-f", help="rich | json | yaml")]


def _plan(hw, variant, recipe, plan_file, sets, toggles: Toggles):
    from dsv4ctl.errors import UserError
    from dsv4ctl.predict.source import checked_plan

    if plan_file is not None:
        return checked_plan(plan_file=plan_file)
    missing = [n for n, v in (("--hw", hw), ("--variant", variant), ("--recipe", recipe)) if not v]
    if missing:
        raise UserError(f"missing {', '.join(missing)}", where="predict",
                        fix="give --hw, --variant and --recipe, or --plan plan.yaml")
    return checked_plan(hw, variant, recipe, sets=sets, toggles=toggles)


@model_options
def predict(
    hw: OptHw = None, variant: OptVariant = None, recipe: OptRecipe = None, toggles: Toggles = None,
    set_: SetOpt = None, plan_file: PlanFileOpt = None, isl: IslOpt = 8192, osl: OslOpt = 1024, concurrency: ConcOpt = "1,16,64,256",
    accept_length: AcceptOpt = None, fmt: FmtOpt = "rich",
) -> None:
    """Predict TTFT, TPOT and tok/s of a plan at each concurrency, and what bounds each phase."""
    from dsv4ctl.errors import UserError, did_you_mean
    from dsv4ctl.predict import Unservable, predict_plan
    from dsv4ctl.predict.workload import make_workload

    if fmt not in FORMATS:
        raise UserError(f"unknown format '{fmt}'", where="--format", fix=did_you_mean(fmt, list(FORMATS)))
    workload = make_workload(isl, osl, concurrency)
    plan = _plan(hw, variant, recipe, plan_file, set_, toggles)
    try:
        points = predict_plan(plan, workload, accept=accept_length)
    except Unservable as exc:
        raise UserError(f"no prediction: {exc}", where=str(plan_file or "predict"),
                        fix="change the plan or the workload") from None
    if fmt == "rich":
        from dsv4ctl.commands.predict_view import show_prediction

        show_prediction(plan, workload, points)
    else:
        from dsv4ctl.console import emit_data

        emit_data([p.as_dict() for p in points], fmt)


def register(app: typer.Typer) -> None:
    """Add `predict` to the root app."""
    app.command("predict")(predict)
