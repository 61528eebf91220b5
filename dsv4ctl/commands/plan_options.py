"""The plan options shared by `plan`, `explain` and `serve` ("the same options as plan").

The toggles (and serve's key overrides) are not listed here: a command declares `toggles: Toggles`
(`cli: CliOverrides`) and `@model_options` turns each field of the model into an option."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from dsv4ctl.commands.model_options import model_options

__all__ = ["ForceOpt", "HwOpt", "RecipeOpt", "SetOpt", "StrictOpt", "VariantOpt", "model_options"]

HwOpt = Annotated[str, typer.Option("--hw", help="Hardware profile (dsv4ctl profiles list).")]
VariantOpt = Annotated[str, typer.Option("--variant", help="flash | pro (| tiny | mini for the runtime).")]
RecipeOpt = Annotated[str, typer.Option("--recipe", help="low-latency | balanced | max-throughput | cp | pd-disagg.")]
SetOpt = Annotated[Optional[list[str]], typer.Option("--set", help="key=value, role.key=value or env.NAME=value.")]
ForceOpt = Annotated[bool, typer.Option("--force", help="Go on although the plan has error findings (says so).")]
StrictOpt = Annotated[bool, typer.Option("--strict", help="Warnings fail too (exit 1).")]
