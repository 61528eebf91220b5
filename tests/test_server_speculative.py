"""The runtime's server decoding speculatively (tiny, CPU): acceptance in the response usage (completions
and chat, as SGLang reports it), in /metrics, and in `dsv4ctl bench load`'s summary and table."""

import json
import re

import httpx
import pytest

pytest.importorskip("torch")
pytest.importorskip("deepseek_recipe")

from typer.testing import CliRunner  # noqa: E402

from dsv4ctl.cli import app  # noqa: E402
from runtime_server import API_KEY, MODEL, start_server  # noqa: E402


@pytest.fixture(scope="module")
def server(tiny_dir):
    with start_server(tiny_dir, api_key=None, max_running_requests=4, speculative_algorithm="EAGLE",
                      speculative_num_steps=3, speculative_num_draft_tokens=4) as srv:
        yield srv


def test_usage_reports_verify_steps_and_accept_length(server):
    client = server.client()
    done = client.completions.create(model=MODEL, prompt=[5, 6, 7, 8], max_tokens=6, temperature=0)
    extra = done.usage.model_extra
    assert done.usage.completion_tokens == 6 and 1 <= extra["spec_verify_ct"] <= 5
    assert extra["spec_accept_length"] == pytest.approx(6 / extra["spec_verify_ct"], abs=1e-3)
    chat = client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}],
                                          max_tokens=5, temperature=0.7, seed=1)
    assert chat.usage.model_extra["spec_verify_ct"] >= 1 and "spec_accept_length" in chat.usage.model_extra
    chunks = client.completions.create(model=MODEL, prompt="abc", max_tokens=5, stream=True,
                                       stream_options={"include_usage": True})
    last = [c for c in chunks][-1]
    assert last.usage.model_extra["spec_verify_ct"] >= 1


def test_metrics_report_acceptance_per_position(server):
    server.client().completions.create(model=MODEL, prompt=[9, 9, 9], max_tokens=4, temperature=0)
    text = httpx.get(f"{server.url}/metrics", headers={"Authorization": f"Bearer {API_KEY}"}).text
    steps = float(re.search(r"^dsv4rt_spec_verify_steps_total (\S+)$", text, re.M).group(1))
    length = float(re.search(r"^dsv4rt_spec_accept_length (\S+)$", text, re.M).group(1))
    rates = re.findall(r'^dsv4rt_spec_acceptance_rate\{position="(\d)"\} (\S+)$', text, re.M)
    assert steps >= 3 and 1.0 <= length <= 4.0 and [p for p, _ in rates] == ["1", "2", "3"]
    assert all(0.0 <= float(r) <= 1.0 for _, r in rates)


def test_bench_load_summary_and_table_show_the_accept_length(server, tmp_path):
    out = tmp_path / "load"
    res = CliRunner().invoke(app, ["bench", "load", "--base-url", server.url, "-n", "3", "--input-len", "16",
                                   "--output-len", "4", "--warmup", "0", "--out", str(out), "--no-progress"])
    assert res.exit_code == 0, res.output
    summary = json.loads((out / "summary.json").read_text())
    assert 1.0 <= summary["accept_length"] <= 4.0
    header, row = (out / "summary.csv").read_text().splitlines()[:2]
    assert header.split(",")[-1] == "accept len" and float(row.split(",")[-1]) == pytest.approx(
        summary["accept_length"], abs=0.05)
    assert "accept len" in (out / "report.md").read_text()
