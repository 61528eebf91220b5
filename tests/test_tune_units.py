"""Tune's pieces without a server: tunables and couplings, SLO parsing and early stop, the noise
verdict, and each overlay guardrail as one line with exit code 2."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tune_overlays import overlay, write
from typer.testing import CliRunner

from dsv4ctl.cli import app
from dsv4ctl.errors import UserError
from dsv4ctl.tune import space, tunables
from dsv4ctl.tune.objective import Watch, judge, parse_objective, parse_slo
from dsv4ctl.tune.plans import PlanSpec, checked_plan

GSM = next((p for p in (Path(__file__).resolve().parents[2] / "shared" / "datasets" / "gsm8k",
                         Path("/work/shared/datasets/gsm8k")) if (p / "test.jsonl").is_file()), Path("/nonexistent"))
GATE = ["--gsm8k", str(GSM), "--gsm8k-n", "3", "--gsm8k-shots", "1", "--gsm8k-max-tokens", "8"] \
    if (GSM / "test.jsonl").is_file() else []
CELL = {"hw": "h200", "variant": "flash", "quant": "fp8", "recipe": "balanced"}


def test_ladders_coarse_and_fine_come_from_the_declared_range():
    mrr = tunables.all_tunables()["max_running_requests"]
    assert mrr.ladder() == [4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096]
    assert mrr.coarse() == [4, 16, 64, 256, 1024, 4096] and mrr.neighbours(64) == [32, 128]
    assert tunables.all_tunables()["mem_fraction_static"].ladder()[:3] == [0.7, 0.74, 0.78]


def test_knobs_the_engine_ignores_are_not_searched():
    cpu = checked_plan(PlanSpec("cpu", "tiny", "balanced"))
    assert [t.key for t in tunables.choose(cpu, "builtin", None)] == ["max_running_requests", "chunked_prefill_size"]
    with pytest.raises(UserError, match="no effect on the cpu profile"):
        tunables.choose(cpu, "builtin", ["mem_fraction_static"])
    h200 = checked_plan(PlanSpec("h200", "flash", "balanced"))
    with pytest.raises(UserError, match="needs a restart"):
        tunables.choose(h200, "sglang", ["max_running_requests"], restart_ok=False)
    assert tunables.choose(h200, "sglang", None, restart_ok=False) == []


def test_coupled_keys_are_reset_and_graphs_clipped_to_the_request_cap():
    knobs = [tunables.all_tunables()[k] for k in ("max_running_requests", "cuda_graph_max_bs")]
    base = {"max_running_requests": 128, "cuda_graph_max_bs": 128}
    cand = space.make({"max_running_requests": 64, "cuda_graph_max_bs": 256}, base, knobs)
    assert cand.as_dict() == {"max_running_requests": 64, "cuda_graph_max_bs": 64}
    sets = space.sets_of(cand, knobs)
    assert "cuda_graph_bs=null" in sets and "deepep_dispatch_tokens_per_rank=null" in sets
    assert space.make(base, base, knobs).id == "baseline"


def test_slo_units_percentile_and_early_stop():
    slo = parse_slo("ttft=2s,tpot=50ms,e2e=900", 90)
    assert slo.limits_ms == {"ttft": 2000.0, "tpot": 50.0, "e2e": 900.0}
    for bad in ("ttft=fast", "speed=1s", "tpot=-5ms"):
        with pytest.raises(UserError, match="--slo"):
            parse_slo(bad)
    w = Watch(parse_slo("ttft=100ms", 90), total=20)  # 10% of 20 = 2 misses allowed
    for ttft in (50, 500, 500):
        w.add({"ok": True, "ttft_ms": ttft, "e2e_ms": ttft})
        assert w.hopeless == (ttft == 500 and w.missed["ttft"] > 2)
    w.add({"ok": False})
    assert w.hopeless and not w.met()
    assert parse_objective("per-user@8").at == 8
    with pytest.raises(UserError, match="unknown objective"):
        parse_objective("fastest")


def test_noise_verdict_needs_repeats_and_a_gain_beyond_the_spread():
    assert judge([10, 10.2], [12, 12.1])["beyond_noise"]
    assert not judge([10, 12], [11.5, 13])["beyond_noise"]  # worst tuned 11.5 < best baseline 12
    assert not judge([10], [20])["beyond_noise"]  # one repeat: noise unknown
    assert judge([None, None], [5, 5.1])["beyond_noise"]  # the baseline never met the SLO


@pytest.mark.parametrize("data, message", [
    (overlay(CELL, {"tp": 4}), "'tp' is not a tunable key"),
    ({**overlay(CELL, {"max_running_requests": 64}), "evidence": None}, "has no evidence"),
    (overlay(CELL, {"max_running_requests": 64}, base_scores=(10, 12), tuned_scores=(11, 12.5)), "beyond noise"),
    (overlay(CELL, {"max_running_requests": 64}, baseline={}), "no baseline value"),
    (overlay(CELL, {"max_running_requests": 4096}), "breaks a rule (DEEPEP-DISPATCH-OVERFLOW"),
    ({**overlay(CELL, {"max_running_requests": 64}), "env": {"X": "1"}}, "not tunable"),
    (overlay({"hw": "h200", "recipe": "balanced"}, {"max_running_requests": 64}), "when.variant"),
])
def test_each_guardrail_is_one_line_and_exit_2(tmp_path, data, message):
    path = write(tmp_path / "o.yaml", data)
    res = CliRunner().invoke(app, ["validate", str(path)])
    assert isinstance(res.exception, UserError) and res.exception.exit_code == 2, res.output
    line = res.exception.one_line()
    assert message in line and "o.yaml" in line and "\n" not in line, line


def test_a_good_overlay_validates_and_applies_as_its_own_layer(tmp_path, monkeypatch):
    path = write(tmp_path / "h200__flash__fp8__balanced.yaml", overlay(CELL, {"max_running_requests": 64},
                                                                      {"max_running_requests": 128}))
    assert CliRunner().invoke(app, ["validate", str(path)]).exit_code == 0
    monkeypatch.setenv("DSV4CTL_TUNED_DIR", str(tmp_path))
    res = CliRunner().invoke(app, ["explain", "max_running_requests", "--hw", "h200", "--variant", "flash"])
    assert "tuned:h200__flash__fp8__balanced.yaml" in res.output and "evidence" in res.output, res.output
    bad = write(tmp_path / "zz.yaml", overlay(CELL, {"tp": 4}))  # a bad overlay on disk stops every plan
    res = CliRunner().invoke(app, ["plan", "--hw", "h200"])
    assert isinstance(res.exception, UserError) and "zz.yaml" in res.exception.one_line()
    bad.unlink()


def _tune(tmp_path, *extra):
    return CliRunner().invoke(app, ["tune", "--hw", "h200", "--variant", "flash", "--out", str(tmp_path / "t"),
                                    "--no-live", *extra])


@pytest.mark.parametrize("extra, message", [
    (["--objective", "per-user@8", "-c", "1,4"], "needs 8 in the ladder"),
    (["--knobs", "spec_steps", "--mtp"], "accuracy gate needs GSM8K"),
    (["--knobs", "tp"], "'tp' is not a tunable key"),
    (["--slo", "ttft=soon"], "bad --slo part"),
    (["--set", "max_running_requests=4096"], "baseline plan fails validation"),
])
def test_bad_tune_input_is_one_line_before_anything_starts(tmp_path, extra, message):
    res = _tune(tmp_path, *extra)
    assert isinstance(res.exception, UserError) and message in res.exception.one_line(), (res.output, res.exception)
    assert not (tmp_path / "t" / "candidates").exists()


def test_base_url_tunes_only_the_ladder_and_propose_refuses_a_baseline_win(tmp_path):
    from mock_openai import MockConfig, ThreadedMock

    srv = ThreadedMock(MockConfig(ttft_s=0.005, itl_s=0.002))
    try:
        args = ["--base-url", srv.base_url, "-n", "4", "--input-len", "8", "--output-len", "4", "-c", "1,2",
                "--slo", "ttft=5s", *GATE, "--format", "json"]
        res = _tune(tmp_path, *args)
        assert res.exit_code == 0, (res.output, res.exception)
        again = _tune(tmp_path, *args[:-2], "-c", "1,4")
        assert "pass --resume" in again.exception.one_line()  # never mixes two tunes silently
        again = _tune(tmp_path, *args[:-2], "-c", "1,4", "--resume")  # a different ladder is another tune
        assert "--resume with different load" in again.exception.one_line()
    finally:
        srv.close()
    data = json.loads(res.output)
    assert [r["id"] for r in data["results"]] == ["baseline"] and data["counts"]["launched"] == 1
    assert len(data["results"][0]["points"]) == 2 and data["final"]["winner"]["id"] == "baseline"
    if GATE:  # the GSM8K subset ran on the same server, greedy, scored by bench's extractor
        acc = data["final"]["accuracy"]
        assert acc["baseline"]["n"] == 3 and acc["passed"] and acc["drop"] == 0.0
    res = CliRunner().invoke(app, ["propose", str(tmp_path / "t"), "--out-dir", str(tmp_path / "o")])
    assert "baseline won" in res.exception.one_line() and not (tmp_path / "o").exists()


def test_tune_input_len_counts_tokens_of_the_served_checkpoint(tiny_dir):
    """Like `bench load`: with the checkpoint's tokenizer each prompt is --input-len tokens (words were
    ~1.3-2x as many tokens, so the tune measured a heavier workload than it reported)."""
    from dsv4ctl.bench.client import Endpoint
    from dsv4ctl.bench.tokens import load_tokenizer
    from dsv4ctl.tune import measure

    wl = {"workload": "random", "num_prompts": 4, "input_len": 48, "output_len": 4, "seed": 3}
    load = measure.LoadSpec(wl, [1], tokenizer=str(tiny_dir))
    ep = Endpoint("http://127.0.0.1:9", "m", api="completions")  # nothing listens: no template overhead
    tok = load_tokenizer(tiny_dir)
    assert [len(tok.encode(p.text)) for p in load.prompts(ep)] == [48] * 4
    assert load.as_dict()["tokenizer"] == str(tiny_dir)
    assert all(len(p.text.split()) == 48 for p in measure.LoadSpec(wl, [1]).prompts())  # no tokenizer: words


def test_knob_ranges_narrow_the_search_and_refuse_what_is_outside():
    """`--knobs key=MIN:MAX`: the coarse pass starts inside the operator's range (the H200 tune's first
    candidates were 4 requests and 128-token chunks, far from any optimum), never outside the declared one."""
    plan = checked_plan(PlanSpec(**{k: v for k, v in CELL.items() if k != "quant"}, toggles={}, sets=[]))
    mrr, cps = tunables.choose(plan, "builtin", ["max_running_requests=64:128", "chunked_prefill_size=2048:8192"])
    assert mrr.coarse() == [64, 128] and cps.coarse() == [2048, 8192]
    base = {"max_running_requests": 64, "chunked_prefill_size": 512}
    firsts = [c.as_dict() for c in space.coarse([mrr, cps], base, 4)]
    assert {"max_running_requests": 128, "chunked_prefill_size": 8192} in firsts
    assert all(d.get("max_running_requests", 64) >= 64 for d in firsts)
    for bad in ("max_running_requests=2:64", "max_running_requests=128:64", "max_running_requests=a:b"):
        with pytest.raises(UserError, match="max_running_requests"):
            tunables.choose(plan, "builtin", [bad])
    assert tunables.all_tunables()["max_running_requests"].min == 4  # the declared set is untouched
