"""Small pure pieces of `serve`: phases from logs, run directories, binary overrides, model paths."""

from __future__ import annotations

import pytest

from dsv4ctl.errors import UserError
from dsv4ctl.launch import assemble, preflight, rundir
from dsv4ctl.launch.phases import PhaseTracker, log_tail, phase_of
from dsv4ctl.launch.supervisor import ChildSpec


@pytest.mark.parametrize("line,phase", [
    ("[2026-05-01 TP0] Load weight begin. avail mem=77.1 GB", "loading weights"),
    ("[TP3] Capture cuda graph begin. This can take up to several minutes.", "capturing graphs"),
    ("INFO:     Uvicorn running on http://0.0.0.0:30000 (Press CTRL+C to quit)", "warming up"),
    ("The server is fired up and ready to roll!", "ready"),
    ("some unrelated line", None),
])
def test_phase_patterns(line, phase):
    assert phase_of(line) == phase


def test_phase_tracker_reads_incrementally_and_never_goes_back(tmp_path):
    log = tmp_path / "x.log"
    log.write_text("Load weight begin\nCapture cuda gr")  # the second line is still being written
    tracker = PhaseTracker(log)
    assert tracker.update() == "loading weights"
    with log.open("a") as fh:
        fh.write("aph begin\nLoad weight begin (another rank)\n")
    assert tracker.update() == "capturing graphs"
    assert log_tail(log, 1) == "Load weight begin (another rank)"


def test_run_dirs_are_unique_and_found_by_fragment(tmp_path):
    a, b = rundir.create(tmp_path, "flash pd"), rundir.create(tmp_path, "flash pd")
    assert a.path != b.path and a.name.endswith("-flash-pd") and (a.path / "logs").is_dir()
    for run in (a, b):
        run.update_manifest(status="running")
    assert rundir.find_run(tmp_path, "latest").path == b.path
    assert rundir.find_run(tmp_path, b.name).path == b.path
    assert rundir.find_run(tmp_path, str(a.path)).path == a.path
    with pytest.raises(UserError, match="ambiguous"):
        rundir.find_run(tmp_path, "flash-pd")
    with pytest.raises(UserError, match="not found"):
        rundir.find_run(tmp_path, "nope")


def test_api_keys_are_masked_in_records():
    assert rundir.mask_argv(["sglang", "serve", "--api-key", "sk-1", "--port", "1"]) == \
        ["sglang", "serve", "--api-key", "***", "--port", "1"]


def test_binary_overrides_replace_only_the_program():
    argv = ["sglang", "serve", "--model-path", "m"]
    assert preflight.substitute_bins(argv, "python3 /x/stub", None) == ["python3", "/x/stub", "serve", "--model-path", "m"]
    router = ["python3", "-m", "sglang_router.launch_router", "--pd-disaggregation", "--port", "8000"]
    assert preflight.substitute_bins(router, None, "/x/router") == ["/x/router", "--pd-disaggregation", "--port", "8000"]
    assert preflight.substitute_bins(argv, None, None) == argv


def test_missing_engine_binary_is_a_clear_error():
    with pytest.raises(UserError, match="engine binary 'no-such-sglang' for role prefill not found"):
        preflight.check_program(ChildSpec("prefill", ["no-such-sglang", "serve"]))


def test_model_paths(tmp_path):
    preflight.check_model_path(str(tmp_path), local_only=True)
    preflight.check_model_path("deepseek-ai/DeepSeek-V4-Flash", local_only=False)  # a repo id: engine downloads
    with pytest.raises(UserError, match="does not exist"):
        preflight.check_model_path("deepseek-ai/DeepSeek-V4-Flash", local_only=True)
    with pytest.raises(UserError, match="does not exist"):
        preflight.check_model_path(str(tmp_path / "missing"), local_only=False)
    with pytest.raises(UserError, match="no model path"):
        preflight.check_model_path("", local_only=False)


def test_engine_choice():
    plan = assemble.embedded_default_plan()
    assert assemble.choose_engine("auto", None, have_gpus=False) == "builtin"
    assert assemble.choose_engine("auto", None, have_gpus=True) == "sglang"
    assert assemble.choose_engine("auto", plan, have_gpus=True) == "builtin"
    assert assemble.choose_engine("sglang", plan, have_gpus=False) == "sglang"


def test_sglang_pd_roles_on_one_node_start_on_their_own_gpus(monkeypatch):
    """issue 20: `serve` of a single-node PD plan gives prefill and decode disjoint CUDA_VISIBLE_DEVICES,
    read through the CUDA_VISIBLE_DEVICES serve itself runs under."""
    from dsv4ctl.pipeline import check_plan
    from dsv4ctl.resolve import resolve_plan

    checked = check_plan(resolve_plan("b200", "flash", "pd-disagg"))  # TP2 + TP2 on one 8-GPU node

    def gpus(visible):
        if visible is None:
            monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
        else:
            monkeypatch.setenv("CUDA_VISIBLE_DEVICES", visible)
        return {s.role: s.env.get("CUDA_VISIBLE_DEVICES") for s in assemble.sglang_specs(checked, assemble.ServeOptions())}

    assert gpus(None) == {"prefill": "0,1", "decode": "2,3", "router": None}
    assert gpus("4,5,6,7") == {"prefill": "4,5", "decode": "6,7", "router": None}
    with pytest.raises(UserError, match="CUDA_VISIBLE_DEVICES=4,5 shows 2"):
        gpus("4,5")


def test_sglang_pd_roles_placed_on_separate_nodes_are_not_started_on_one_host():
    """gb200 flash PD: TP4 prefill and TP4 decode fill a 4-GPU tray each; one host must not start both."""
    from dsv4ctl.pipeline import check_plan
    from dsv4ctl.resolve import resolve_plan

    plan = resolve_plan("gb200", "flash", "pd-disagg")
    assert plan.nodes == 2
    with pytest.raises(UserError, match="places decode and prefill on 2 different nodes"):
        assemble.sglang_specs(check_plan(plan), assemble.ServeOptions())
