"""The whole loop on CPU with the included runtime's tiny checkpoint: tune two knobs, propose, the
overlay validates, `plan` shows it as its own layer, and the reports are written.

The baseline is made slow on purpose (`chunked_prefill_size=1`: one prompt token per step), so the
tuned plan wins by far more than the noise of a busy CI machine and the guardrails let it through."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from dsv4ctl.cli import app
from dsv4ctl.launch.builtin import runtime_available

pytestmark = pytest.mark.skipif(not runtime_available(), reason="the included runtime is not importable")


def _ok(args: list[str]):
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0 and res.exception is None, (res.output, res.exception)
    return res


@pytest.mark.slow
def test_tune_propose_validate_and_plan_on_cpu(tmp_path, tiny_dir, monkeypatch):
    out, tuned = tmp_path / "tune", tmp_path / "tuned"
    _ok(["tune", "--hw", "cpu", "--variant", "tiny", "--recipe", "balanced", "--set", f"model_path={tiny_dir}",
         "--set", "chunked_prefill_size=1", "--knobs", "chunked_prefill_size,max_running_requests",
         "-n", "4", "--input-len", "16", "--output-len", "4", "-c", "4", "--slo", "e2e=300s", "--budget", "3",
         "--repeats", "2", "--engine-timeout", "600", "--no-live", "--out", str(out)])
    request = json.loads((out / "tune.json").read_text())
    assert request["knobs"] == ["chunked_prefill_size", "max_running_requests"]
    results = [json.loads(p.read_text()) for p in out.glob("candidates/*/result.json")]
    assert len(results) == 3 and {k for r in results for k, _ in r["values"]} == set(request["knobs"])
    assert all(list((out / "candidates" / r["id"]).glob("*-server/logs/single.log")) for r in results)
    assert all((out / "candidates" / r["id"] / "points" / "c4" / "requests.jsonl").is_file() for r in results)
    for name in ("report.md", "pareto.png", "winner-plan.yaml", "final/final.json"):
        assert (out / name).is_file(), name

    _ok(["propose", str(out), "--out-dir", str(tuned)])
    overlay = tuned / "cpu__tiny__bf16__balanced.yaml"
    assert overlay.is_file() and (out / "propose" / "report.md").is_file()
    assert (out / "propose" / "cpu__tiny__bf16__balanced.patch").read_text().startswith("diff --git")
    assert "--chunked-prefill-size" in (out / "propose" / "sglang-flags.diff").read_text()
    _ok(["validate", str(overlay)])

    monkeypatch.setenv("DSV4CTL_TUNED_DIR", str(tuned))
    plan = json.loads(_ok(["plan", "--hw", "cpu", "--variant", "tiny", "--recipe", "balanced", "-f", "json"]).stdout)
    layers = {v for k, v in plan["plan"]["provenance"].items() if k in ("chunked_prefill_size", "max_running_requests")}
    assert "tuned:cpu__tiny__bf16__balanced.yaml" in layers, plan["plan"]["provenance"]
