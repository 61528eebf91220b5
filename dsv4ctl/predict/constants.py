"""The model's efficiency constants: constants.yaml (fitted and fixed, each with its source) as a
flat, hashable `K` the equations read. Data in YAML, logic in code."""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from functools import lru_cache
from pathlib import Path

from pydantic import Field

from dsv4ctl.schema.base import Strict

CONSTANTS_FILE = Path(__file__).with_name("constants.yaml")


class Constant(Strict):
    value: float
    lo: float | None = None
    hi: float | None = None
    unit: str
    meaning: str = ""
    source: str


class ConstantsFile(Strict):
    fitted: dict[str, Constant]
    fixed: dict[str, Constant] = Field(default_factory=dict)


@dataclass(frozen=True)
class K:
    """Every constant by name (seconds/bytes are converted where the equations use them)."""

    hbm_eff: float
    gemm_eff: float
    attn_eff: float
    step_us: float
    layer_us: float
    collective_us: float
    link_eff: float
    eager_factor: float
    accept_per_token: float
    default_chunk: float

    def with_values(self, **values: float) -> "K":
        return replace(self, **values)


FITTED = ("hbm_eff", "gemm_eff", "step_us", "layer_us")


def load_file(path: Path = CONSTANTS_FILE) -> ConstantsFile:
    from dsv4ctl.schema.io import load_model

    return load_model(ConstantsFile, path)


@lru_cache(maxsize=4)
def load_constants(path: Path = CONSTANTS_FILE) -> K:
    """The constants as `K`; a missing or extra name is a one-line error naming the file."""
    from dsv4ctl.errors import UserError

    data = load_file(path)
    merged = {**{n: c.value for n, c in data.fitted.items()}, **{n: c.value for n, c in data.fixed.items()}}
    names = {f.name for f in fields(K)}
    if set(merged) != names or set(data.fitted) != set(FITTED):
        missing, extra = sorted(names - set(merged)), sorted(set(merged) - names)
        raise UserError(f"constants differ from the model's (missing {missing}, unknown {extra})",
                        where=str(path), fix="keep exactly the names docs/predict.md lists")
    return K(**merged)


def bounds(path: Path = CONSTANTS_FILE) -> dict[str, tuple[float, float]]:
    data = load_file(path)
    return {n: (c.lo if c.lo is not None else 0.0, c.hi if c.hi is not None else c.value * 10)
            for n, c in data.fitted.items()}
