"""The SLO a tune must meet and the objective it maximises.

An SLO is a latency limit per metric (ttft, tpot, itl, e2e) at a percentile P: a load point meets it
when at least P% of its requests (failed ones count as misses) are within every limit — the
nearest-rank P-th percentile is within the limit. Counting misses also gives the early stop: once
more than (100 − P)% of a point's requests have missed, the point cannot meet the SLO any more.

Objectives (higher is better), over the load points of a candidate that meet the SLO:
- `throughput`: output tokens/s per GPU (per process on CPU) at the best such point;
- `goodput`: requests/s whose every latency is within the SLO, at the best point;
- `per-user@C`: output tokens/s one user sees (1000 / median TPOT) at concurrency C.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from dsv4ctl.bench.metrics import tpot_ms
from dsv4ctl.errors import UserError
from dsv4ctl.schema.recipe import judge  # noqa: F401 (the noise verdict lives with the evidence it judges)

METRICS = ("ttft", "tpot", "itl", "e2e")
_UNITS = {"ms": 1.0, "s": 1000.0, "": 1.0}


@dataclass(frozen=True)
class Slo:
    limits_ms: dict[str, float] = field(default_factory=dict)
    percentile: float = 90.0

    def as_dict(self) -> dict[str, Any]:
        return {"limits_ms": self.limits_ms, "percentile": self.percentile}

    def text(self) -> str:
        parts = ",".join(f"{k}={v:g}ms" for k, v in self.limits_ms.items())
        return f"{parts or 'none'} at p{self.percentile:g}"


def parse_slo(text: str | None, percentile: float = 90.0) -> Slo:
    """'ttft=2s,tpot=50ms' (a bare number is milliseconds) at the given percentile."""
    if not 0 < percentile <= 100:
        raise UserError(f"percentile {percentile} is outside (0, 100]", where="--slo-percentile", fix="use e.g. 90")
    limits = {}
    for part in (text or "").split(","):
        if not part.strip():
            continue
        key, _, val = part.partition("=")
        m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*(ms|s|)\s*", val)
        if key.strip() not in METRICS or not m or float(m.group(1)) <= 0:
            raise UserError(f"bad --slo part {part!r}", where="--slo",
                            fix="write e.g. --slo ttft=2s,tpot=50ms (metrics: ttft, tpot, itl, e2e)")
        limits[key.strip()] = float(m.group(1)) * _UNITS[m.group(2)]
    return Slo(limits, percentile)


def _value(rec: dict[str, Any], metric: str) -> float | None:
    if metric == "tpot":
        return tpot_ms(rec)
    if metric == "itl":
        return max(rec.get("itl_ms") or [0.0])
    return rec.get(f"{metric}_ms")


def misses(rec: dict[str, Any], slo: Slo) -> set[str]:
    """The SLO metrics this request missed (all of them when it failed)."""
    if not rec.get("ok"):
        return set(slo.limits_ms)
    out = set()
    for metric, limit in slo.limits_ms.items():
        v = _value(rec, metric)
        if v is not None and v > limit:
            out.add(metric)
    return out


class Watch:
    """Counts misses per metric as records arrive; `hopeless` once the point cannot meet the SLO."""

    def __init__(self, slo: Slo, total: int):
        self.slo, self.total = slo, total
        self.missed = {m: 0 for m in slo.limits_ms}
        self.seen = 0

    def add(self, rec: dict[str, Any]) -> None:
        self.seen += 1
        for m in misses(rec, self.slo):
            self.missed[m] += 1

    @property
    def allowed(self) -> float:
        return self.total * (100.0 - self.slo.percentile) / 100.0

    @property
    def hopeless(self) -> bool:
        return any(n > self.allowed for n in self.missed.values())

    def met(self) -> bool:
        """After the whole point: every metric within its limit for ≥ P% of the planned requests."""
        return self.seen >= self.total and not self.hopeless


@dataclass(frozen=True)
class Objective:
    kind: str  # throughput | goodput | per-user
    at: int | None = None  # the concurrency for per-user

    @property
    def unit(self) -> str:
        return {"throughput": "tok/s/GPU", "goodput": "req/s", "per-user": "tok/s/user"}[self.kind]

    def text(self) -> str:
        return f"per-user@{self.at}" if self.kind == "per-user" else self.kind

    def point_value(self, point: dict[str, Any]) -> float | None:
        """The objective at one load point summary (None where the point does not count)."""
        if not point.get("slo_met"):
            return None
        if self.kind == "per-user":
            return point.get("per_user") if point.get("concurrency") == self.at else None
        return point.get("goodput" if self.kind == "goodput" else "per_gpu")

    def score(self, points: list[dict[str, Any]]) -> float | None:
        vals = [v for v in (self.point_value(p) for p in points) if v is not None]
        return max(vals) if vals else None


def parse_objective(text: str) -> Objective:
    if text in ("throughput", "goodput"):
        return Objective(text)
    m = re.fullmatch(r"per-user@([0-9]+)", text or "")
    if m and int(m.group(1)) > 0:
        return Objective("per-user", int(m.group(1)))
    raise UserError(f"unknown objective {text!r}", where="--objective",
                    fix="use throughput, goodput or per-user@C (e.g. per-user@8)")

