"""`bench load --sweep` writes summary + plots + HTML; report/compare work; plan discovery; resume."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from typer.testing import CliRunner

sys.path.insert(0, str(Path(__file__).parent))
from mock_openai import MockConfig, ThreadedMock  # noqa: E402

from dsv4ctl.bench import records  # noqa: E402
from dsv4ctl.bench.discover import from_source  # noqa: E402
from dsv4ctl.bench.workloads import random_prompts, sample_len  # noqa: E402
from dsv4ctl.cli import app  # noqa: E402


def test_sweep_summary_plots_report_compare_and_resume(tmp_path):
    srv = ThreadedMock(MockConfig(ttft_s=0.01, itl_s=0.002))
    base = ["bench", "load", "--base-url", srv.base_url, "--input-len", "8", "--output-len", "6",
            "--num-prompts", "16", "--no-progress", "--slo", "ttft=500,tpot=100", "--gpus", "2"]
    try:
        r = CliRunner().invoke(app, base + ["--sweep", "1,4", "--out", str(tmp_path / "a")])
        assert r.exit_code == 0, r.output
        r2 = CliRunner().invoke(app, base + ["--concurrency", "4", "--out", str(tmp_path / "a")])
        assert "--resume" in r2.exception.one_line()  # never mixes runs silently
        r3 = CliRunner().invoke(app, base + ["--concurrency", "4", "--out", str(tmp_path / "a"), "--resume"])
    finally:
        srv.close()
    s = json.loads((tmp_path / "a" / "summary.json").read_text())
    assert [p["concurrency_point"] for p in s.get("points", [s])] in ([1, 4], [4])
    for key in ("ttft_ms", "itl_ms", "tpot_ms", "e2e_ms"):
        assert set(s[key]) >= {"mean", "median", "p90", "p99"}
    assert s["request_throughput"] > 0 and s["error_rate"] == 0 and s["goodput"] > 0
    for f in ("summary.csv", "report.md", "report.html", "plots/latency_vs_throughput.png",
              "plots/per_gpu_vs_per_user.png", "plots/distributions.png", "setup.json"):
        assert (tmp_path / "a" / f).is_file(), f
    assert r3.exit_code == 0, r3.output
    cmp = CliRunner().invoke(app, ["bench", "compare", str(tmp_path / "a"), str(tmp_path / "a")])
    assert cmp.exit_code == 0 and "request_throughput" in cmp.output


def test_plan_and_run_dir_discovery(tmp_path):
    from dsv4ctl.resolve import resolve_plan
    from dsv4ctl.schema import dump_plan

    plan = tmp_path / "plan.yaml"
    dump_plan(resolve_plan("h200", "flash", "balanced", None,
                           ["port=31000", "served_model_name=dsv4", "model_path=/m", "context_length=4096"]), plan)
    assert from_source(plan) == {"base_url": "http://127.0.0.1:31000", "model": "dsv4", "gpus": 8, "plan": str(plan),
                                 "model_path": "/m", "context_length": 4096}
    (tmp_path / "run").mkdir()
    manifest = {"base_url": "http://h:1", "model": "m", "gpus": 4, "engine": "builtin", "hardware": "cpu",
                "versions": {"torch": "2.13.0"}}
    (tmp_path / "run" / "manifest.json").write_text(json.dumps(manifest))
    (tmp_path / "run" / "plan.yaml").write_text("hardware: cpu\n")
    found = from_source(tmp_path / "run")
    assert found["gpus"] == 4 and found["model"] == "m"
    # the result records which deployment it measured: the run's plan file, engine and versions
    assert found["plan"]["file"] == str(tmp_path / "run" / "plan.yaml")
    assert found["plan"]["engine"] == "builtin" and found["plan"]["versions"] == {"torch": "2.13.0"}


def test_range_ratio_styles():
    import random

    rng = random.Random(0)
    centered = [sample_len(rng, 100, 0.5, "centered") for _ in range(2000)]
    sglang = [sample_len(rng, 100, 0.5, "sglang") for _ in range(2000)]
    assert min(centered) >= 50 and max(centered) <= 150 and abs(sum(centered) / 2000 - 100) < 3
    assert min(sglang) >= 50 and max(sglang) <= 100 and abs(sum(sglang) / 2000 - 75) < 3
    assert len({p.text.split()[0] for p in random_prompts(10, 5, 5)}) == 10  # no shared prefix


def test_torn_last_line_is_skipped(tmp_path):
    (tmp_path / "requests.jsonl").write_text('{"index": 0, "ok": true}\n{"index": 1, "o')
    assert [r["index"] for r in records.read_records(tmp_path)] == [0]
