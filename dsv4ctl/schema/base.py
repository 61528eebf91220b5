"""The strict pydantic base every data model derives from: unknown keys are errors, not silently dropped."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Strict(BaseModel):
    """extra=forbid so a misspelt YAML key fails loudly with the file and field named."""

    model_config = ConfigDict(extra="forbid", validate_assignment=False)
