"""Find the endpoint, model and GPU count from a serve run directory or a plan YAML.

A run directory's manifest.json is read as plain JSON; a plan file goes through the planner's
schema loader (dsv4ctl.schema, torch-free), so a malformed or hostile plan is one line, not a
traceback: the endpoint is the router's port on PD plans, else the single server's.
"""

from __future__ import annotations

import json
import platform
import sys
from pathlib import Path
from typing import Any

from dsv4ctl.errors import UserError


def from_source(source: Path) -> dict[str, Any]:
    """{base_url, model, gpus, plan, …} from a run dir (manifest.json; also named as `dsv4ctl stop`
    takes it: a run name or 'latest') or a plan file (YAML/JSON)."""
    source = Path(source)
    manifest = source / "manifest.json" if source.is_dir() else None
    if manifest is not None:
        if not manifest.is_file():
            raise UserError("no manifest.json in this run directory", where=str(source),
                            fix="pass the directory `dsv4ctl serve` printed, or a plan file")
        data = _read_manifest(manifest)
        plan_keys = _plan_keys(source / "plan.yaml") if (source / "plan.yaml").is_file() else {}
        facts = _model_facts(plan_keys) | {k: v for k, v in [("model_path", _served_path(source))] if v}
        return {k: data.get(k) for k in ("base_url", "model", "gpus")} | {"plan": _deployment(source, data)} | facts
    if not source.is_file():
        raise UserError("plan file not found", where=str(source), fix="pass an existing plan YAML")
    return from_plan(source)


def _read_manifest(path: Path) -> dict[str, Any]:
    """manifest.json as `serve` writes it; a corrupt or foreign one is one line, not a traceback."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise UserError(f"unreadable manifest ({type(exc).__name__})", where=str(path),
                        fix="pass a run directory written by `dsv4ctl serve`, or --base-url") from None
    if not isinstance(data, dict) or not isinstance(data.get("base_url"), str):
        raise UserError("manifest has no base_url", where=str(path),
                        fix="pass a run directory written by `dsv4ctl serve`, or --base-url")
    return data


def _deployment(run: Path, manifest: dict[str, Any]) -> dict[str, Any]:
    """What a result records about a deployment `serve` started: its plan file, engine, versions."""
    plan = run / "plan.yaml"
    keys = ("engine", "hardware", "variant", "recipe", "nodes", "versions", "started_at")
    return {"run": str(run), "file": str(plan) if plan.is_file() else None} | {k: manifest.get(k) for k in keys}


def _plan_keys(path: Path) -> dict[str, Any]:
    from dsv4ctl.schema.io import load_yaml  # the one bounded reader (size, aliases, nesting)

    plan = load_yaml(path) or {}
    return (plan.get("keys") or {}) if isinstance(plan, dict) else {}


def _served_path(run: Path) -> str | None:
    """The checkpoint the run's server was started with (`--model` / `--model-path` in command.json):
    the plan may name a placeholder that serve resolved (the tiny checkpoint)."""
    try:
        commands = json.loads((run / "command.json").read_text())
    except (OSError, json.JSONDecodeError):
        return None
    for argv in commands.values() if isinstance(commands, dict) else ():
        for flag, value in zip(argv, argv[1:]):
            if flag in ("--model", "--model-path"):
                return value
    return None


def _model_facts(keys: dict[str, Any]) -> dict[str, Any]:
    """Where the tokenizer is (the checkpoint) and the context the plan set, for token-exact prompts."""
    return {"model_path": keys.get("model_path"), "context_length": keys.get("context_length")}


def from_plan(path: Path) -> dict[str, Any]:
    """Endpoint, model and GPU count of a plan file, read and validated by the planner's schema
    loader (safe, bounded YAML; one-line errors naming the file and field)."""
    from dsv4ctl.schema import load_plan

    plan = load_plan(path)
    front = plan.role("router") or plan.role("single") or (plan.roles[0] if plan.roles else None)
    host = plan.keys.host or "127.0.0.1"
    host = "127.0.0.1" if host in ("0.0.0.0", "::") else host
    port = front.port if front is not None else plan.keys.port
    return {"base_url": f"http://{host}:{port}", "model": plan.keys.served_model_name,
            "gpus": plan.nodes * plan.gpus_per_node, "plan": str(path)} | _model_facts(plan.keys.model_dump())


def environment() -> dict[str, Any]:
    """Versions and hardware of the client side, recorded with every result."""
    from dsv4ctl import __version__

    return {"dsv4ctl": __version__, "python": sys.version.split()[0], "host": platform.node(),
            "platform": platform.platform(), "machine": platform.machine()}


async def server_info(session) -> dict[str, Any]:
    """Engine facts when the server exposes them (sglang /get_server_info, /v1/models); best effort.
    `session` is the run's client session (dsv4ctl.bench.rawhttp), bound to the base URL."""
    info: dict[str, Any] = {}
    for path in ("/get_server_info", "/v1/models"):
        try:
            status, data = await session.get_json(path)
        except Exception:  # noqa: BLE001 - an endpoint that lacks these is normal
            continue
        if status == 200 and data is not None:
            info[path] = data
    return info
