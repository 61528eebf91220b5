"""`dsv4ctl quickstart`: Ctrl-C in the middle still stops the server. (The green run, under 5 minutes
with its report, is the README's main job: tests/test_docs_commands.py runs it as written.)"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("matplotlib")

ROOT = Path(__file__).resolve().parents[1]


def env_with_tiny(tmp_path, tiny_dir) -> dict:
    home = tmp_path / "home"
    home.mkdir()
    (home / "tiny").symlink_to(tiny_dir)  # the checkpoint the tests already made: no second copy
    return {**os.environ, "DSV4CTL_HOME": str(home), "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "runtime")]),
            "COLUMNS": "80"}


def quickstart(tmp_path, env, *args):
    return subprocess.Popen([sys.executable, "-m", "dsv4ctl", "quickstart", "--out", str(tmp_path / "qs"), *args],
                            cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def server_manifest(tmp_path) -> dict:
    runs = list((tmp_path / "runs").glob("*-quickstart"))
    return json.loads((runs[0] / "manifest.json").read_text()) if runs else {}


def group_alive(pgid: int) -> bool:
    """A live (not zombie) process in the group; a killed child may linger a moment as a zombie."""
    from dsv4ctl.launch.procs import group_alive as alive

    deadline = time.monotonic() + 10
    while alive(pgid) and time.monotonic() < deadline:
        time.sleep(0.2)
    return alive(pgid)


@pytest.mark.slow
def test_ctrl_c_stops_the_server(tmp_path, tiny_dir):
    proc = quickstart(tmp_path, env_with_tiny(tmp_path, tiny_dir))
    deadline = time.monotonic() + 300
    while not (tmp_path / "qs" / "gsm8k").exists():  # the server is up and the first benchmark started
        assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read()[-2000:]
        time.sleep(0.5)
    proc.send_signal(signal.SIGINT)
    proc.communicate(timeout=120)
    assert proc.returncode == 130
    manifest = server_manifest(tmp_path)
    assert manifest["status"] == "stopped"
    assert not any(group_alive(int(g)) for g in manifest["pgids"].values())
