"""`serve` / `stop` against races and hostile state: two serves on one port, a stranger answering on
our port, a stale or crafted manifest, ports out of range or in TIME_WAIT, the included runtime's
bind address and API key handling, and plan files the runtime cannot read."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time

import pytest
from stub_sglang import kill_groups, plan_file, records, run_cli, serve_args, stub_env, wait_for

from dsv4ctl.errors import UserError
from dsv4ctl.launch import builtin, control, ports, preflight, procs, rundir
from dsv4ctl.launch.health import NotReady
from dsv4ctl.launch.session import check_owner
from dsv4ctl.launch.supervisor import ChildSpec, Supervisor
from dsv4ctl.schema import load_plan


def sleeper(code: str = "import time; time.sleep(60)") -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", code], start_new_session=True)


def crafted_run(tmp_path, pgid: int, ident: dict | None) -> rundir.RunDir:
    run = rundir.create(tmp_path / "runs", "crafted")
    run.update_manifest(status="running", pgids={"single": pgid}, pids={"single": pgid},
                        **({"procs": {"single": ident}} if ident else {}))
    return run


@pytest.mark.parametrize("ident", [None, "wrong-start"], ids=["no-identity", "pid-reused"])
def test_stop_never_signals_a_group_that_is_not_ours(tmp_path, ident):
    victim = sleeper()
    try:
        rec = procs.identity(victim.pid) if ident else None
        if ident == "wrong-start":
            rec = {**rec, "start_ticks": rec["start_ticks"] - 1}  # the pid was reused by a later process
        run = crafted_run(tmp_path, victim.pid, rec)
        foreign = control.foreign_groups(run.read_manifest())
        stopped, killed = control.stop_run(run, grace_s=0.5)
        assert stopped == [] and foreign == {"single": victim.pid}
        time.sleep(0.2)
        assert victim.poll() is None, "stop signalled an unrelated process"
        assert control.run_state(run)["alive"] == []
    finally:
        victim.kill()
        victim.wait()


def test_stop_signals_the_group_it_started(tmp_path):
    child = sleeper()
    run = crafted_run(tmp_path, child.pid, procs.identity(child.pid))
    assert control.foreign_groups(run.read_manifest()) == {}
    stopped, _ = control.stop_run(run, grace_s=2)
    assert stopped == ["single"]
    assert child.wait(timeout=5) is not None


LISTEN = ("import socket, sys, time; s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); "
          "s.bind(('127.0.0.1', int(sys.argv[1]))); s.listen(); time.sleep(60)")


def test_readiness_refuses_a_stranger_on_our_port(tmp_path):
    port = ports.free_port()
    stranger = socket.socket()
    stranger.bind(("127.0.0.1", port))
    stranger.listen()
    sup = Supervisor(rundir.create(tmp_path / "runs", "x"))
    spec = ChildSpec("single", [sys.executable, "-c", "import time; time.sleep(60)"], port=port)
    sup.start(spec)
    try:
        with pytest.raises(NotReady, match=f"port {port} is answered by pid {os.getpid()}"):
            check_owner(spec, sup)
    finally:
        stranger.close()
        sup.stop()


def test_readiness_accepts_our_child_on_its_port(tmp_path):
    port = ports.free_port()
    sup = Supervisor(rundir.create(tmp_path / "runs", "x"))
    spec = ChildSpec("single", [sys.executable, "-c", LISTEN, str(port)], port=port)
    sup.start(spec)
    try:
        wait_for(lambda: procs.listener_pids(port), 10, "the child to listen")
        check_owner(spec, sup)
    finally:
        sup.stop()


def test_two_detached_serves_on_one_port_start_one_server(tmp_path):
    plan = plan_file(tmp_path / "plan.yaml", "h200", "flash", "balanced")
    port = load_plan(plan).keys.port
    procs_, recs = [], []
    for i in range(2):
        rec = tmp_path / f"rec{i}"
        rec.mkdir()
        recs.append(rec)
        args = serve_args(plan, tmp_path / f"t{i}", "--detach", "--port", str(port))
        procs_.append(subprocess.Popen([sys.executable, "-m", "dsv4ctl", *args], env=stub_env(rec, STUB_DELAY_S="1"),
                                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    try:
        results = [(p.wait(timeout=60), p.stderr.read()) for p in procs_]
        manifests = [json.loads(m.read_text()) for i in range(2) for m in (tmp_path / f"t{i}" / "runs").glob("*/manifest.json")]
        assert sorted(code for code, _ in results) in ([0, 1], [0, 2]), results
        assert [m["status"] for m in manifests].count("running") == 1, manifests
        loser = next(err for code, err in results if code)
        assert "Traceback" not in loser and ("being claimed" in loser or "already in use" in loser
                                             or "not by this run" in loser), loser
    finally:
        for rec in recs:
            kill_groups(r["pgid"] for r in records(rec).values())


def test_a_port_in_time_wait_is_free_but_a_listener_is_not():
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("127.0.0.1", 0))
    srv.listen()
    port = srv.getsockname()[1]
    cli = socket.create_connection(("127.0.0.1", port))
    conn, _ = srv.accept()
    conn.close()  # the server side closes first: its end of the connection sits in TIME_WAIT
    time.sleep(0.1)
    cli.close()
    assert ports.port_in_use("127.0.0.1", port)  # still listening
    srv.close()
    assert not ports.port_in_use("127.0.0.1", port)  # only TIME_WAIT left: what a server may bind


@pytest.mark.parametrize("port", ["70000", "-1", "65536", "0"])
def test_out_of_range_ports_are_one_line_errors(tmp_path, port):
    """0 is refused too: the plan and the run record the real port, so nothing polls port 0."""
    plan = plan_file(tmp_path / "plan.yaml", "h200", "flash", "balanced")
    res = run_cli(serve_args(plan, tmp_path, "--dry-run", "--port", port), stub_env(tmp_path))
    assert res.returncode == 2 and "--port" in res.stderr and "Traceback" not in res.stderr, res.stderr
    assert len(res.stderr.strip().splitlines()) <= 3


def test_a_plan_port_of_zero_or_too_big_is_refused_before_anything_starts():
    for port in (0, 70000):
        with pytest.raises(UserError, match="port must be an integer in 1..65535"):
            preflight.preflight([ChildSpec("single", ["true"], port=port)])


def test_builtin_runtime_binds_localhost_unless_told_and_keeps_the_key_out_of_argv():
    notes = []
    assert builtin.builtin_host(None, "0.0.0.0", notes.append) == "127.0.0.1" and "--host 0.0.0.0" in notes[0]
    assert builtin.builtin_host("0.0.0.0", "127.0.0.1", notes.append) == "0.0.0.0"
    assert builtin.builtin_host(None, "10.0.0.5", notes.append) == "10.0.0.5"
    argv = builtin.builtin_argv("/m", host="127.0.0.1", port=1, served_model_name="x")
    assert "--api-key" not in argv


def test_all_interfaces_without_a_key_warns_loudly():
    warned = []
    open_spec = ChildSpec("single", ["sh"], port=ports.free_port(), host="0.0.0.0")
    keyed = ChildSpec("single", ["sh"], port=ports.free_port(), host="0.0.0.0", secret_env={builtin.API_KEY_ENV: "k"})
    for spec in (open_spec, keyed, ChildSpec("single", ["sh"], port=ports.free_port())):
        preflight.preflight([spec], warn=warned.append)
    assert len(warned) == 1 and "WITHOUT an API key" in warned[0] and "0.0.0.0" in warned[0]


def test_the_child_gets_the_key_by_environment_only(tmp_path):
    out = tmp_path / "seen.json"
    code = f"import json, os, sys; json.dump([sys.argv, os.environ.get('{builtin.API_KEY_ENV}')], open({str(out)!r}, 'w'))"
    run = rundir.create(tmp_path / "runs", "x")
    sup = Supervisor(run)
    sup.start(ChildSpec("single", [sys.executable, "-c", code], secret_env={builtin.API_KEY_ENV: "sk-secret"}))
    sup.children[0].proc.wait(timeout=30)
    argv, key = json.loads(out.read_text())
    assert key == "sk-secret" and "sk-secret" not in " ".join(argv)


# --- the runtime's own CLI -------------------------------------------------------------------

def runtime_cli(*argv: str, env=None):
    return subprocess.run([sys.executable, "-m", "dsv4rt", "serve", *argv], capture_output=True, text=True,
                          timeout=60, env=env)


@pytest.mark.parametrize("text", ["- a\n- b\n", "just a string\n", "42\n", "keys: [1, 2]\n", "roles: [1]\n",
                                  "a: !!python/object/apply:os.system ['true']\n", "[" * 5000 + "\n", "a: [\n"])
def test_runtime_refuses_unreadable_plan_files_in_one_line(tmp_path, text):
    plan = tmp_path / "plan.yaml"
    plan.write_text(text)
    res = runtime_cli("--model", str(tmp_path), "--plan", str(plan))
    assert res.returncode == 2 and "Traceback" not in res.stderr, res.stderr
    assert str(plan) in res.stderr and len(res.stderr.strip().splitlines()) == 1


def test_runtime_validates_ports_and_reads_keys_safely(tmp_path):
    from dsv4rt.cli import UsageError, build_parser, resolve_options

    def opts(*argv):
        return resolve_options(build_parser().parse_args(["serve", "--model", "/m", *argv]))

    with pytest.raises(UsageError, match="0..65535"):
        opts("--port", "70000")
    assert opts("--port", "0")["port"] == 0 and opts()["port"] == 30000
    key = tmp_path / "key"
    key.write_text("sk-file\n")
    key.chmod(0o644)
    with pytest.raises(UsageError, match="chmod 600"):
        opts("--api-key-file", str(key))
    key.chmod(0o600)
    assert opts("--api-key-file", str(key))["api_key"] == "sk-file"
    os.environ[builtin.API_KEY_ENV] = "sk-env"
    try:
        assert opts()["api_key"] == "sk-env"
    finally:
        del os.environ[builtin.API_KEY_ENV]


@pytest.mark.parametrize("args,named", [
    (["--mem-fraction-static", "2"], "mem_fraction_static"), (["--kv-budget-bytes", "-1"], "kv_budget_bytes"),
    (["--cuda-graph-bs", "0"], "cuda_graph_bs"), (["--port", "70000"], "0..65535"),
    ([], "no config.json"),
])
def test_runtime_bad_numbers_and_models_are_one_line(tmp_path, args, named):
    res = runtime_cli("--model", str(tmp_path / "missing"), *args)
    assert res.returncode == 2 and named in res.stderr and "Traceback" not in res.stderr, res.stderr


@pytest.mark.parametrize("args", [["--grace", "-1"], ["--timeout", "inf"], ["--timeout", "nan"], ["--grace", "nan"]])
def test_serve_seconds_must_be_finite(tmp_path, args):
    plan = plan_file(tmp_path / "plan.yaml", "h200", "flash", "balanced")
    res = run_cli(serve_args(plan, tmp_path, "--dry-run", *args), stub_env(tmp_path))
    assert res.returncode == 2 and "number of seconds" in res.stderr and "Traceback" not in res.stderr, res.stderr


@pytest.mark.parametrize("manifest", [
    "[1, 2]", '"x"', "{not json", '{"status": "running", "pgids": [1], "procs": "x"}',
    '{"status": "running", "pgids": {"single": "abc"}}', '{"status": "running", "pgids": {"single": 1}}',
    '{"status": "running", "pgids": {"single": 999999999}, "procs": {"single": {"pid": 999999999, "start_ticks": "x"}}}',
])
def test_status_and_stop_survive_garbage_manifests(tmp_path, manifest):
    run = rundir.create(tmp_path / "runs", "junk")
    (run.path / "manifest.json").write_text(manifest)
    env = {**os.environ, "DSV4CTL_RUNS": str(tmp_path / "runs")}
    for args in (["status", "--all"], ["status", "--format", "json"], ["stop", "latest", "--grace", "0.5"]):
        res = run_cli(args, env)
        assert res.returncode in (0, 2) and "Traceback" not in res.stderr, (args, res.stderr)


@pytest.mark.parametrize("root", ["/proc/x", "/dev/null"])
def test_unwritable_run_dir_is_one_line(tmp_path, root):
    plan = plan_file(tmp_path / "plan.yaml", "h200", "flash", "balanced")
    args = [a if a != str(tmp_path / "runs") else root for a in serve_args(plan, tmp_path)]
    rec = tmp_path / "rec"
    rec.mkdir()
    res = run_cli(args, stub_env(rec))
    assert res.returncode == 2 and "cannot create a run directory" in res.stderr and "Traceback" not in res.stderr
    assert records(rec) == {}  # nothing started
