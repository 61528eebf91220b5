"""A rule finding: what a validation rule reports about a plan.

Kept in its own module (no imports from the rest of the schema) so the plan schema can embed
findings and the rule engine can build them without an import cycle.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

Severity = Literal["error", "warning", "info"]


class Finding(BaseModel):
    """One rule's verdict on a plan: the rule id, how bad, what is wrong, the concrete fix, and the
    values the rule read (so a reader can check the arithmetic without re-running it)."""

    model_config = ConfigDict(extra="forbid")

    rule: str
    severity: Severity
    message: str
    fix: str = ""
    values: dict[str, Any] = Field(default_factory=dict)
