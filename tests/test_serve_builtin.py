"""End to end on CPU: `dsv4ctl serve` with no plan serves the included runtime's tiny checkpoint
(created on first use), answers an OpenAI request, and stops cleanly on Ctrl-C."""

from __future__ import annotations

import json
import signal
import subprocess
import sys

import httpx
import pytest
from stub_sglang import assert_groups_gone, kill_groups, wait_for

from dsv4ctl.launch.builtin import runtime_available
from dsv4ctl.launch.ports import free_port

pytestmark = pytest.mark.skipif(not runtime_available(), reason="the included runtime (dsv4rt.server) is not importable yet")


def manifest(runs) -> dict:
    found = list(runs.glob("*/manifest.json"))
    return json.loads(found[0].read_text()) if found else {}


@pytest.mark.slow
def test_builtin_tiny_model_serves_a_request_and_stops_cleanly(tmp_path):
    import os

    port, runs = free_port(), tmp_path / "runs"
    env = {**os.environ, "DSV4CTL_HOME": str(tmp_path / "home")}
    cmd = [sys.executable, "-m", "dsv4ctl", "serve", "--engine", "builtin", "--port", str(port),
           "--api-key", "sk-test", "--run-dir", str(runs), "--timeout", "120", "--grace", "5"]
    proc = subprocess.Popen(cmd, env=env, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        m = wait_for(lambda: manifest(runs).get("status") in ("running", "failed") and manifest(runs), 150, "ready")
        assert m["status"] == "running", proc.stderr.read() if proc.poll() is not None else m
        assert m["base_url"] == f"http://127.0.0.1:{port}" and m["model"] == "dsv4-tiny" and m["gpus"] == 0
        assert (tmp_path / "home" / "tiny" / "config.json").is_file()  # made on first use
        body = {"model": "dsv4-tiny", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}
        url = f"{m['base_url']}/v1/chat/completions"
        assert httpx.post(url, json=body, timeout=60).status_code == 401  # --api-key passed through
        cmdline = open(f"/proc/{m['pids']['single']}/cmdline", "rb").read()
        assert b"sk-test" not in cmdline  # ... by environment: argv is world-readable in ps
        resp = httpx.post(url, json=body, headers={"Authorization": "Bearer sk-test"}, timeout=60)
        assert resp.status_code == 200 and resp.json()["model"] == "dsv4-tiny"
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
        kill_groups(manifest(runs).get("pgids", {}).values())
    assert proc.returncode == 0, err
    assert "ready" in out and "sk-test" not in (runs.glob("*/command.json").__next__()).read_text()
    assert manifest(runs)["status"] == "stopped"
    assert_groups_gone(manifest(runs)["pgids"].values(), timeout=2)
