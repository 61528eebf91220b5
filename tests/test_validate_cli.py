"""`dsv4ctl validate`: exit codes 0/1/2, table and json output, and the malformed-file corpus
(tests/malformed/): each file gives one clear error line naming the file and the field."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from dsv4ctl.cli import app
from dsv4ctl.errors import UserError
from dsv4ctl.schema import HardwareProfile, TunedOverlay, dump_plan, load_model, load_plan
from rule_plans import FP8X, M314, dd, dpa, mk

CORPUS = Path(__file__).with_name("malformed")
runner = CliRunner()


def _write(plan, tmp_path: Path, name: str = "plan.yaml") -> Path:
    path = tmp_path / name
    dump_plan(plan, path)
    return path


def _validate(path: Path, *args: str):
    return runner.invoke(app, ["validate", str(path), *args])


def test_clean_plan_exits_0(tmp_path):
    res = _validate(_write(mk(tp=4, gpn=4, **M314), tmp_path))
    assert res.exit_code == 0, res.output
    assert "validates clean" in res.output and "weights" in res.output


def test_warning_exits_0_or_1_with_strict(tmp_path):
    path = _write(mk(tp=4, gpn=4, reasoning_parser="deepseek-r1"), tmp_path)
    assert _validate(path).exit_code == 0
    res = _validate(path, "--strict")
    assert res.exit_code == 1 and "PARSER-NOT-V4" in res.output


def test_error_exits_2(tmp_path):
    plan = mk("h200", quant="fp8", recipe="balanced", gpn=4, env={**FP8X, **dd(128)}, **dpa(4), **M314,
              max_running_requests=256)
    res = _validate(_write(plan, tmp_path))
    assert res.exit_code == 2 and "DEEPEP-DISPATCH-OVERFLOW" in res.output


def test_hand_edit_is_rechecked(tmp_path):
    """A plan that was clean, edited by hand to a broken dispatch budget, now fails."""
    path = _write(mk("h200", quant="fp8", recipe="balanced", gpn=4, env={**FP8X, **dd(256)}, **dpa(4), **M314,
                     max_running_requests=256), tmp_path)
    assert _validate(path).exit_code == 0
    path.write_text(path.read_text().replace("'256'", "'64'"))
    assert _validate(path).exit_code == 2


def test_json_format(tmp_path):
    res = _validate(_write(mk("h200", "pro", "fp8", env=FP8X, tp=8), tmp_path), "--format", "json")
    data = json.loads(res.output)
    assert res.exit_code == 2
    assert "WEIGHTS-EXCEED-HBM" in [f["rule"] for f in data["findings"]]
    assert data["memory"]["single"]["weights_gib"] == pytest.approx(192.5, rel=0.03)


def test_bad_format_is_user_error(tmp_path):
    res = _validate(_write(mk(tp=4, gpn=4), tmp_path), "--format", "xml")
    assert isinstance(res.exception, UserError)


def _expectation(path: Path) -> tuple[str, str]:
    first = path.read_text(encoding="utf-8").splitlines()[0]
    kind, _, text = first.lstrip("# ").partition(": ")
    return kind, text.strip()


LOADERS = {"plans": load_plan, "profiles": lambda p: load_model(HardwareProfile, p),
           "overlays": lambda p: load_model(TunedOverlay, p)}
CASES = sorted(CORPUS.glob("*/*.yaml"))


@pytest.mark.parametrize("path", CASES, ids=[f"{p.parent.name}/{p.stem}" for p in CASES])
def test_malformed_file(path):
    kind, text = _expectation(path)
    if kind == "expect-rule":
        res = _validate(path)
        assert res.exit_code == 2 and text in res.output, res.output
        return
    with pytest.raises(UserError) as info:
        LOADERS[path.parent.name](path)
    line = info.value.one_line()
    assert "\n" not in line and text in line and path.name in line, line


def test_corpus_is_not_empty():
    assert {p.parent.name for p in CASES} == set(LOADERS) and len(CASES) >= 20


def test_real_entry_point_prints_one_line_and_exits_2():
    path = CORPUS / "plans" / "tp_not_int.yaml"
    res = subprocess.run([sys.executable, "-m", "dsv4ctl", "validate", str(path)], capture_output=True, text=True)
    assert res.returncode == 2
    assert "Traceback" not in res.stderr and len(res.stderr.strip().splitlines()) == 1, res.stderr
