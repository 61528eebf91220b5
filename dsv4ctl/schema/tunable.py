"""Tunable: one engine key `dsv4ctl tune` may move, with its range, step, engines and couplings
(the data lives in dsv4ctl/tune/tunables.yaml; this is its schema)."""

from __future__ import annotations

import math
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator

from dsv4ctl.schema.base import Strict
from dsv4ctl.schema.keys import KEY_NAMES

Engine = Literal["builtin", "sglang"]


class Tunable(Strict):
    """A key, its search range and what moving it costs. `couples` are keys that must follow it:
    they are reset so resolve derives them again from the new value (e.g. the CUDA-graph batch
    list and the DeepEP dispatch budget follow max_running_requests)."""

    key: str
    doc: str
    kind: Literal["int", "float"] = "int"
    min: float
    max: float
    step: float = Field(gt=0)  # multiplicative for scale "log", additive for "linear"
    scale: Literal["log", "linear"] = "log"
    engines: list[Engine]
    restart: bool = True  # a server-side key: the engine must restart to change it
    gpu_only: bool = False  # no effect on the cpu profile (the runtime runs no graphs / fixed pool there)
    needs_graphs: bool = False  # ignored when the plan disables CUDA graphs
    numerics: bool = False  # can change outputs (MTP, kernels): the accuracy gate runs for it
    couples: list[str] = Field(default_factory=list)
    below: str | None = None  # must stay <= this key's value (e.g. graphs never above the request cap)
    engine_default: dict[Engine, float] = Field(default_factory=dict)  # the value when the plan leaves it unset

    @field_validator("key")
    @classmethod
    def _known(cls, v: str) -> str:
        if v not in KEY_NAMES:
            raise ValueError(f"unknown key '{v}'")
        return v

    @field_validator("couples")
    @classmethod
    def _known_couples(cls, v: list[str]) -> list[str]:
        bad = sorted(set(v) - KEY_NAMES)
        if bad:
            raise ValueError(f"unknown coupled key '{bad[0]}'")
        return v

    @model_validator(mode="after")
    def _range(self) -> "Tunable":
        if self.max < self.min or (self.scale == "log" and (self.min <= 0 or self.step <= 1)):
            raise ValueError(f"{self.key}: need min <= max (and min > 0, step > 1 for a log scale)")
        return self

    def ladder(self) -> list[float | int]:
        """Every value on the declared range, in order."""
        out, v = [], float(self.min)
        while v <= self.max * (1 + 1e-9):
            out.append(int(round(v)) if self.kind == "int" else round(v, 6))
            v = v * self.step if self.scale == "log" else v + self.step
        return sorted(set(out))

    def coarse(self) -> list[float | int]:
        """Every other ladder value, both ends kept: the first pass of coarse-to-fine."""
        lad = self.ladder()
        picked = lad[::2]
        return picked if picked[-1] == lad[-1] else [*picked, lad[-1]]

    def neighbours(self, value) -> list[float | int]:
        """The ladder values next to `value` (the fine pass); an off-ladder value gets the nearest two."""
        lad = self.ladder()
        if value in lad:
            i = lad.index(value)
            return [lad[j] for j in (i - 1, i + 1) if 0 <= j < len(lad)]
        dist = sorted(lad, key=lambda x: abs(math.log(x / value)) if value and x > 0 else abs(x - (value or 0)))
        return sorted(dist[:2])


class TunableSet(Strict):
    tunables: list[Tunable]


TUNABLES_FILE = Path(__file__).resolve().parents[1] / "tune" / "tunables.yaml"


@lru_cache(maxsize=1)
def all_tunables() -> dict[str, Tunable]:
    """dsv4ctl/tune/tunables.yaml by key (read here, below everything that checks an overlay)."""
    from dsv4ctl.schema.io import load_model

    return {t.key: t for t in load_model(TunableSet, TUNABLES_FILE).tunables}


def overlay_keys() -> set[str]:
    """Keys a tuned overlay may carry: the tunables and the keys that follow them."""
    tun = all_tunables()
    return set(tun) | {c for t in tun.values() for c in t.couples}
