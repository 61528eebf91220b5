"""The per-user run registry: `status` and `stop` see runs started from another directory; the status
table fits 80 columns; `--version` works without a command."""

from __future__ import annotations

import json
import os
import subprocess

from typer.testing import CliRunner

from dsv4ctl.cli import app
from dsv4ctl.launch import procs, registry, rundir

LONG = "flash-balanced-sglang-a-rather-long-run-name-that-used-to-wrap"


def started_elsewhere(tmp_path, status="running", pgid=None):
    pgid = pgid or os.getpgid(0)
    run = rundir.create(tmp_path / "elsewhere" / "runs", LONG)
    run.write_json("manifest.json", {
        "name": run.name, "status": status, "pgids": {"single": pgid},
        "procs": {"single": procs.identity(pgid)}, "engine": "sglang",  # ours, as serve records it
        "base_url": "http://127.0.0.1:1", "model": "deepseek-ai/DeepSeek-V4-Flash",
        "started_at": "2026-12-02T10:00:00Z"})
    return run


def test_status_from_another_directory_fits_80_columns(tmp_path, monkeypatch):
    # a group we own and that outlives the test's checks (the test runner's own group leader may be gone)
    child = subprocess.Popen(["sleep", "60"], start_new_session=True)
    try:
        _check_status(tmp_path, monkeypatch, started_elsewhere(tmp_path, pgid=child.pid))
    finally:
        child.kill()
        child.wait()


def _check_status(tmp_path, monkeypatch, run):
    (tmp_path / "here").mkdir()
    monkeypatch.chdir(tmp_path / "here")
    data = json.loads(CliRunner().invoke(app, ["status", "--format", "json"]).output)
    assert [r["name"] for r in data] == [run.name] and data[0]["dir"] == str(run.path.resolve())
    res = CliRunner().invoke(app, ["status"])
    assert res.exit_code == 0, res.output
    assert max(len(line) for line in res.output.splitlines()) <= 80, res.output
    assert run.name[:20] in res.output


def test_stop_finds_a_registered_run_and_stale_entries_go(tmp_path, monkeypatch):
    run = started_elsewhere(tmp_path, status="stopped")
    (tmp_path / "here").mkdir()
    monkeypatch.chdir(tmp_path / "here")
    res = CliRunner().invoke(app, ["stop", "rather-long"])
    assert res.exit_code == 0 and f"{run.name}: nothing running" in res.output.replace("\n", "")
    assert registry.paths() == [run.path.resolve()]
    for f in run.path.iterdir():
        f.unlink() if f.is_file() else None
    (run.path / "logs").rmdir()
    run.path.rmdir()
    assert registry.paths() == [] and not list(registry.state_dir().glob("*.json"))


def test_version_needs_no_command():
    res = CliRunner().invoke(app, ["--version"])
    assert res.exit_code == 0 and res.output.startswith("dsv4ctl ")
