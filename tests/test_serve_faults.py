"""Faults around `dsv4ctl serve` (with the stub engine): a dying child, a busy port, a missing binary
or model, an interrupted startup, a failing plan. Each is reported, exits non-zero, keeps the logs
and leaves no process behind."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys

import pytest
from stub_sglang import (assert_groups_gone, kill_groups, plan_file, records, run_cli, serve_args, stub_env,
                         wait_for)

from dsv4ctl.schema import dump_plan, load_plan


@pytest.fixture
def single_plan(tmp_path):
    return plan_file(tmp_path / "plan.yaml", "h200", "flash", "balanced")


@pytest.fixture
def rec_dir(tmp_path):
    path = tmp_path / "rec"
    path.mkdir()
    return path


def start_serve(args, env):
    return subprocess.Popen([sys.executable, "-m", "dsv4ctl", *args], env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def manifest_of(tmp_path) -> dict:
    runs = list((tmp_path / "runs").glob("*/manifest.json"))
    return json.loads(runs[0].read_text()) if runs else {}


def test_child_dying_at_startup_is_reported_with_log_tail(single_plan, tmp_path, rec_dir):
    res = run_cli(serve_args(single_plan, tmp_path), stub_env(rec_dir, STUB_EXIT_CODE="3"))
    assert res.returncode == 1
    assert "single exited with code 3" in res.stderr and "stub told to fail" in res.stderr
    assert "Traceback" not in res.stderr
    log = next((tmp_path / "runs").glob("*/logs/single.log"))
    assert "stub told to fail" in log.read_text()  # logs kept
    assert manifest_of(tmp_path)["status"] == "failed"
    assert_groups_gone(r["pgid"] for r in records(rec_dir).values())


def test_child_killed_while_serving_is_detected(single_plan, tmp_path, rec_dir):
    proc = start_serve(serve_args(single_plan, tmp_path), stub_env(rec_dir))
    try:
        wait_for(lambda: manifest_of(tmp_path).get("status") == "running", 20, "the server to be ready")
        pgid = records(rec_dir)["single"]["pgid"]
        os.killpg(pgid, signal.SIGKILL)
        _, stderr = proc.communicate(timeout=20)
    finally:
        proc.kill()
        kill_groups(r["pgid"] for r in records(rec_dir).values())
    assert proc.returncode == 1 and "single exited with code -9" in stderr
    assert manifest_of(tmp_path)["status"] == "failed"
    assert_groups_gone([pgid])


@pytest.mark.parametrize("sig,code", [(signal.SIGINT, 130), (signal.SIGTERM, 130)])
def test_interrupted_startup_stops_every_child(single_plan, tmp_path, rec_dir, sig, code):
    proc = start_serve(serve_args(single_plan, tmp_path), stub_env(rec_dir, STUB_DELAY_S="60", STUB_FORK="1"))
    try:
        rec = wait_for(lambda: records(rec_dir).get("single"), 20, "the child to start")
        proc.send_signal(sig)
        _, stderr = proc.communicate(timeout=20)
    finally:
        proc.kill()
        kill_groups(r["pgid"] for r in records(rec_dir).values())
    assert proc.returncode == code, stderr
    assert "interrupted" in stderr
    assert manifest_of(tmp_path)["status"] == "interrupted"
    assert_groups_gone([rec["pgid"]], timeout=2)  # already gone when serve returned


def test_busy_port_fails_before_anything_starts(single_plan, tmp_path, rec_dir):
    port = load_plan(single_plan).keys.port
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))
        sock.listen()
        res = run_cli(serve_args(single_plan, tmp_path), stub_env(rec_dir))
    assert res.returncode == 2 and f"port {port} (single)" in res.stderr and "already in use" in res.stderr
    assert records(rec_dir) == {} and not (tmp_path / "runs").exists()


def test_missing_engine_binary_fails_before_anything_starts(single_plan, tmp_path, rec_dir):
    env = stub_env(rec_dir, DSV4CTL_SGLANG_BIN=str(tmp_path / "no-sglang"))
    res = run_cli(serve_args(single_plan, tmp_path), env)
    assert res.returncode == 2 and "engine binary" in res.stderr and "not found" in res.stderr
    assert "Traceback" not in res.stderr and not (tmp_path / "runs").exists()


def test_missing_model_path_fails_before_anything_starts(single_plan, tmp_path, rec_dir):
    res = run_cli(serve_args(single_plan, tmp_path, "--model-path", str(tmp_path / "nope")), stub_env(rec_dir))
    assert res.returncode == 2 and "does not exist" in res.stderr
    assert records(rec_dir) == {}


def test_validation_errors_stop_the_launch_unless_forced(single_plan, tmp_path, rec_dir):
    plan = load_plan(single_plan)
    bad = plan.model_copy(update={"keys": plan.keys.model_copy(update={"tp": 64})})  # 64 ranks on 8 GPUs
    dump_plan(bad, single_plan)
    args = [a for a in serve_args(single_plan, tmp_path) if a != "--force"]
    res = run_cli(args, stub_env(rec_dir))
    assert res.returncode == 2 and "fails validation" in res.stderr and "--force" in res.stderr
    assert records(rec_dir) == {}


def test_dry_run_prints_the_commands_and_starts_nothing(single_plan, tmp_path, rec_dir):
    res = run_cli(serve_args(single_plan, tmp_path, "--dry-run", "--api-key", "sk-secret"), stub_env(rec_dir))
    assert res.returncode == 0, res.stderr
    assert "serve --trust-remote-code" in res.stdout and load_plan(single_plan).keys.model_path in res.stdout
    assert "sk-secret" not in res.stdout and "--api-key '***'" in res.stdout
    assert records(rec_dir) == {} and not (tmp_path / "runs").exists()


def test_stop_from_another_shell_is_a_clean_exit(single_plan, tmp_path, rec_dir):
    env = stub_env(rec_dir)
    proc = start_serve(serve_args(single_plan, tmp_path), env)
    try:
        wait_for(lambda: manifest_of(tmp_path).get("status") == "running", 20, "the server to be ready")
        stop = run_cli(["stop", "latest", "--run-dir", str(tmp_path / "runs")], env)
        _, stderr = proc.communicate(timeout=20)
    finally:
        proc.kill()
        kill_groups(r["pgid"] for r in records(rec_dir).values())
    assert stop.returncode == 0 and proc.returncode == 0, stderr
    assert manifest_of(tmp_path)["status"] == "stopped"
    assert_groups_gone(r["pgid"] for r in records(rec_dir).values())
