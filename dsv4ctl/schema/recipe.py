"""Recipe (named intent as engine-neutral keys + conditional overrides), Toggles and TunedOverlay."""

from __future__ import annotations

import statistics
from typing import Any, Literal

from pydantic import Field, field_validator

from dsv4ctl.schema.base import Strict
from dsv4ctl.schema.hardware import Quant
from dsv4ctl.schema.keys import MAX_NODES, EnvName, HiCache, MegaMoE, check_partial_keys


def _check_key_names(value: dict[str, Any]) -> dict[str, Any]:
    # Type-check each value now, so a bad value is reported against the file even if a later layer
    # would have replaced it.
    return check_partial_keys(value)


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
    nodes: int | None = Field(default=None, ge=1, le=MAX_NODES)
    keys: dict[str, Any] = Field(default_factory=dict)
    env: dict[EnvName, str | None] = Field(default_factory=dict)  # None removes a variable
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
    env: dict[EnvName, str] = Field(default_factory=dict)
    overrides: list[Override] = Field(default_factory=list)

    _names = field_validator("keys")(classmethod(lambda cls, v: _check_key_names(v)))


class Toggles(Strict):
    """The CLI toggles. None = leave the recipe's choice alone. Each field is one `plan`/`explain`/
    `serve` option (dsv4ctl.commands.plan_options builds the options from this model); the
    description is the option's help."""

    quant: Quant | None = Field(None, description="Checkpoint format (default: the profile's).")
    nodes: int | None = Field(None, ge=1, le=MAX_NODES, description="Nodes per engine role.")
    mtp: bool | None = Field(None, description="MTP speculative decoding on/off.")
    megamoe: MegaMoE | None = Field(None, description="MegaMoE (Blackwell).")
    hicache: HiCache | None = Field(None, description="Hierarchical KV cache.")
    reasoning_parser: str | None = Field(None, description="e.g. deepseek-v4.")
    tool_call_parser: str | None = Field(None, description="e.g. deepseekv4.")
    context_length: int | None = Field(None, ge=1, description="Max context tokens.")
    engine_version: str | None = Field(None, description="SGLang flag vocabulary.")


class CliOverrides(Strict):
    """Plan keys given on `serve`'s (and `explain`'s) command line: the `cli` layer, after --set.
    --port moves the endpoint: the single server's port, or the router's on a PD plan."""

    model_path: str | None = Field(None, description="A local checkpoint or a repo id.")
    host: str | None = Field(None, description="Address to bind.")
    port: int | None = Field(None, ge=1, le=65535, description="Endpoint port (the router's on PD plans).")
    served_model_name: str | None = Field(None, description="Model name clients use.")

    def given(self) -> dict[str, Any]:
        return self.model_dump(exclude_none=True)


def choices(model: type[Strict], field: str) -> tuple[str, ...]:
    """The values a Literal field allows (the plan space enumerates them)."""
    from typing import get_args

    args = get_args(model.model_fields[field].annotation)
    inner = next(a for a in args if a is not type(None)) if type(None) in args else model.model_fields[field].annotation
    return tuple(get_args(inner))


class Evidence(Strict):
    """Why a tuned overlay's values are better: what was measured, how, where, and the numbers.
    The guardrails recompute the verdict from the repeat scores; they never trust a stored one."""

    objective: str
    unit: str
    slo: dict[str, Any]
    workload: dict[str, Any]
    engine: str
    engine_version: str
    versions: dict[str, Any] = Field(default_factory=dict)
    hardware: dict[str, Any] = Field(default_factory=dict)  # fingerprint of the machine that measured
    date: str
    tune_dir: str
    digest: str  # sha256 of the tune directory's tune.json, result.json files and final.json
    baseline_scores: list[float | None]  # the baseline point, measured `repeats` times
    tuned_scores: list[float | None]  # the tuned point, the same
    baseline_summary: dict[str, Any] = Field(default_factory=dict)
    tuned_summary: dict[str, Any] = Field(default_factory=dict)
    accuracy: dict[str, Any] | None = None


def _spread(vals: list[float]) -> float:
    mid = statistics.median(vals)
    return (max(vals) - min(vals)) / mid if mid > 0 else 0.0


def judge(baseline: list[float | None], tuned: list[float | None]) -> dict[str, Any]:
    """Is the tuned point better beyond noise? Each side was measured `repeats` times on its own
    server. Noise is the larger relative spread, (max − min) / median, of either side's repeats.
    Better beyond noise: the tuned side's worst repeat beats the baseline's best, and the median gain
    exceeds the noise. A repeat that missed the SLO scores 0."""
    b, t = [v or 0.0 for v in baseline], [v or 0.0 for v in tuned]
    if len(b) < 2 or len(t) < 2:
        return {"gain": None, "noise": None, "beyond_noise": False,
                "why": "each point needs at least 2 repeats to measure noise"}
    mb, mt = statistics.median(b), statistics.median(t)
    noise = max(_spread(b), _spread(t))
    gain = mt / mb - 1 if mb > 0 else None
    beyond = min(t) > max(b) and (gain is None or gain > noise)
    why = (f"median {mt:.4g} vs {mb:.4g} ({'baseline never met the SLO' if gain is None else f'{gain:+.1%}'}), "
           f"noise {noise:.1%}; worst tuned {min(t):.4g} vs best baseline {max(b):.4g}")
    return {"gain": gain, "noise": noise, "beyond_noise": beyond, "why": why}


class TunedOverlay(Strict):
    """hardware_profiles/tuned/*.yaml: measured improvements for one (hw, variant, quant, recipe) cell,
    written by `dsv4ctl propose`. `baseline` holds each key's value before tuning."""

    when: Match
    keys: dict[str, Any] = Field(default_factory=dict)
    env: dict[EnvName, str | None] = Field(default_factory=dict)
    baseline: dict[str, Any] = Field(default_factory=dict)
    evidence: Evidence | None = None

    _names = field_validator("keys")(classmethod(lambda cls, v: _check_key_names(v)))
