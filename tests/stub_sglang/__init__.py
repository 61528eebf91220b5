"""Test helpers around the stub `sglang` executable (tests import this as `stub_sglang`)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

STUB = Path(__file__).with_name("sglang")
STUB_CMD = f"{sys.executable} {STUB}"


def stub_env(record_dir: Path, **knobs: str) -> dict[str, str]:
    """Environment for a `dsv4ctl serve` child: the stub stands in for sglang and the router."""
    # no inherited CUDA_VISIBLE_DEVICES: serve reads a PD role's GPUs through it (tests/test_serve_units.py)
    env = {k: v for k, v in os.environ.items() if not k.startswith("STUB_") and k != "CUDA_VISIBLE_DEVICES"}
    env.update({"DSV4CTL_SGLANG_BIN": STUB_CMD, "DSV4CTL_ROUTER_BIN": STUB_CMD, "STUB_RECORD_DIR": str(record_dir), **knobs})
    return env


def records(record_dir: Path) -> dict[str, dict]:
    """What each stub process recorded, by role (single, prefill, decode, router)."""
    out = {}
    for path in sorted(Path(record_dir).glob("*.json")):
        data = json.loads(path.read_text())
        out[path.name.rsplit("-", 1)[0]] = data
    return out


def wait_for(pred, timeout: float = 20.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = pred()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def assert_groups_gone(pgids, timeout: float = 10.0) -> None:
    """Every process group the test started must be gone: no stray processes after a test."""
    from dsv4ctl.launch.procs import group_alive

    pgids = list(pgids)
    assert pgids, "the test recorded no process groups to check"
    wait_for(lambda: not any(group_alive(g) for g in pgids), timeout, f"process groups {pgids} to exit")


def kill_groups(pgids) -> None:
    """Last-resort cleanup when a test failed half way."""
    import signal

    for g in pgids:
        try:
            os.killpg(g, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


def run_cli(args: list[str], env: dict[str, str], timeout: float = 60.0, cwd: Path | None = None):
    return subprocess.run([sys.executable, "-m", "dsv4ctl", *args], env=env, cwd=cwd,
                          capture_output=True, text=True, timeout=timeout)


def with_ports(plan, ports: dict[str, int]):
    """The plan with each role on the given port (an engine role's own keys carry its port too)."""
    roles = [r.model_copy(update={"port": ports[r.name], "keys": {**r.keys, "port": ports[r.name]}
                                  if r.name != "router" else r.keys}) for r in plan.roles]
    keys = plan.keys.model_copy(update={"host": "127.0.0.1", "port": ports.get("single", plan.keys.port)})
    return plan.model_copy(update={"roles": roles, "keys": keys})


def plan_file(path: Path, hw: str, variant: str, recipe: str) -> Path:
    """A resolved plan, every role on a free port, written to `path`."""
    from dsv4ctl.launch.ports import free_port
    from dsv4ctl.resolve import resolve_plan
    from dsv4ctl.schema import dump_plan

    plan = resolve_plan(hw, variant, recipe)
    dump_plan(with_ports(plan, {r.name: free_port() for r in plan.roles}), path)
    return path


def serve_args(plan_path: Path, tmp_path: Path, *extra: str) -> list[str]:
    """`serve` with the stub-friendly defaults: forced (the planner's findings are not under test
    here), runs under tmp_path, short timeout and grace."""
    return ["serve", "--plan", str(plan_path), "--engine", "sglang", "--force", "--run-dir",
            str(tmp_path / "runs"), "--timeout", "20", "--grace", "3", *extra]
