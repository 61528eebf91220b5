"""Checks made before anything starts: engine binaries, model path, ports, the GPUs this host lets us
see. Each failure is one UserError line, so a missing sglang or a busy port never shows up as a
crashed child."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
from pathlib import Path

from dsv4ctl.errors import UserError
from dsv4ctl.launch.ports import check_port, ensure_free
from dsv4ctl.launch.supervisor import ChildSpec
from dsv4ctl.render.sglang import GPU_ENV

ENGINE_BIN_ENV = "DSV4CTL_SGLANG_BIN"
ROUTER_BIN_ENV = "DSV4CTL_ROUTER_BIN"
_ROUTER_MODULE = "sglang_router.launch_router"
_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def host_gpus(env: dict[str, str], visible: str | None = None) -> dict[str, str]:
    """A child's env with its GPU slot (CUDA_VISIBLE_DEVICES from the plan's placement: indices on the
    node) read through the CUDA_VISIBLE_DEVICES serve itself runs under, if any: with `4,5,6,7`
    exported, slot `0,1` is GPUs `4,5`."""
    visible = os.environ.get(GPU_ENV) if visible is None else visible
    slot = env.get(GPU_ENV)
    if slot is None or not visible:
        return env
    ours = [v.strip() for v in visible.split(",") if v.strip()]
    want = [int(i) for i in slot.split(",")]
    if max(want) >= len(ours):
        raise UserError(f"the plan's roles share this node's GPUs up to index {max(want)}, but "
                        f"{GPU_ENV}={visible} shows {len(ours)}", where=GPU_ENV,
                        fix=f"unset {GPU_ENV} or list at least {max(want) + 1} GPUs in it")
    return {**env, GPU_ENV: ",".join(ours[i] for i in want)}


def is_router_argv(argv: list[str]) -> bool:
    return _ROUTER_MODULE in argv


def substitute_bins(argv: list[str], engine_bin: str | None, router_bin: str | None) -> list[str]:
    """Swap the engine (or router) program for an override: the value is an argv prefix (split like a
    shell would, never run through one), e.g. '/opt/venv/bin/sglang' or 'python3 stub.py'."""
    if argv[:1] == ["sglang"] and engine_bin:
        return shlex.split(engine_bin) + argv[1:]
    if is_router_argv(argv) and router_bin:
        return shlex.split(router_bin) + argv[argv.index(_ROUTER_MODULE) + 1 :]
    return argv


def bin_overrides(engine_bin: str | None) -> tuple[str | None, str | None]:
    """(--engine-bin or $DSV4CTL_SGLANG_BIN, $DSV4CTL_ROUTER_BIN)."""
    return engine_bin or os.environ.get(ENGINE_BIN_ENV), os.environ.get(ROUTER_BIN_ENV)


def check_program(spec: ChildSpec) -> None:
    prog = spec.argv[0]
    if not (shutil.which(prog) or (os.path.isfile(prog) and os.access(prog, os.X_OK))):
        raise UserError(f"engine binary '{prog}' for role {spec.role} not found",
                        where="serve", fix=f"install sglang (pip install 'dsv4ctl[engine]') or point "
                        f"{ENGINE_BIN_ENV} / --engine-bin at it")
    if len(spec.argv) > 2 and spec.argv[1] == "-m":
        _check_module(prog, spec.argv[2], spec.role)


def _check_module(python: str, module: str, role: str) -> None:
    probe = f"import importlib.util,sys; sys.exit(importlib.util.find_spec('{module.split('.')[0]}') is None)"
    try:
        ok = subprocess.run([python, "-c", probe], capture_output=True, timeout=30).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        ok = False
    if not ok:
        pkg = "sglang-router" if module.startswith("sglang_router") else module.split(".")[0]
        raise UserError(f"module '{module}' for role {role} is not installed for {python}",
                        where="serve", fix=f"pip install {pkg}, or set {ROUTER_BIN_ENV}")


def check_model_path(model_path: str, *, local_only: bool) -> None:
    """A local checkpoint must exist; a repo id (org/name) is left to the engine to download."""
    if not model_path:
        raise UserError("no model path in the plan", where="serve", fix="pass --model-path DIR_OR_REPO_ID")
    if Path(model_path).expanduser().exists():
        return
    if _REPO_ID.match(model_path) and not local_only:
        return
    kind = "a local checkpoint directory" if local_only else "a local directory or a repo id (org/name)"
    raise UserError(f"model path '{model_path}' does not exist", where="serve --model-path",
                    fix=f"pass {kind}")


def preflight(specs: list[ChildSpec], warn=None) -> None:
    for spec in specs:
        if spec.port is not None:
            check_port(spec.port, where=f"serve: port of role {spec.role}")
        check_program(spec)
    for spec in specs:
        if spec.port is not None and spec.http:
            ensure_free(spec.host or "0.0.0.0", spec.port, spec.role)
    for spec in specs:
        if exposed_without_key(spec):
            (warn or _warn)(f"SECURITY: {spec.role} binds {spec.host or '0.0.0.0'}:{spec.port} (every interface) "
                            "WITHOUT an API key: anyone who can reach this machine can use it; pass --api-key "
                            "(or $DSV4CTL_API_KEY) or --host 127.0.0.1")


def exposed_without_key(spec: ChildSpec) -> bool:
    """An HTTP endpoint on all interfaces that anyone may call. SGLang engines behind a PD router
    count too: they accept requests directly."""
    keyed = bool(spec.secret_env) or "--api-key" in spec.argv
    return spec.http and spec.host in ("0.0.0.0", "::", "") and not keyed


def _warn(message: str) -> None:
    from dsv4ctl.console import err

    err.print(f"[bold red]{message}[/]", highlight=False)
