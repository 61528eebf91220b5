"""`dsv4ctl predict`: the fixed interface, the calibration goals, coverage of the plan space and the
model's sanity properties (issue 23)."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from dsv4ctl.cli import app
from dsv4ctl.predict import Unservable, Workload, engines, load_constants, predict_plan, why_not
from dsv4ctl.predict.ladder import single_point
from dsv4ctl.predict.source import checked_plan

ROOT = Path(__file__).resolve().parents[1]
KEYS = {"concurrency", "ttft_ms", "tpot_ms", "output_tok_s_per_user", "total_tok_s_per_gpu", "bound"}


def cli(*args: str):
    return CliRunner().invoke(app, list(args))


def test_json_interface_one_object_per_concurrency():
    res = cli("predict", "--hw", "b200", "--variant", "flash", "--quant", "fp4", "--recipe", "balanced",
              "--isl", "8192", "--osl", "1024", "--concurrency", "1,64,256", "--format", "json")
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)
    assert [d["concurrency"] for d in data] == [1, 64, 256]
    for d in data:
        assert KEYS <= set(d)
        assert d["ttft_ms"] > 0 and d["tpot_ms"] > 0 and d["total_tok_s_per_gpu"] > 0
        assert d["output_tok_s_per_user"] == pytest.approx(1000 / d["tpot_ms"], rel=1e-2)
    assert data[2]["total_tok_s_per_gpu"] > data[0]["total_tok_s_per_gpu"]


def test_plan_file_gives_the_same_answer(tmp_path):
    path = tmp_path / "plan.yaml"
    assert cli("plan", "--hw", "h200", "--variant", "flash", "--quant", "fp8", "--recipe", "low-latency",
               "-o", str(path)).exit_code == 0
    a = json.loads(cli("predict", "--plan", str(path), "-c", "1,16", "-f", "json").stdout)
    b = json.loads(cli("predict", "--hw", "h200", "--variant", "flash", "--quant", "fp8", "--recipe", "low-latency",
                       "-c", "1,16", "-f", "json").stdout)
    assert a == b


def test_rich_table_fits_80_columns():
    res = subprocess.run([sys.executable, "-m", "dsv4ctl", "predict", "--hw", "b200", "--variant", "pro", "--recipe",
                          "pd-disagg", "-c", "1,64,256,4096"], capture_output=True, text=True, timeout=60,
                         env={**os.environ, "COLUMNS": "80", "PYTHONPATH": f"{ROOT}:{ROOT / 'runtime'}"})
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    assert "TTFT" in res.stdout and "limited by" in res.stdout
    assert max(len(line) for line in lines) <= 80


@pytest.mark.parametrize("args,where", [
    (["-c", "0"], "--concurrency"), (["-c", "a,b"], "--concurrency"), (["--isl", "0"], "--isl"),
    (["-f", "xml"], "--format"),
])
def test_bad_input_is_one_line_exit_2(args, where):
    res = subprocess.run([sys.executable, "-m", "dsv4ctl", "predict", "--hw", "b200", "--variant", "flash",
                          "--recipe", "balanced", *args], capture_output=True, text=True, timeout=60,
                         env={**os.environ, "PYTHONPATH": f"{ROOT}:{ROOT / 'runtime'}"})
    assert res.returncode == 2 and where in res.stderr and "Traceback" not in res.stderr


def test_missing_plan_options_name_the_fix():
    from dsv4ctl.errors import UserError

    res = cli("predict", "--variant", "flash")
    assert isinstance(res.exception, UserError) and "--plan" in res.exception.one_line()


def test_predict_does_not_import_torch():
    code = ("import sys; from dsv4ctl.cli import main\n"
            "try:\n    main(['predict','--hw','h200','--variant','pro','--recipe','balanced','-f','json'])\n"
            "except SystemExit: pass\nassert 'torch' not in sys.modules")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                         env={**os.environ, "PYTHONPATH": f"{ROOT}:{ROOT / 'runtime'}"})
    assert res.returncode == 0, res.stderr


def test_calibration_goals_hold_with_the_stored_constants():
    from dsv4ctl.predict.calibration import errors, median_abs, rows

    errs = errors(load_constants(), rows())
    assert len(errs) >= 40 and median_abs(errs) <= 0.15


def test_every_cookbook_cell_gets_a_prediction_or_a_reason():
    from dsv4ctl.errors import UserError
    from dsv4ctl.schema import Toggles
    from dsv4ctl.resolve import resolve_plan
    from dsv4ctl.space import points

    answered = reasons = 0
    wl = Workload(8192, 1024, (1, 64))
    for p in points():
        if p.toggles["mtp"] is False or p.toggles["nodes"] != 1 or p.toggles["megamoe"] == "w4a4":
            continue  # a slice of the space: every hw × variant × quant × recipe, both megamoe kernels
        try:
            plan = resolve_plan(p.hw, p.variant, p.recipe, Toggles(**p.toggles))
            pts = predict_plan(plan, wl)
            assert all(x.total_tok_s_per_gpu > 0 and x.tpot_ms > 0 for x in pts)
            answered += 1
        except (UserError, Unservable) as exc:
            assert str(exc).strip() and "\n" not in str(exc)
            reasons += 1
    assert answered > 50 and reasons > 0


def test_builtin_engine_gets_a_reason():
    plan = checked_plan("cpu", "tiny", "low-latency")
    assert "calibrated on SGLang" in why_not(plan) or "GPU" in why_not(plan)


def _engine(hw="h200", variant="flash", recipe="low-latency", **toggles):
    return engines(checked_plan(hw, variant, recipe, **toggles))["single"]


@pytest.mark.parametrize("cell", [("h200", "flash", "low-latency", "fp8"), ("b200", "pro", "max-throughput", "fp4"),
                                  ("b200", "flash", "balanced", "fp4")])
def test_more_hbm_bandwidth_never_slower_decode(cell):
    hw, variant, recipe, quant = cell
    e, k = _engine(hw, variant, recipe, quant=quant), load_constants()
    for c in (1, 16, 64, 256):
        base = single_point(e, k, 8192, 1024, c)
        for factor in (1.25, 2.0, 4.0):
            faster = dataclasses.replace(e, hw=e.hw.model_copy(update={"hbm_tbps": e.hw.hbm_tbps * factor}))
            p = single_point(faster, k, 8192, 1024, c)
            assert p.decode_step_ms <= base.decode_step_ms + 1e-9
            assert p.tpot_ms <= base.tpot_ms + 1e-9


@pytest.mark.parametrize("hw,variant,quant", [("h200", "flash", "fp8"), ("b200", "pro", "fp4"), ("b200", "flash", "fp4")])
def test_mtp_at_acceptance_one_never_faster(hw, variant, quant):
    k = load_constants()
    with_mtp = engines(checked_plan(hw, variant, "low-latency", quant=quant, mtp=True))["single"]
    without = engines(checked_plan(hw, variant, "low-latency", quant=quant, mtp=False))["single"]
    for c in (1, 8, 32, 128):
        a = single_point(with_mtp, k, 8192, 1024, c, accept=1.0)
        b = single_point(without, k, 8192, 1024, c)
        assert a.tpot_ms >= b.tpot_ms and a.total_tok_s_per_gpu <= b.total_tok_s_per_gpu * (1 + 1e-9)


@pytest.mark.parametrize("cell", [("b200", "flash", "max-throughput", "fp4"), ("h200", "pro", "balanced", "fp4"),
                                  ("h200", "flash", "low-latency", "fp8"), ("b200", "pro", "pd-disagg", "fp4")])
def test_doubling_concurrency_never_lowers_throughput_unless_the_bound_changes(cell):
    hw, variant, recipe, quant = cell
    plan = checked_plan(hw, variant, recipe, quant=quant)
    ladder = predict_plan(plan, Workload(8192, 1024, tuple(2**i for i in range(13))))
    for a, b in zip(ladder, ladder[1:]):
        if b.total_tok_s_per_gpu < a.total_tok_s_per_gpu * (1 - 1e-9):
            assert (b.bound, b.limited_by) != (a.bound, a.limited_by), (a, b)


def test_acceptance_override_and_defaults():
    from dsv4ctl.predict.mtp import accept_length

    k = load_constants()
    ll = _engine(quant="fp8")  # steps 3 / draft 4
    assert 2.7 <= accept_length(ll, k) <= 3.0
    assert accept_length(ll, k, 9.0) == 4.0 and accept_length(ll, k, 0.5) == 1.0
    bal = _engine(recipe="balanced", quant="fp8")  # steps 1 / draft 2
    assert 1.6 <= accept_length(bal, k) <= 1.9


def test_unservable_workloads_say_why():
    plan = checked_plan("h200", "pro", "low-latency", quant="fp4")
    with pytest.raises(Unservable, match="exceeds the context length"):
        predict_plan(plan, Workload(2_000_000, 1024, (1,)))
    tiny_pool = dataclasses.replace(engines(plan)["single"], kv_pool=1e6)
    with pytest.raises(Unservable, match="KV pool"):
        single_point(tiny_pool, load_constants(), 8192, 1024, 1)


def test_bench_report_shows_predicted_columns_when_the_plan_is_known(tmp_path):
    from dsv4ctl.bench.report.rows import table_rows
    from dsv4ctl.schema import dump_plan

    path = tmp_path / "plan.yaml"
    dump_plan(checked_plan("b200", "flash", "low-latency"), path)
    summary = {"points": [{"concurrency_point": 1, "output_throughput_per_gpu": 100.0, "tpot_ms": {"median": 3.0}},
                          {"concurrency_point": 16, "output_throughput_per_gpu": 500.0, "tpot_ms": {"median": 5.0}}],
               "setup": {"plan": str(path), "workload": "random", "input_len": 8192, "output_len": 1024}}
    head, rows = table_rows(summary)
    i, j = head.index("pred out tok/s/GPU"), head.index("pred TPOT ms")
    assert head[i - 1] == "out tok/s/GPU" and head[j - 1] == "TPOT p50 ms"
    assert all(float(r[i]) > 0 and float(r[j]) > 0 for r in rows)
    summary["setup"]["plan"] = {"run": str(tmp_path), "file": None}
    assert "pred TPOT ms" not in table_rows(summary)[0]


def test_plan_summary_carries_a_predicted_line():
    res = cli("plan", "--hw", "b200", "--variant", "flash", "--recipe", "balanced")
    assert res.exit_code == 0 and "predicted 8192/1024: c1 TPOT" in res.stdout and "tok/s/GPU" in res.stdout
    res = cli("plan", "--hw", "h200", "--variant", "pro", "--quant", "fp8", "--recipe", "balanced")
    assert "predicted: none (the KV pool" in res.stdout
