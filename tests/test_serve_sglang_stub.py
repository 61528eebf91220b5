"""`dsv4ctl serve --engine sglang` without GPUs: a stub stands in for `sglang` and the router,
records its argv and env, and serves /health and /v1/completions. Checks that exactly the plan's
commands ran, in order, and that every failure is reported and leaves no process behind."""

from __future__ import annotations

import json
import sys

import pytest
from stub_sglang import STUB, assert_groups_gone, kill_groups, plan_file, records, run_cli, serve_args, stub_env

from dsv4ctl.render.sglang import render_commands
from dsv4ctl.schema import load_plan


@pytest.fixture
def single_plan(tmp_path):
    return plan_file(tmp_path / "plan.yaml", "h200", "flash", "balanced")


@pytest.fixture
def pd_plan(tmp_path):
    return plan_file(tmp_path / "pd.yaml", "h200", "flash", "pd-disagg")


def expected_argv(plan_path) -> dict[str, list[str]]:
    """What the stub should have received: the plan's argv minus the program name."""
    return {c.role: c.argv[3:] if c.role == "router" else c.argv[1:] for c in render_commands(load_plan(plan_path))}


def pgids_of(recs) -> list[int]:
    return [r["pgid"] for r in recs.values()]


def test_single_plan_runs_exactly_the_plan_command(single_plan, tmp_path):
    rec_dir = tmp_path / "rec"
    rec_dir.mkdir()
    env = stub_env(rec_dir)
    res = run_cli(serve_args(single_plan, tmp_path, "--detach"), env)
    recs = records(rec_dir)
    try:
        assert res.returncode == 0, res.stderr
        assert set(recs) == {"single"}
        assert recs["single"]["argv"][0] == str(STUB)
        assert recs["single"]["argv"][1:] == expected_argv(single_plan)["single"]
        plan = load_plan(single_plan)
        assert {k: recs["single"]["env"].get(k) for k in plan.env} == plan.env
        run = next((tmp_path / "runs").iterdir())
        ran = load_plan(run / "plan.yaml")  # the plan as given, with the checks serve ran on it
        assert ran.model_copy(update={"findings": [], "sizing": None}) == plan and ran.sizing
        assert json.loads((run / "command.json").read_text())["single"][0] == sys.executable
        assert json.loads((run / "env.json").read_text())["single"] == plan.env
        assert "fired up" in (run / "logs" / "single.log").read_text()
        manifest = json.loads((run / "manifest.json").read_text())
        assert manifest["model"] == plan.keys.model_path and manifest["gpus"] == 4
        assert manifest["base_url"] == f"http://127.0.0.1:{plan.keys.port}"
        status = run_cli(["status", "--run-dir", str(tmp_path / "runs"), "--format", "json"], env)
        row = json.loads(status.stdout)[0]
        assert row["status"] == "running" and row["healthy"]
        stop = run_cli(["stop", "latest", "--run-dir", str(tmp_path / "runs")], env)
        assert stop.returncode == 0 and "stopped" in stop.stdout
    finally:
        kill_groups(pgids_of(recs))
    assert_groups_gone(pgids_of(recs))


def test_pd_plan_starts_prefill_decode_then_router(pd_plan, tmp_path):
    rec_dir = tmp_path / "rec"
    rec_dir.mkdir()
    res = run_cli(serve_args(pd_plan, tmp_path, "--detach"), stub_env(rec_dir))
    recs = records(rec_dir)
    try:
        assert res.returncode == 0, res.stderr
        assert set(recs) == {"prefill", "decode", "router"}
        expected = expected_argv(pd_plan)
        for role, rec in recs.items():
            assert rec["argv"][1:] == expected[role], role
        assert recs["router"]["t"] >= max(recs["prefill"]["t"], recs["decode"]["t"])
        assert any("--disaggregation-transfer-backend" in a for a in recs["prefill"]["argv"])
        # one 8-GPU node, TP4 each: the processes started on their own GPUs (issue 20)
        gpus = {role: recs[role]["env"].get("CUDA_VISIBLE_DEVICES") for role in recs}
        assert gpus == {"prefill": "0,1,2,3", "decode": "4,5,6,7", "router": None}
        run = next((tmp_path / "runs").iterdir())
        assert {p.name for p in (run / "logs").iterdir()} == {"prefill.log", "decode.log", "router.log"}
        manifest = json.loads((run / "manifest.json").read_text())
        assert manifest["base_url"].endswith(f":{load_plan(pd_plan).role('router').port}")
    finally:
        run_cli(["stop", "latest", "--run-dir", str(tmp_path / "runs")], stub_env(rec_dir))
        kill_groups(pgids_of(recs))
    assert_groups_gone(pgids_of(recs))


def test_worker_rank_of_a_multi_node_plan_runs_its_own_command(tmp_path):
    path = plan_file(tmp_path / "mn.yaml", "h100", "pro", "low-latency")  # TP16 over 2 nodes
    rec_dir = tmp_path / "rec"
    rec_dir.mkdir()
    # node 0 is "here": readiness of a worker rank is judged by node 0's endpoint
    args = serve_args(path, tmp_path, "--detach", "--node-rank", "1", "--node0-addr", "127.0.0.1")
    res = run_cli(args, stub_env(rec_dir))
    recs = records(rec_dir)
    try:
        assert res.returncode == 0, res.stderr
        rank1 = [c for c in render_commands(load_plan(path), node0_addr="127.0.0.1") if c.node_rank == 1]
        assert [r["argv"][1:] for r in recs.values()] == [rank1[0].argv[1:]]
        assert "127.0.0.1:20000" in recs["single"]["argv"]
    finally:
        run_cli(["stop", "latest", "--run-dir", str(tmp_path / "runs")], stub_env(rec_dir))
        kill_groups(pgids_of(recs))
    assert_groups_gone(pgids_of(recs))
