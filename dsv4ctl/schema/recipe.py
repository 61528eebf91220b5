"""Recipe (named intent as engine-neutral keys + conditional overrides), Toggles and TunedOverlay."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator

from dsv4ctl.schema.base import Strict
from dsv4ctl.schema.keys import KEY_NAMES


def _check_key_names(value: dict[str, Any]) -> dict[str, Any]:
    unknown = sorted(set(value) - KEY_NAMES)
    if unknown:
        from dsv4ctl.errors import did_you_mean

        raise ValueError(f"unknown key '{unknown[0]}' ({did_you_mean(unknown[0], sorted(KEY_NAMES))})")
    # Type-check each value now, so a bad value is reported against the file even if a later layer
    # would have replaced it.
    from pydantic import ValidationError

    from dsv4ctl.schema.keys import EngineKeys

    for key, item in value.items():
        try:
            EngineKeys.model_validate({key: item})
        except ValidationError as exc:
            raise ValueError(f"key '{key}': {exc.errors()[0]['msg']}") from None
    return value


FIELDS = ("hw", "variant", "quant", "nodes", "role", "recipe")


class Match(Strict):
    """When an override applies. Each field is one value or a list; absent = any."""

    hw: list[str] | None = None
    variant: list[str] | None = None
    quant: list[str] | None = None
    nodes: list[int] | None = None
    role: list[str] | None = None
    recipe: list[str] | None = None

    @field_validator("hw", "variant", "quant", "nodes", "role", "recipe", mode="before")
    @classmethod
    def _listify(cls, v: Any) -> Any:
        return v if v is None or isinstance(v, list) else [v]

    def matches(self, ctx: dict[str, Any]) -> bool:
        for field in FIELDS:
            allowed = getattr(self, field)
            if allowed is not None and ctx.get(field) not in allowed:
                return False
        return True

    def label(self) -> str:
        parts = [f"{f}={'|'.join(map(str, getattr(self, f)))}" for f in FIELDS
                 if getattr(self, f) is not None]
        return ",".join(parts) or "*"


class Override(Strict):
    when: Match
    nodes: int | None = Field(default=None, ge=1)
    keys: dict[str, Any] = Field(default_factory=dict)
    env: dict[str, str | None] = Field(default_factory=dict)  # None removes a variable
    unsupported: str | None = None  # this cell does not exist: the message to show

    _names = field_validator("keys")(classmethod(lambda cls, v: _check_key_names(v)))


class Recipe(Strict):
    name: str
    summary: str
    source: str
    engine_version: str
    roles: list[Literal["single", "prefill", "decode", "router"]] = Field(default_factory=lambda: ["single"])
    ports: dict[str, int] = Field(default_factory=dict)
    keys: dict[str, Any] = Field(default_factory=dict)
    env: dict[str, str] = Field(default_factory=dict)
    overrides: list[Override] = Field(default_factory=list)

    _names = field_validator("keys")(classmethod(lambda cls, v: _check_key_names(v)))


class Toggles(Strict):
    """The CLI toggles. None = leave the recipe's choice alone."""

    quant: Literal["fp4", "fp8", "nvfp4", "bf16"] | None = None
    nodes: int | None = Field(default=None, ge=1)
    mtp: bool | None = None
    megamoe: Literal["off", "w4a8", "w4a4"] | None = None
    hicache: Literal["off", "l2"] | None = None
    reasoning_parser: str | None = None
    tool_call_parser: str | None = None
    context_length: int | None = Field(default=None, ge=1)
    engine_version: str | None = None


class TunedOverlay(Strict):
    """hardware_profiles/tuned/*.yaml: measured improvements for one (hw, variant, recipe) cell."""

    when: Match
    keys: dict[str, Any] = Field(default_factory=dict)
    env: dict[str, str | None] = Field(default_factory=dict)
    evidence: str = ""

    _names = field_validator("keys")(classmethod(lambda cls, v: _check_key_names(v)))
