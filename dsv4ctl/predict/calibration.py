"""The published rows the constants are fitted on (calibration.yaml) and the model's error on them.

Plans are resolved once per (hw, variant, quant, recipe, toggles) and their engines kept, so a fit
evaluates thousands of constant sets in seconds."""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field

from dsv4ctl.predict.constants import K
from dsv4ctl.schema.base import Strict

CALIBRATION_FILE = Path(__file__).with_name("calibration.yaml")
Metric = Literal["total_tok_s_per_gpu", "tpot_ms", "ttft_ms", "output_tok_s"]


class Group(Strict):
    source: str
    hw: str
    variant: str
    quant: str
    isl: int = Field(ge=1)
    osl: int = Field(ge=1)
    megamoe: str | None = None
    rows: list[tuple[str, int, Metric, float]]


class CalibrationFile(Strict):
    sources: dict[str, str]
    groups: list[Group]


@dataclass(frozen=True)
class Row:
    source: str
    hw: str
    variant: str
    quant: str
    recipe: str
    megamoe: str | None
    isl: int
    osl: int
    concurrency: int
    metric: str
    measured: float

    @property
    def label(self) -> str:
        mm = f"+mm-{self.megamoe}" if self.megamoe else ""
        return f"{self.hw} {self.variant} {self.quant} {self.recipe}{mm} {self.isl}/{self.osl} c{self.concurrency}"


@lru_cache(maxsize=2)
def rows(path: Path = CALIBRATION_FILE) -> tuple[Row, ...]:
    from dsv4ctl.schema.io import load_model

    data = load_model(CalibrationFile, path)
    out = []
    for g in data.groups:
        if g.source not in data.sources:
            from dsv4ctl.errors import UserError

            raise UserError(f"source '{g.source}' is not listed", where=f"{path}: sources", fix="add it")
        for recipe, conc, metric, value in g.rows:
            out.append(Row(g.source, g.hw, g.variant, g.quant, recipe, g.megamoe, g.isl, g.osl, conc, metric, value))
    return tuple(out)


@lru_cache(maxsize=64)
def _engines(hw: str, variant: str, quant: str, recipe: str, megamoe: str | None):
    from dsv4ctl.predict import engines
    from dsv4ctl.predict.source import checked_plan

    toggles = {"quant": quant} | ({"megamoe": megamoe} if megamoe else {})
    return engines(checked_plan(hw, variant, recipe, **toggles))


def predict_row(row: Row, k: K) -> float:
    from dsv4ctl.predict.ladder import pd_point, single_point

    found = _engines(row.hw, row.variant, row.quant, row.recipe, row.megamoe)
    if "single" in found:
        p = single_point(found["single"], k, row.isl, row.osl, row.concurrency)
    else:
        p = pd_point(found["prefill"], found["decode"], k, row.isl, row.osl, row.concurrency)
    return float(getattr(p, row.metric))


def errors(k: K, selected: tuple[Row, ...]) -> list[float]:
    """Signed relative error (predicted / measured − 1) of each row."""
    return [predict_row(r, k) / r.measured - 1 for r in selected]


def median_abs(errs: list[float]) -> float:
    return statistics.median(abs(e) for e in errs) if errs else float("nan")
