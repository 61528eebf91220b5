"""The search: the baseline first, then coarse-to-fine over the chosen tunables, within a budget.

Coarse: every combination of the knobs' coarse values when that fits in half the candidate budget,
else each knob's coarse values alone. Fine: from the best so far, each knob one ladder step either
way, repeated while the best improves. A candidate whose plan has an error finding is never
launched: it is written to rejected.jsonl and counted. A finished candidate (result.json) is read
back, never re-run, so `--resume` continues where a crash or Ctrl-C stopped."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import yaml

from dsv4ctl.errors import UserError
from dsv4ctl.schema.tunable import Tunable
from dsv4ctl.tune import measure, space
from dsv4ctl.tune.objective import Objective, Slo
from dsv4ctl.tune.plans import PlanSpec, checked_plan, errors
from dsv4ctl.tune.space import Candidate
from dsv4ctl.tune.tunedir import TuneDir


@dataclass
class Tune:
    """One tune's fixed inputs and running counts."""

    spec: PlanSpec
    knobs: list[Tunable]
    engine: Any  # engines.LaunchEngine | EndpointEngine (or a test's engine with the same `serve`)
    engine_name: str
    load: measure.LoadSpec
    slo: Slo
    objective: Objective
    td: TuneDir
    api: str = "completions"
    max_candidates: int = 12
    time_budget_s: float | None = None
    notify: Callable[[dict[str, Any]], None] = lambda result: None
    counts: dict[str, int] = field(default_factory=lambda: {"launched": 0, "resumed": 0, "rejected": 0,
                                                              "failed": 0})
    t0: float = field(default_factory=time.monotonic)
    base: dict[str, Any] = field(default_factory=dict)

    def out_of_budget(self) -> bool:
        spent = self.counts["launched"] + self.counts["resumed"]
        late = self.time_budget_s is not None and time.monotonic() - self.t0 > self.time_budget_s
        return spent >= self.max_candidates or late


def endpoint_of(tune: Tune, server):
    from dsv4ctl.bench.client import Endpoint

    return Endpoint(server.base_url, server.model, api=tune.api, ignore_eos=True, timeout_s=600.0)


def plan_yaml(plan) -> str:
    from dsv4ctl.schema import plan_to_data

    return yaml.safe_dump(plan_to_data(plan), sort_keys=False)


def evaluate(tune: Tune, cand: Candidate) -> dict[str, Any] | None:
    """The candidate's result: read back if finished, None if rejected, else launched and measured."""
    done = tune.td.result(cand.id)
    if done is not None:
        tune.counts["resumed"] += 1
        tune.notify(done)
        return done
    sets = space.sets_of(cand, tune.knobs)
    info = {"id": cand.id, "label": cand.label, "values": [list(v) for v in cand.values], "sets": sets}
    try:
        plan = checked_plan(tune.spec, sets)
        found = errors(plan)
    except UserError as exc:  # resolve itself refused the values (a structural impossibility)
        found = [exc.one_line()]
    if found:
        tune.counts["rejected"] += 1
        tune.td.reject({**info, "errors": found})
        return None
    result = {**info, **_run(tune, plan, tune.td.begin(cand.id, info, plan_yaml(plan)))}
    tune.td.finish(cand.id, result)
    tune.counts["launched"] += 1
    tune.counts["failed"] += result["status"] != "ok"
    tune.notify(result)
    return result


def _run(tune: Tune, plan, cdir) -> dict[str, Any]:
    from dsv4ctl.bench.loadgen import BenchFailed
    from dsv4ctl.tune.engines import CandidateFailed

    t0, points, error = time.monotonic(), [], None
    try:
        with tune.engine.serve(plan, cdir) as server:
            gpus = server.gpus
            points = measure.ladder(endpoint_of(tune, server), tune.load, tune.slo, cdir / "points", gpus)
    except (CandidateFailed, BenchFailed) as exc:
        error, gpus = str(exc), 0
    return {"status": "failed" if error else "ok", "error": error, "points": points, "gpus": gpus,
            "score": tune.objective.score(points), "wall_s": round(time.monotonic() - t0, 2)}


def cand_of(result: dict[str, Any]) -> Candidate:
    return Candidate(tuple((k, v) for k, v in result["values"]))


def best(results: list[dict[str, Any]]) -> dict[str, Any] | None:
    """Highest score; on a tie the candidate that changes fewer keys (the baseline wins ties)."""
    scored = [r for r in results if r and r.get("score") is not None]
    return max(scored, key=lambda r: (r["score"], -len(r["values"])), default=None)


def run(tune: Tune) -> list[dict[str, Any]]:
    """Baseline, coarse pass, then fine passes around the best until no gain or no budget."""
    from dsv4ctl.tune.space import base_values

    tune.base = base_values(checked_plan(tune.spec), tune.knobs, tune.engine_name)
    results: dict[Candidate, dict[str, Any] | None] = {}

    def try_all(cands: list[Candidate]) -> None:
        for c in cands:
            if c in results:
                continue
            if tune.out_of_budget():
                return
            results[c] = evaluate(tune, c)

    try_all([Candidate()])
    if tune.knobs:
        try_all(space.coarse(tune.knobs, tune.base, max(1, tune.max_candidates // 2)))
    while tune.knobs and not tune.out_of_budget():
        top = best(list(results.values()))
        if top is None:
            break
        nxt = [c for c in space.fine(cand_of(top), tune.knobs, tune.base) if c not in results]
        try_all(nxt)
        if not nxt or best(list(results.values())) is top:
            break
    return [r for r in results.values() if r is not None]
