"""Accuracy end to end against a mock that knows the answers; extractors; MMLU fixtures; resume; gates."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

sys.path.insert(0, str(Path(__file__).parent))
from mock_openai import MockConfig, ThreadedMock  # noqa: E402

from dsv4ctl.bench.accuracy.extract import gsm8k_extract, gsm8k_gold, mmlu_extract  # noqa: E402
from dsv4ctl.bench.loadgen import BenchFailed  # noqa: E402
from dsv4ctl.cli import app  # noqa: E402

GSM = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "gsm8k"
if not GSM.is_dir():
    GSM = Path("/work/shared/datasets/gsm8k")


def gsm_answers() -> dict[str, str]:
    rows = [json.loads(l) for l in (GSM / "test.jsonl").read_text().splitlines()[:40]]
    return {r["question"]: gsm8k_gold(r["answer"]) for r in rows}


def last_question(prompt: str) -> str:
    return prompt.rsplit("Question: ", 1)[-1].rsplit("\nAnswer:", 1)[0]


def write_mmlu(root: Path) -> dict[str, str]:
    """Two subjects, 5 dev + 3 test rows each, in the original CSV layout; returns question → letter."""
    gold = {}
    for subject in ("algebra", "world_history"):
        for split, n in (("dev", 5), ("test", 3)):
            (root / split).mkdir(parents=True, exist_ok=True)
            lines = []
            for i in range(n):
                q, ans = f"{subject} {split} question {i}?", "ABCD"[i % 4]
                lines.append(f'"{q}",one,two,three,four,{ans}')
                if split == "test":
                    gold[q] = ans
            (root / split / f"{subject}_{split}.csv").write_text("\n".join(lines) + "\n")
    return gold


def cli(*args):
    return CliRunner().invoke(app, list(args))


def test_gsm8k_known_answers_score_100(tmp_path):
    answers = gsm_answers()
    srv = ThreadedMock(MockConfig(answer=lambda p: f"Let me think. 2 + 2 = 4 so\n#### {answers.get(last_question(p), 0)}"))
    try:
        res = cli("bench", "accuracy", "gsm8k", "--base-url", srv.base_url, "--data-path", str(GSM),
                  "--limit", "20", "--shots", "3", "--out", str(tmp_path), "--no-progress", "--min-accuracy", "0.93")
    finally:
        srv.close()
    assert res.exit_code == 0, res.output
    s = json.loads((tmp_path / "summary.json").read_text())
    assert s["accuracy"] == 1.0 and s["num_questions"] == 20 and s["passed"] is True
    assert s["setup"]["shots"] == 3 and len(next(iter(s["setup"]["sha256"].values()))) == 64
    assert s["ttft_ms"]["median"] is not None and s["e2e_ms"]["p99"] is not None
    prompt = srv.server.bodies[-1]["prompt"]
    assert prompt.count("Question:") == 4 and "Natalia" in prompt  # shots come from the train split


def test_mmlu_chat_per_subject_and_gate(tmp_path):
    gold = write_mmlu(tmp_path / "mmlu")
    wrong = {"algebra test question 0?"}  # one wrong answer → 5/6

    def answer(p):
        q = p.rsplit("\n\n", 1)[-1].split("\n")[0]
        return "Answer: " + ("D" if q in wrong else gold.get(q, "A"))

    srv = ThreadedMock(MockConfig(answer=answer))
    try:
        res = cli("bench", "accuracy", "mmlu", "--base-url", srv.base_url, "--data-path", str(tmp_path / "mmlu"),
                  "--api", "chat", "--repeats", "2", "--out", str(tmp_path / "run"), "--no-progress",
                  "--min-accuracy", "0.9")
    finally:
        srv.close()
    assert isinstance(res.exception, BenchFailed) and res.exception.exit_code == 1  # gated: 0.833 < 0.9
    s = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert s["accuracy"] == pytest.approx(5 / 6) and s["per_subject"]["world_history"] == 1.0
    assert s["per_subject"]["algebra"] == pytest.approx(2 / 3) and s["repeats"] == 2
    assert srv.server.bodies[-1]["chat_template_kwargs"] == {"thinking": False}


def test_accuracy_resume_only_sends_the_rest(tmp_path):
    answers = gsm_answers()
    srv = ThreadedMock(MockConfig(answer=lambda p: f"#### {answers.get(last_question(p), 0)}", fail_every=3))
    args = ["bench", "accuracy", "gsm8k", "--base-url", srv.base_url, "--data-path", str(GSM), "--limit", "12",
            "--out", str(tmp_path), "--no-progress", "--concurrency", "1"]
    try:
        assert isinstance(cli(*args).exception, BenchFailed)  # a third of requests fail: over the error threshold
        srv.server.cfg.fail_every = 0
        before = srv.server.count
        assert cli(*args, "--resume").exit_code == 0
        resent = srv.server.count - before - 1  # minus the preflight request
    finally:
        srv.close()
    s = json.loads((tmp_path / "summary.json").read_text())
    assert s["accuracy"] == 1.0 and s["num_questions"] == 12 and s["error_rate"] == 0
    assert 0 < resent < 12


@pytest.mark.parametrize("text,want", [("so 5 + 3 = 8\n#### 1,234", "1234"), ("The answer is $18.", "18"),
                                       ("x = -3.50", "-3.50"), ("no number", None)])
def test_gsm8k_extractor(text, want):
    assert gsm8k_extract(text) == want


@pytest.mark.parametrize("text,want", [("Answer: C", "C"), (" B", "B"), ("The answer is (D)", "D"), ("none", None)])
def test_mmlu_extractor(text, want):
    assert mmlu_extract(text) == want


def test_missing_data_is_one_line_error(tmp_path):
    res = CliRunner().invoke(app, ["bench", "accuracy", "gsm8k", "--base-url", "http://127.0.0.1:9",
                                   "--model", "m", "--data-path", str(tmp_path / "nope.jsonl")])
    assert res.exit_code != 0 and "data file not found" in str(res.exception)
