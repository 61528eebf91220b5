"""`bench` refuses, in one line and with exit 2, what would run nothing, write nowhere, resume
nothing or mix two workloads; plan files and manifests it cannot trust are one line too."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

sys.path.insert(0, str(Path(__file__).parent))
from mock_openai import MockConfig, ThreadedMock  # noqa: E402

from dsv4ctl.cli import app  # noqa: E402
from dsv4ctl.errors import UserError  # noqa: E402

BASE = ["bench", "load", "--input-len", "4", "--output-len", "3", "--no-progress", "--model", "mock-model"]


def one_line_exit_2(args):
    """The command stops with a UserError: `dsv4ctl` prints it as one line and exits 2 (cli.main);
    typer's own usage errors exit 2 directly."""
    r = CliRunner().invoke(app, args)
    if r.exit_code == 2 and r.exception is None or isinstance(r.exception, SystemExit):
        assert r.exit_code == 2, r.output
        return r
    assert isinstance(r.exception, UserError) and r.exception.exit_code == 2, (r.exit_code, r.output, r.exception)
    assert "\n" not in r.exception.one_line()
    return r


@pytest.fixture(scope="module")
def mock():
    srv = ThreadedMock(MockConfig(ttft_s=0.001, itl_s=0.001))
    yield srv
    srv.close()


@pytest.mark.parametrize("extra", [
    ["-n", "0"], ["-n", "-5"], ["-c", "0"], ["--input-len", "0"], ["--output-len", "-1"], ["--request-rate", "0"],
    ["--warmup", "-1"], ["--timeout", "0"], ["--range-ratio", "1.5"], ["--max-error-rate", "-0.1"],
    ["--sweep", "1,0,4"], ["--gpus", "0"], ["--prefix-groups", "0"], ["--extra-body", "[1]"],
    ["--slo", "ttft=abc"], ["--slo", "ttft=-5"], ["--percentiles", "abc"], ["--percentiles", "150"],
])
def test_load_options_that_would_run_nothing_exit_2(tmp_path, extra):
    one_line_exit_2([*BASE, "--base-url", "http://127.0.0.1:9", "--out", str(tmp_path / "o"), *extra])
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("extra", [["--repeats", "0"], ["-c", "0"], ["--limit", "0"], ["--max-tokens", "0"],
                                   ["--shots", "-1"], ["--min-accuracy", "2"]])
def test_accuracy_options_that_would_run_nothing_exit_2(tmp_path, extra):
    one_line_exit_2(["bench", "accuracy", "gsm8k", "--base-url", "http://127.0.0.1:9", "--model", "m",
                     "--out", str(tmp_path / "o"), *extra])


def test_resume_of_a_new_directory_is_one_line(tmp_path):
    r = one_line_exit_2([*BASE, "--base-url", "http://127.0.0.1:9", "--out", str(tmp_path / "new"), "--resume"])
    assert "nothing to resume" in r.exception.one_line()


@pytest.mark.parametrize("out", ["/proc/bench", "/dev/null/x"])
def test_unwritable_out_is_one_line(mock, out):
    r = one_line_exit_2([*BASE, "--base-url", mock.base_url, "-n", "2", "--out", out])
    assert "cannot write the run directory" in r.exception.one_line()


def test_resume_with_another_workload_is_refused_unless_forced(mock, tmp_path):
    args = [*BASE, "--base-url", mock.base_url, "--out", str(tmp_path / "a"), "--warmup", "0"]
    assert CliRunner().invoke(app, [*args, "-n", "4"]).exit_code == 0
    r = one_line_exit_2([*args, "--input-len", "9", "-n", "6", "--resume"])
    assert "different workload" in r.exception.one_line() and "num_prompts 4 -> 6" in r.exception.one_line()
    assert len((tmp_path / "a" / "requests.jsonl").read_text().splitlines()) == 4  # nothing mixed in
    r = CliRunner().invoke(app, [*args, "-n", "6", "--resume", "--force"])
    assert r.exit_code == 0, r.output
    setup = json.loads((tmp_path / "a" / "setup.json").read_text())
    assert setup["forced_resume"] == [{"num_prompts": [4, 6]}]
    r = CliRunner().invoke(app, [*args, "-n", "6", "--resume"])  # the same options again: allowed
    assert r.exit_code == 0, r.output


@pytest.mark.parametrize("text", [
    "keys: [unclosed\n", "a: !!python/object/apply:os.system ['true']\n", "- a\n- b\n", "just text\n",
    "[" * 10000 + "\n", "keys:\n  port: 70000\n",
])
def test_bench_validates_the_plan_file(tmp_path, text):
    plan = tmp_path / "plan.yaml"
    plan.write_text(text)
    r = one_line_exit_2([*BASE, "--plan", str(plan), "--out", str(tmp_path / "o")])
    assert str(plan) in r.exception.one_line()


@pytest.mark.parametrize("text", ["{not json", "[1, 2]", '{"model": "m"}', "\x00\xff"])
def test_bench_refuses_a_corrupt_manifest(tmp_path, text):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "manifest.json").write_text(text, encoding="latin-1")
    r = one_line_exit_2([*BASE, "--plan", str(tmp_path / "run"), "--out", str(tmp_path / "o")])
    assert "manifest" in r.exception.one_line()


@pytest.mark.parametrize("cmd", ["report", "compare"])
@pytest.mark.parametrize("text", ["[1", "[1, 2]", "\xff\xfe"])
def test_report_and_compare_refuse_a_corrupt_summary(tmp_path, cmd, text):
    (tmp_path / "summary.json").write_text(text, encoding="latin-1")
    args = ["bench", cmd, str(tmp_path)] + ([str(tmp_path)] if cmd == "compare" else [])
    r = one_line_exit_2(args)
    assert "summary.json is corrupt" in r.exception.one_line()
