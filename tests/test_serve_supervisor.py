"""The supervisor, run directory, readiness and detach pieces, against the stub engine (no plan)."""

from __future__ import annotations

import socket
import time

import pytest
from stub_sglang import STUB_CMD, assert_groups_gone, kill_groups, stub_env

from dsv4ctl.errors import UserError
from dsv4ctl.launch import control, rundir
from dsv4ctl.launch.health import NotReady, _completion_text, health_ok
from dsv4ctl.launch.ports import ensure_free, free_port, port_in_use
from dsv4ctl.launch.session import Launch, run_launch
from dsv4ctl.launch.supervisor import ChildSpec, Supervisor


def spec(tmp_path, **knobs) -> ChildSpec:
    port = free_port()
    argv = [*STUB_CMD.split(), "serve", "--model-path", "org/m", "--host", "127.0.0.1", "--port", str(port)]
    return ChildSpec("single", argv, stub_env(tmp_path, **knobs), port)


def launch_of(s: ChildSpec, timeout=20.0, grace=3.0) -> Launch:
    return Launch(name="t", engine="sglang", specs=[s], model="org/m", gpus=8, plan_yaml="x: 1\n",
                  timeout_s=timeout, grace_s=grace)


@pytest.fixture
def run(tmp_path):
    return rundir.create(tmp_path / "runs", "t")


def test_stop_kills_the_whole_group_including_grandchildren(tmp_path, run):
    sup = Supervisor(run, grace_s=3.0)
    child = sup.start(spec(tmp_path, STUB_FORK="1"))
    try:
        deadline = time.monotonic() + 15
        while not health_ok(child.spec.base_url) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert health_ok(child.spec.base_url)
        assert sup.stop() == []  # SIGTERM was enough
    finally:
        kill_groups([child.pgid])
    assert_groups_gone([child.pgid])  # the forked sleeper went with it
    assert child.proc.returncode is not None


def test_sigterm_ignored_escalates_to_sigkill_within_grace(tmp_path, run):
    sup = Supervisor(run, grace_s=0.5)
    child = sup.start(spec(tmp_path, STUB_IGNORE_TERM="1"))
    time.sleep(0.5)  # let it install its SIGTERM handler
    t0 = time.monotonic()
    try:
        assert sup.stop() == ["single"]
    finally:
        kill_groups([child.pgid])
    assert time.monotonic() - t0 < 5
    assert_groups_gone([child.pgid])


def test_dead_child_is_reported_with_log_tail_and_logs_kept(tmp_path, run, capsys):
    s = spec(tmp_path, STUB_EXIT_CODE="3")
    assert run_launch(run, launch_of(s), detach=False) == 1
    manifest = run.read_manifest()
    assert manifest["status"] == "failed" and "exited with code 3" in manifest["error"]
    assert "stub told to fail" in run.log_path("single").read_text()
    assert "stub told to fail" in capsys.readouterr().err
    assert_groups_gone(manifest["pgids"].values())


def test_readiness_timeout_fails_and_stops_the_child(tmp_path, run):
    s = spec(tmp_path, STUB_DELAY_S="30")
    t0 = time.monotonic()
    assert run_launch(run, launch_of(s, timeout=1.0), detach=False) == 1
    assert time.monotonic() - t0 < 10
    manifest = run.read_manifest()
    assert manifest["status"] == "failed" and "not ready" in manifest["error"]
    assert_groups_gone(manifest["pgids"].values())


def test_detach_then_status_and_stop(tmp_path, run):
    s = spec(tmp_path)
    assert run_launch(run, launch_of(s), detach=True) == 0
    manifest = run.read_manifest()
    try:
        assert manifest["status"] == "running" and manifest["base_url"] == s.base_url
        assert {"base_url", "model", "gpus", "versions", "hardware", "pids", "engine"} <= set(manifest)
        state = control.run_state(run)
        assert state["status"] == "running" and state["healthy"]
        stopped, killed = control.stop_run(run, grace_s=3)
        assert stopped == ["single"] and killed == []
    finally:
        kill_groups(manifest["pgids"].values())
    assert_groups_gone(manifest["pgids"].values())
    assert control.run_state(run)["status"] == "stopped"
    assert control.stop_run(run) == ([], [])  # stopping twice is harmless


def test_port_checks():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        assert port_in_use("127.0.0.1", port)
        with pytest.raises(UserError, match=f"port {port} .router. on 127.0.0.1 is already in use"):
            ensure_free("127.0.0.1", port, "router")
    assert not port_in_use("127.0.0.1", free_port())


def test_completion_check_wants_the_model_name_and_a_completion():
    ok = {"model": "m", "choices": [{"text": " Paris"}], "usage": {"completion_tokens": 1}}
    assert _completion_text(ok, "m") == " Paris"
    with pytest.raises(NotReady, match="expected 'other'"):
        _completion_text(ok, "other")
    with pytest.raises(NotReady, match="empty completion"):
        _completion_text({"model": "m", "choices": [{"text": ""}], "usage": {"completion_tokens": 0}}, "m")
