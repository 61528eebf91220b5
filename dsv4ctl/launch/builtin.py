"""The included runtime as an engine: its argv, and the tiny checkpoint created on first use.

The runtime runs as a child process (`python -m dsv4rt serve`), so dsv4ctl itself never imports
torch; the checkpoint is made by `dsv4ctl runtime make-checkpoint` in a child for the same reason.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

from dsv4ctl.errors import UserError

TINY_MODEL_NAME = "dsv4-tiny"
API_KEY_ENV = "DSV4RT_API_KEY"  # the runtime reads its key here (dsv4rt/cli.py): argv is world-readable in ps
LOCAL_HOST = "127.0.0.1"
WILDCARD_HOSTS = ("0.0.0.0", "::", "")


def dsv4ctl_home() -> Path:
    """$DSV4CTL_HOME, else ~/.cache/dsv4ctl (checkpoints and other per-user state)."""
    return Path(os.environ.get("DSV4CTL_HOME") or Path.home() / ".cache" / "dsv4ctl")


def runtime_available() -> bool:
    try:
        return importlib.util.find_spec("dsv4rt.server") is not None
    except ModuleNotFoundError:
        return False


def require_runtime() -> None:
    if not runtime_available():
        raise UserError("the included runtime (dsv4rt.server) is not installed",
                        where="serve --engine builtin", fix="pip install 'dsv4ctl[runtime]'")


def ensure_tiny_checkpoint(log=print) -> Path:
    """The tiny checkpoint's directory, creating it on first use.

    Made in a temporary sibling and renamed into place: an interrupted first run leaves no
    half-written checkpoint that a later run would try to load."""
    target = dsv4ctl_home() / "tiny"
    if (target / "config.json").is_file():
        return target
    tmp = target.with_name(f".tiny-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    log(f"creating the tiny checkpoint in {target} (first use)")
    cmd = [sys.executable, "-m", "dsv4ctl", "runtime", "make-checkpoint", "--preset", "tiny", "--out", str(tmp)]
    try:
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
        if res.returncode != 0 or not (tmp / "config.json").is_file():
            raise UserError(f"could not create the tiny checkpoint: {(res.stderr or res.stdout).strip()[-300:]}",
                            where=str(target), fix="run `dsv4ctl runtime make-checkpoint --preset tiny` to see why")
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp.rename(target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def builtin_argv(model: str, *, host: str, port: int, served_model_name: str,
                 plan_path: Path | None = None) -> list[str]:
    """`python -m dsv4rt serve ...` with the options that pass through to the runtime. The API key
    is not among them: it travels in the child's environment (`secret_env`), never in argv."""
    argv = [sys.executable, "-m", "dsv4rt", "serve", "--model", model,
            "--host", host, "--port", str(port), "--served-model-name", served_model_name]
    if plan_path is not None:
        argv += ["--plan", str(plan_path)]
    return argv


def builtin_host(cli_host: str | None, plan_host: str | None, warn) -> str:
    """The included runtime binds 127.0.0.1 unless --host says otherwise: a plan's 0.0.0.0 is the
    SGLang default of the planner, not a request to expose a CPU test server to the network."""
    if cli_host:
        return cli_host
    if plan_host and plan_host not in WILDCARD_HOSTS:
        return plan_host
    if plan_host:
        warn(f"the plan binds {plan_host}; the included runtime binds {LOCAL_HOST} unless you pass --host {plan_host}")
    return LOCAL_HOST
