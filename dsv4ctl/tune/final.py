"""The last step of a tune: baseline and winner measured again side by side, and the accuracy gate.

Each side gets its own server, started once: its load ladder is measured `repeats` times (the noise
estimate of `objective.judge`), then a GSM8K subset runs on that same server. The gate passes when
the winner's accuracy is within the tolerance of the baseline's. Each side is written when done
(side.json), final.json last, so `--resume` repeats neither."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dsv4ctl.bench.loadgen import BenchFailed
from dsv4ctl.bench.records import read_json, write_json
from dsv4ctl.errors import UserError
from dsv4ctl.tune import measure, space
from dsv4ctl.tune.engines import CandidateFailed
from dsv4ctl.tune.objective import judge
from dsv4ctl.tune.plans import checked_plan
from dsv4ctl.tune.space import Candidate
from dsv4ctl.tune.tunedir import FINAL


@dataclass
class Gate:
    """The GSM8K subset: data directory (test.jsonl, train.jsonl), size, shots, max tokens, tolerance."""

    data: Path
    n: int = 50
    shots: int = 5
    max_tokens: int = 256
    tolerance: float = 0.05  # absolute accuracy the winner may lose

    def as_dict(self) -> dict[str, Any]:
        return {"data": str(self.data), "n": self.n, "shots": self.shots, "max_tokens": self.max_tokens,
                "tolerance": self.tolerance}


def accuracy(ep, gate: Gate, out: Path) -> dict[str, Any]:
    """GSM8K on `gate.n` questions through bench's accuracy runner; the summary's headline numbers."""
    from dsv4ctl.bench.accuracy import gsm8k, runner
    from dsv4ctl.bench.service import run_async

    data = gsm8k.load(gate.data)
    items = gsm8k.build_items(data.test[: gate.n], data.shots, gate.shots, chat=ep.api == "chat")
    spec = runner.AccRun("gsm8k", items, gate.max_tokens, concurrency=min(16, gate.n),
                         stop=gsm8k.STOP if ep.api == "completions" else None)
    greedy = type(ep)(**{**ep.__dict__, "ignore_eos": False, "temperature": 0.0})
    run_async(runner.run(greedy, spec, out))
    s = runner.summarize("gsm8k", list(runner.rec_io.read_records(out)), gate.as_dict())
    write_json(out / "summary.json", s.model_dump())
    return {"accuracy": s.accuracy, "stderr": s.stderr, "n": s.num_questions, "invalid_rate": s.invalid_rate}


def _side(tune, cand: Candidate, out: Path, repeats: int, gate: Gate | None) -> dict[str, Any]:
    from dsv4ctl.tune.search import endpoint_of

    done = out / "side.json"
    if done.exists():
        return read_json(done)
    sets = space.sets_of(cand, tune.knobs)
    plan = checked_plan(tune.spec, sets)
    reps = []
    shutil.rmtree(out, ignore_errors=True)  # a side cut short by a crash starts over
    try:
        with tune.engine.serve(plan, out) as server:
            ep = endpoint_of(tune, server)
            for k in range(repeats):
                pts = measure.ladder(ep, tune.load, tune.slo, out / f"r{k}", server.gpus)
                reps.append({"points": pts, "score": tune.objective.score(pts)})
            acc = accuracy(ep, gate, out / "gsm8k") if gate else None
    except (CandidateFailed, BenchFailed) as exc:
        raise UserError(f"the final comparison failed for {cand.label}: {exc}", where=str(out),
                        fix="see the server log there, then run the same command with --resume") from None
    side = {"id": cand.id, "values": [list(v) for v in cand.values], "sets": sets, "repeats": reps,
            "scores": [r["score"] for r in reps], "accuracy": acc, "gpus": server.gpus}
    write_json(done, side)
    return side


def compare(tune, winner: Candidate, repeats: int = 2, gate: Gate | None = None) -> dict[str, Any]:
    """Baseline vs winner (final.json): repeats, noise verdict, accuracy gate."""
    fdir = tune.td.path / "final"
    if (fdir / FINAL).exists():
        old = read_json(fdir / FINAL)
        if old.get("winner", {}).get("id") == winner.id:
            return old
    base = _side(tune, Candidate(), fdir / "baseline", repeats, gate)
    tuned = _side(tune, winner, fdir / winner.id, repeats, gate) if winner.values else base
    verdict = judge(base["scores"], tuned["scores"])
    acc = None
    if gate:
        drop = base["accuracy"]["accuracy"] - tuned["accuracy"]["accuracy"]
        acc = {"baseline": base["accuracy"], "tuned": tuned["accuracy"], "drop": drop,
               "tolerance": gate.tolerance, "passed": drop <= gate.tolerance}
    final = {"winner": {"id": winner.id, "label": winner.label, "values": [list(v) for v in winner.values],
                        "sets": tuned["sets"]},
             "baseline": base, "tuned": tuned, "verdict": verdict, "accuracy": acc,
             "objective": tune.objective.text(), "unit": tune.objective.unit, "slo": tune.slo.as_dict()}
    write_json(fdir / FINAL, final)
    return final
