"""`dsv4ctl bench` end to end against the included runtime on CPU (the tiny random model): GSM8K and MMLU
complete and score (near chance: the pipeline is the point), and a load sweep writes its plots."""

import json

import pytest

pytest.importorskip("torch")
pytest.importorskip("deepseek_recipe")
pytest.importorskip("matplotlib")

from test_bench_accuracy import write_mmlu  # noqa: E402
from typer.testing import CliRunner  # noqa: E402

from dsv4ctl.cli import app  # noqa: E402
from runtime_server import MODEL, start_server  # noqa: E402

@pytest.fixture(scope="module")
def server(tiny_dir):
    with start_server(tiny_dir, api_key=None, context_length=2048, max_running_requests=8) as srv:
        yield srv


def bench(*args):
    res = CliRunner().invoke(app, ["bench", *args, "--no-progress"])
    assert res.exit_code == 0, res.output
    return res


def summary(run) -> dict:
    return json.loads((run / "summary.json").read_text())


def test_gsm8k_and_mmlu_run_end_to_end(server, tmp_path):
    # GSM8K from the copy inside the package (offline, no --data-path); MMLU from a user's CSV tree
    bench("accuracy", "gsm8k", "--base-url", server.url, "--shots", "1", "--limit", "3",
          "--max-tokens", "8", "--out", str(tmp_path / "gsm8k"))
    write_mmlu(tmp_path / "mmlu")
    bench("accuracy", "mmlu", "--base-url", server.url, "--data-path", str(tmp_path / "mmlu"), "--max-tokens", "4",
          "--out", str(tmp_path / "mmlu-run"))
    for run, questions in ((tmp_path / "gsm8k", 3), (tmp_path / "mmlu-run", 6)):
        s = summary(run)
        assert s["num_questions"] == questions and 0.0 <= s["accuracy"] <= 1.0
        assert s["setup"]["model"] == MODEL
        assert len((run / "requests.jsonl").read_text().splitlines()) == questions


def test_load_sweep_writes_plots(server, tmp_path):
    out = tmp_path / "load"
    bench("load", "--base-url", server.url, "--sweep", "1,2", "-n", "3", "--input-len", "16", "--output-len", "4",
          "--warmup", "1", "--out", str(out))
    points = summary(out)
    assert (out / "report.html").is_file() and list((out / "plots").glob("*.png"))
    text = json.dumps(points)
    assert "ttft_ms" in text and "output_throughput" in text


def test_input_len_is_tokens_by_the_servers_usage(server, tiny_dir, tmp_path):
    out = tmp_path / "tokens"
    bench("load", "--base-url", server.url, "--tokenizer", str(tiny_dir), "--input-len", "256", "--output-len", "32",
          "-n", "3", "-c", "3", "--warmup", "0", "--out", str(out))
    recs = [json.loads(line) for line in (out / "requests.jsonl").read_text().splitlines()]
    assert len(recs) == 3 and all(abs(r["prompt_tokens"] - 256) <= 1 for r in recs), recs
    assert all(r["completion_tokens"] == 32 for r in recs)
    lengths = summary(out)["setup"]["lengths"]
    assert lengths["unit"] == "tokens" and lengths["input_len_asked_mean"] == 256 and lengths["context"] == 2048
