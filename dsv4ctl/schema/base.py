"""The strict pydantic base every data model derives from: unknown keys are errors, not silently dropped."""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict


class Strict(BaseModel):
    """extra=forbid so a misspelt YAML key fails loudly with the file and field named.

    defer_build: a model's validator is built on first use, so `dsv4ctl plan` pays only for the models it
    touches (cold start is a product goal)."""

    model_config = ConfigDict(extra="forbid", defer_build=True)


@dataclass(frozen=True)
class CliFlag:
    """How a field of an options model (Toggles, bench options) appears on the command line beyond
    `--field-name`: put it in the field's Annotated metadata; dsv4ctl.commands.model_options reads it."""

    short: str | None = None  # e.g. "-n"
    envvar: str | None = None  # read from this environment variable when the option is absent
    argument: bool = False  # a positional argument instead of an option
