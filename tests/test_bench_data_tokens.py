"""Datasets inside the package, MMLU shots without a dev split, token-exact prompt lengths, the
context refusal, special tokens in GSM8K answers, `bench compare` pairing and refusing, plot labels."""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

sys.path.insert(0, str(Path(__file__).parent))
from mock_openai import MockConfig, ThreadedMock  # noqa: E402

from dsv4ctl.bench import tokens  # noqa: E402
from dsv4ctl.bench.accuracy import gsm8k, mmlu  # noqa: E402
from dsv4ctl.bench.accuracy.extract import gsm8k_extract, mmlu_extract  # noqa: E402
from dsv4ctl.bench.compare import compare  # noqa: E402
from dsv4ctl.bench.report.plots import throughput_axis  # noqa: E402
from dsv4ctl.cli import app  # noqa: E402
from dsv4ctl.errors import UserError  # noqa: E402


def cli(*args):
    return CliRunner().invoke(app, list(args))


@pytest.fixture(scope="module")
def tok_dir(tmp_path_factory):
    """The tiny checkpoint's tokenizer (one token per byte), without writing weights."""
    pytest.importorskip("tokenizers")
    from dsv4rt.checkpoint.tokenizer import write_tokenizer

    out = tmp_path_factory.mktemp("tok")
    write_tokenizer(out, 4096)
    return out


@pytest.mark.parametrize("text,want", [("<｜reserved_1547｜><｜reserved_12｜>", None),
                                       ("so 42 <｜reserved_1547｜>", "42"), ("7<|im_end|>", "7")])
def test_gsm8k_ignores_digits_in_special_tokens(text, want):
    assert gsm8k_extract(text) == want


def test_mmlu_ignores_letters_in_special_tokens():
    assert mmlu_extract("<｜Assistant｜> <｜A｜>") is None


def test_packaged_datasets_load_offline():
    g = gsm8k.load(None)
    assert (len(g.test), len(g.shots), g.shot_split) == (1319, 7473, "train")
    m = mmlu.load(None)
    assert len(m.test) == 14042 and len({r["subject"] for r in m.test}) == 57 and m.shot_split == "test"
    for p in g.files + m.files:
        assert p.name.endswith(".gz") and (p.parent / "LICENSE").is_file() and (p.parent / "SOURCE.md").is_file()


def test_mmlu_shots_from_the_test_split_never_the_question_asked():
    m = mmlu.load(None)
    items = mmlu.build_items(m.test[:20], m.shots, 5, chat=False)
    for row, item in zip(m.test, items):
        asked = item.prompt.rsplit("\n\n", 1)[-1]
        assert item.prompt.count("\nAnswer:") == 6 and item.prompt.count(row["question"]) == 1, asked


def test_mmlu_jsonl_folder_takes_dev_shots(tmp_path):
    row = {"question": "q{}?", "choices": ["a", "b", "c", "d"], "answer": 1, "subject": "algebra"}
    for split, n in (("test", 2), ("dev", 3)):
        (tmp_path / f"{split}.jsonl").write_text("".join(
            json.dumps({**row, "question": f"{split} {i}?"}) + "\n" for i in range(n)))
    data = mmlu.load(tmp_path)
    assert data.shot_split == "dev" and [r["answer"] for r in data.test] == ["B", "B"]
    assert "dev 0?" in mmlu.build_items(data.test, data.shots, 2, chat=False)[0].prompt


def test_accuracy_without_data_path_records_where_shots_came_from(tmp_path):
    srv = ThreadedMock(MockConfig(answer=lambda p: "Answer: A"))
    try:
        res = cli("bench", "accuracy", "mmlu", "--base-url", srv.base_url, "--limit", "4", "--shots", "2",
                  "--out", str(tmp_path), "--no-progress", "--format", "json")
    finally:
        srv.close()
    assert res.exit_code == 0, res.output
    setup = json.loads(res.output)["setup"]
    assert setup["shot_split"] == "test" and "never the one asked" in setup["shot_source"]
    assert setup["data_source"].startswith("packaged")


def test_token_text_is_exact(tok_dir):
    tok = tokens.load_tokenizer(tok_dir)
    pool, rng = tokens.id_pool(tok), random.Random(0)
    for n in (1, 7, 64, 256, 1000):
        text, built = tokens.token_text(tok, pool, rng, n)
        assert built == n and len(tok.encode(text)) == n


def test_load_refuses_before_sending_when_the_context_is_too_small(tmp_path, tok_dir):
    srv = ThreadedMock()
    plan = tmp_path / "plan.yaml"
    from dsv4ctl.resolve import resolve_plan
    from dsv4ctl.schema import dump_plan

    sets = [f"port={srv.port}", "context_length=512", f"model_path={tok_dir}"]
    dump_plan(resolve_plan("cpu", "tiny", "balanced", None, sets), plan)
    try:
        res = cli("bench", "load", "--plan", str(plan), "--input-len", "500", "--output-len", "32", "-n", "2",
                  "--out", str(tmp_path / "run"), "--no-progress")
        sent = srv.server.count
    finally:
        srv.close()
    assert isinstance(res.exception, UserError) and "context is 512 (from the plan)" in res.exception.message
    assert sent <= 1  # at most the template probe; no benchmark request


def load_summary(input_len, points):
    pts = [{"concurrency_point": c, "output_throughput": 10.0 * c, "ttft_ms": {"median": 5.0 * c}} for c in points]
    return {"kind": "load", "points": pts, **pts[-1], "setup": {"workload": "random", "input_len": input_len}}


def test_compare_pairs_sweep_points_and_refuses_unlike_workloads():
    result = compare(load_summary(256, (1, 4, 16)), load_summary(256, (4, 16)))
    assert result["points"] == ["c=4", "c=16"] and {r["point"] for r in result["rows"]} == {"c=4", "c=16"}
    with pytest.raises(UserError, match="input_len: 256 vs 1024"):
        compare(load_summary(256, (4,)), load_summary(1024, (4,)))
    assert compare(load_summary(256, (4,)), load_summary(1024, (4,)), allow_unlike=True)["unlike"]


def test_throughput_plot_is_not_per_gpu_without_gpus():
    assert throughput_axis([{"output_throughput": 5.0, "output_throughput_per_gpu": None}])[1].startswith("output")
    assert throughput_axis([{"output_throughput": 8.0, "output_throughput_per_gpu": 1.0}])[1] == "tokens/s per GPU"


@pytest.mark.slow
def test_the_wheel_ships_the_datasets(tmp_path):
    pytest.importorskip("hatchling")
    import subprocess
    import zipfile

    root = Path(__file__).resolve().parents[1]
    subprocess.run([sys.executable, "-m", "pip", "wheel", str(root), "--no-deps", "--no-build-isolation", "-q",
                    "-w", str(tmp_path)], check=True, capture_output=True)
    names = zipfile.ZipFile(next(tmp_path.glob("dsv4ctl-*.whl"))).namelist()
    for f in ("gsm8k/test.jsonl.gz", "gsm8k/train.jsonl.gz", "gsm8k/LICENSE", "gsm8k/SOURCE.md",
              "mmlu/test.jsonl.gz", "mmlu/LICENSE", "mmlu/SOURCE.md"):
        assert f"dsv4ctl/bench/data/{f}" in names
