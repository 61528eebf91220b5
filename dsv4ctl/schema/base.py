"""The strict pydantic base every data model derives from: unknown keys are errors, not silently dropped."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Strict(BaseModel):
    """extra=forbid so a misspelt YAML key fails loudly with the file and field named.

    defer_build: a model's validator is built on first use, so `dsv4ctl plan` pays only for the models it
    touches (cold start is a product goal)."""

    model_config = ConfigDict(extra="forbid", defer_build=True)
