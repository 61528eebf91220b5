"""`dsv4ctl tune` against a mock engine whose speed is a known function of two knobs (tests/tune_mock.py):
it finds the known optimum within its budget, never launches a candidate with an error finding (those
are counted), and after a SIGKILL `--resume` re-runs no finished candidate."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
import tune_mock

from dsv4ctl.tune.plans import PlanSpec, checked_plan, errors


def _finished(out: Path) -> set[str]:
    return {p.parent.name for p in out.glob("candidates/*/result.json")}


def _kill_after(out: Path, n: int, timeout: float = 120.0) -> set[str]:
    """Run the mock tune in a child process and SIGKILL it once `n` candidates have finished."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    proc = subprocess.Popen([sys.executable, str(Path(__file__).with_name("tune_mock.py")), str(out)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + timeout
    try:
        while len(_finished(out)) < n:
            assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
            assert time.monotonic() < deadline, "the mock tune made no progress"
            time.sleep(0.05)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    return _finished(out)


@pytest.mark.slow
def test_tune_finds_the_known_optimum_never_launches_invalid_and_resumes_after_kill(tmp_path):
    out = tmp_path / "tune"
    before = _kill_after(out, 4)
    launches_before = [json.loads(l) for l in out.with_suffix(".launches").read_text().splitlines()]
    assert len(before) >= 4 and not (out / "final" / "final.json").exists()

    engine = tune_mock.MockEngine()
    tune, results, final = tune_mock.run(tune_mock.args(out, resume=True), engine)

    # resume: every candidate finished before the kill is read back, none is launched again
    relaunched = {d.name for d in engine.workdirs if d.parent.name == "candidates"} & before
    assert not relaunched and tune.counts["resumed"] == len(before)
    # the known optimum, within the budget (baseline included)
    assert dict(map(tuple, final["winner"]["values"])) == tune_mock.OPTIMUM
    assert len(results) <= 30 and tune.counts["launched"] + tune.counts["resumed"] <= 30
    assert final["verdict"]["beyond_noise"], final["verdict"]
    # never an invalid launch: every plan the engine got is free of error findings (both processes) ...
    assert all(not e["errors"] for e in launches_before)
    assert all(not errors(p) for p in engine.launched)
    # ... and the rejected ones were counted, each with the rule that stopped it, really failing the rules
    rejected = [json.loads(l) for l in (out / "rejected.jsonl").read_text().splitlines()]
    assert rejected and all(r["errors"] for r in rejected)
    spec = PlanSpec("h200", "flash", "balanced")
    assert all(errors(checked_plan(spec, r["sets"])) for r in rejected)
    # couplings: max_running_requests 1024 alone breaks the DeepEP budget; moved with its couples it passes
    assert errors(checked_plan(spec, ["max_running_requests=1024"]))
    assert not errors(checked_plan(spec, ["max_running_requests=1024", "cuda_graph_max_bs=null",
                                          "cuda_graph_bs=null", "deepep_dispatch_tokens_per_rank=null"]))

