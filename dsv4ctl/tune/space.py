"""Candidates: values for the chosen tunables, with their couplings, as the --set list of a plan.

A candidate holds only the knobs that differ from the baseline plan, so the baseline is the empty
candidate and two spellings of one plan are one candidate. Keys coupled to a moved knob are reset to
`null` so resolve derives them again from the new value; a knob declared `below` another is clipped
to it. Those two rules keep coupled keys consistent, so the rules judge the values, not a mismatch."""

from __future__ import annotations

import hashlib
import itertools
import json
import math
from dataclasses import dataclass
from typing import Any

from dsv4ctl.schema.tunable import Tunable


@dataclass(frozen=True)
class Candidate:
    values: tuple[tuple[str, Any], ...] = ()  # sorted (key, value); empty: the baseline

    @property
    def id(self) -> str:
        if not self.values:
            return "baseline"
        return "c-" + hashlib.sha1(json.dumps(self.values).encode()).hexdigest()[:10]

    @property
    def label(self) -> str:
        return " ".join(f"{k}={v}" for k, v in self.values) or "baseline"

    def as_dict(self) -> dict[str, Any]:
        return dict(self.values)


def base_values(plan, tunables: list[Tunable], engine: str) -> dict[str, Any]:
    """Each knob's value in the baseline plan (the engine's default where the plan leaves it unset)."""
    out = {}
    for t in tunables:
        value = getattr(plan.keys, t.key)
        if value is None and engine in t.engine_default:
            value = t.engine_default[engine]
            value = int(value) if t.kind == "int" else value
        out[t.key] = value
    return out


def make(values: dict[str, Any], base: dict[str, Any], tunables: list[Tunable]) -> Candidate:
    """The candidate for these knob values: clipped to `below`, baseline values dropped."""
    merged = {**base, **values}
    for t in tunables:
        cap = merged.get(t.below) if t.below else None
        if cap is not None and merged.get(t.key) is not None and merged[t.key] > cap:
            merged[t.key] = cap
    return Candidate(tuple(sorted((k, v) for k, v in merged.items() if v != base.get(k))))


def sets_of(cand: Candidate, tunables: list[Tunable]) -> list[str]:
    """The --set list: each moved knob, then `null` for the keys coupled to it (unless also moved)."""
    by_key = {t.key: t for t in tunables}
    moved = cand.as_dict()
    out = [f"{k}={json.dumps(v)}" for k, v in cand.values]
    resets = {c for k in moved for c in (by_key[k].couples if k in by_key else []) if c not in moved}
    return out + [f"{c}=null" for c in sorted(resets)]


def coarse(tunables: list[Tunable], base: dict[str, Any], limit: int) -> list[Candidate]:
    """The first pass: every combination of the knobs' coarse values when that fits in `limit`,
    else each knob's coarse values on its own (the others at the baseline), knobs taken in turn."""
    grids = [t.coarse() for t in tunables]
    if math.prod(len(g) for g in grids) <= limit:
        combos = [dict(zip([t.key for t in tunables], vals)) for vals in itertools.product(*grids)]
    else:  # round-robin over the knobs, so a small budget still moves each of them
        combos = [{t.key: v} for row in itertools.zip_longest(*[[(t, v) for v in g] for t, g in zip(tunables, grids)])
                  for t, v in (cell for cell in row if cell)]
    return _unique(make(c, base, tunables) for c in combos)


def fine(best: Candidate, tunables: list[Tunable], base: dict[str, Any]) -> list[Candidate]:
    """The next pass around `best`: each knob one ladder step either way (the others held)."""
    at = {**base, **best.as_dict()}
    combos = [{**best.as_dict(), t.key: v} for t in tunables if at.get(t.key) is not None
              for v in t.neighbours(at[t.key])]
    return _unique(make(c, base, tunables) for c in combos)


def _unique(cands) -> list[Candidate]:
    seen, out = set(), []
    for c in cands:
        if c not in seen:
            seen.add(c)
            out.append(c)
    return out
