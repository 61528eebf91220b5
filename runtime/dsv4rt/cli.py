"""`python -m dsv4rt serve`: engine-neutral flags or a plan file -> EngineConfig -> uvicorn.

Precedence: an explicit flag, then the plan's `keys:` (with the `single` role's overrides), then
the EngineConfig default. Plan keys and flags the runtime does not implement are refused by name.
"""

from __future__ import annotations

import argparse
import logging
import os
import stat
import sys
from dataclasses import fields
from pathlib import Path

from dsv4rt.engine.config import EngineConfig
from dsv4rt.plan_keys import OPTION_NEUTRAL, PLAN_TO_OPTION, extra_roles, refused

DEFAULT_HOST, DEFAULT_PORT = "127.0.0.1", 30000
API_KEY_ENV = "DSV4RT_API_KEY"  # how `dsv4ctl serve` hands the key over: never on the command line
WILDCARD_HOSTS = ("0.0.0.0", "::", "")
log = logging.getLogger("dsv4rt")


class UsageError(ValueError):
    """A flag or plan key the runtime cannot honour; main() prints it and exits 2."""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m dsv4rt", description="The included DeepSeek-V4 runtime.")
    sub = p.add_subparsers(dest="command", required=True)
    s = sub.add_parser("serve", help="OpenAI-compatible server", argument_default=None)
    s.add_argument("--model", help="checkpoint directory (config.json, safetensors, tokenizer.json)")
    s.add_argument("--plan", type=Path, help="plan.yaml from `dsv4ctl plan`; flags override its keys")
    s.add_argument("--host", help=f"bind address (default {DEFAULT_HOST})")
    s.add_argument("--port", type=int, help=f"port (default {DEFAULT_PORT})")
    s.add_argument("--api-key", help=f"require `Authorization: Bearer KEY` on every endpoint but /health "
                   f"(visible in `ps`: prefer ${API_KEY_ENV} or --api-key-file)")
    s.add_argument("--api-key-file", type=Path, help="read the API key from a file only its owner can read")
    s.add_argument("--served-model-name", help="model id clients must send (default: the checkpoint dir name)")
    for f in fields(EngineConfig):
        if f.name != "model_path" and f.type in ("int", "int | None", "float | None", "str"):
            typ = {"int": int, "int | None": int, "float | None": float, "str": str}[f.type]
            s.add_argument(f"--{f.name.replace('_', '-')}", type=typ, help=f"default {f.default}")
    s.add_argument("--disable-prefix-reuse", action="store_true", default=None)
    s.add_argument("--tp-size", type=int, help="only 1 is implemented")
    s.add_argument("--disable-cuda-graph", action="store_true", default=None, help="decode without CUDA graphs")
    s.add_argument("--enable-torch-compile", dest="torch_compile", action="store_true", default=None,
                   help="CUDA only: compile the decode step (≈1.7-2x decode tok/s; ~40 s more start-up)")
    s.add_argument("--cuda-graph-max-bs-decode", dest="cuda_graph_max_bs", type=int,
                   help="SGLang's spelling of --cuda-graph-max-bs")
    s.add_argument("--cuda-graph-bs", "--cuda-graph-bs-decode", dest="cuda_graph_bs", type=int, nargs="+",
                   help="decode batch sizes to capture (default: a ladder up to the slot count)")
    s.add_argument("--speculative-algorithm", help="EAGLE (or NEXTN): speculative decoding with the MTP layer")
    s.add_argument("--plan-role", help="the plan role this server is (prefill, decode; default single)")
    add_disagg_flags(s)
    s.add_argument("--log-level", default="info")
    return p


def add_disagg_flags(s: argparse.ArgumentParser) -> None:
    """SGLang's PD flags (docs/runtime.md, "Prefill/decode disaggregation")."""
    s.add_argument("--disaggregation-mode", choices=["null", "prefill", "decode"], help="PD role (default null)")
    s.add_argument("--disaggregation-bootstrap-port", type=int, help="prefill: the bootstrap server's port (8998)")
    s.add_argument("--disaggregation-transfer-backend", help="only mooncake")
    s.add_argument("--disaggregation-ib-device", help="RDMA devices for Mooncake (unset: TCP)")
    s.add_argument("--disaggregation-bootstrap-timeout", type=float,
                   help="prefill: seconds a request waits for its decode registration, and a registration for its request")
    s.add_argument("--disaggregation-transfer-timeout", type=float,
                   help="decode: seconds a registered request waits for its state")


def disagg_config(opts: dict):
    """DisaggConfig for a PD role, else None (the runtime serves as a single server)."""
    mode = opts.get("disaggregation_mode")
    if mode in (None, "null"):
        return None
    from dsv4rt.disagg.config import DisaggConfig

    kw = {"bootstrap_port": "disaggregation_bootstrap_port", "transfer_backend": "disaggregation_transfer_backend",
          "ib_device": "disaggregation_ib_device", "bootstrap_timeout_s": "disaggregation_bootstrap_timeout",
          "transfer_timeout_s": "disaggregation_transfer_timeout"}
    return DisaggConfig(mode=mode, **{k: opts[o] for k, o in kw.items() if opts.get(o) is not None})


def read_plan(path: Path) -> dict:
    """The plan file as a mapping; anything else (unreadable, too big, not YAML, a list or a scalar,
    nested past the parser's limit) is one UsageError line."""
    import yaml

    from dsv4rt import yaml_io  # the one bounded reader (size, aliases, nesting)

    try:
        plan = yaml_io.load(path)
    except (OSError, ValueError, yaml.YAMLError, RecursionError) as e:  # ValueError: not UTF-8, or over a bound
        raise UsageError(f"{path}: cannot read plan: {' '.join(str(e).split()) or type(e).__name__}") from None
    plan = {} if plan is None else plan
    if not isinstance(plan, dict):
        raise UsageError(f"{path}: a plan file must be a mapping (`keys:`, `roles:`), not a {type(plan).__name__}")
    roles = plan.get("roles") or []
    if not isinstance(plan.get("keys") or {}, dict) or not isinstance(roles, list) \
            or not all(isinstance(r, dict) and isinstance(r.get("keys") or {}, dict) for r in roles):
        raise UsageError(f"{path}: `keys` must be a mapping and `roles` a list of mappings (write it with `dsv4ctl plan -o`)")
    return plan


def plan_options(path: Path, role: str | None = None) -> dict:
    """The serve options a plan file sets (its `role`'s keys over the plan's); unknown or unimplemented
    keys raise UsageError naming them."""
    plan = read_plan(path)
    keys = dict(plan.get("keys") or {})
    roles = {r.get("name"): r for r in plan.get("roles") or []}
    if role in (None, "single") and extra_roles(roles):
        raise UsageError(f"{path}: roles {extra_roles(roles)} (disaggregation): pass --plan-role ROLE to serve one")
    if role not in (None, "single") and role not in roles:
        raise UsageError(f"{path}: the plan has no role {role!r} (roles: {', '.join(sorted(roles))})")
    keys.update((roles.get(role or "single") or {}).get("keys") or {})
    bad = [f"{k}={v!r}" for k, v in refused(keys).items()]
    if bad:
        raise UsageError(f"{path}: plan keys not implemented by the included runtime: {', '.join(sorted(bad))}")
    return {PLAN_TO_OPTION[k]: v for k, v in keys.items() if k in PLAN_TO_OPTION and v not in (None, "")}


def api_key(opts: dict) -> str | None:
    """--api-key, else --api-key-file (refused when others may read it), else $DSV4RT_API_KEY."""
    if opts.get("api_key"):
        return opts["api_key"]
    path = opts.get("api_key_file")
    if path is None:
        return os.environ.get(API_KEY_ENV) or None
    try:
        mode = path.stat().st_mode
        key = path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as e:
        raise UsageError(f"--api-key-file {path}: cannot read ({e})") from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise UsageError(f"--api-key-file {path}: readable by others (mode {stat.S_IMODE(mode):o}); chmod 600 it")
    if not key:
        raise UsageError(f"--api-key-file {path}: the file is empty")
    return key


def check_port(port) -> int:
    """0 lets the OS pick a free port (uvicorn logs which); anything else outside 1..65535 is refused."""
    if port is None:
        return DEFAULT_PORT
    if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
        raise UsageError(f"port must be an integer in 0..65535 (0 = pick a free one), got {port!r}")
    return port


def resolve_options(ns: argparse.Namespace) -> dict:
    """Flags over plan keys; refuse implemented-only-at-neutral options with their names."""
    opts = plan_options(ns.plan, ns.plan_role) if ns.plan else {}
    opts.update({k: v for k, v in vars(ns).items() if v is not None and k not in ("plan", "command", "plan_role")})
    bad = [f"{k}={opts[k]!r}" for k, ok in OPTION_NEUTRAL.items() if opts.get(k) not in ok]
    if bad:
        raise UsageError(f"not implemented by the included runtime: {', '.join(bad)}")
    if not opts.get("model"):
        raise UsageError("--model is required (or keys.model_path in the plan)")
    opts["port"] = check_port(opts.get("port"))
    opts["api_key"] = api_key(opts)
    return opts


def default_device(opts: dict) -> dict:
    """--device / --dtype when not given: the GPU when there is one (in bfloat16), else the CPU in
    float32. EngineConfig's own defaults are the CPU's, so `dsv4ctl serve --engine builtin` (which passes
    neither) ran the runtime on the host's CPU next to an idle H200 (docs/tune.md)."""
    device = opts.get("device")
    if device is None:
        import torch

        device = "cuda" if torch.cuda.is_available() else "cpu"
    return {"device": device, "dtype": opts.get("dtype") or ("bfloat16" if device.startswith("cuda") else "float32")}


def engine_config(opts: dict) -> EngineConfig:
    names = {f.name for f in fields(EngineConfig)} - {"model_path", "enable_prefix_reuse", "cuda_graphs"}
    kw = {k: v for k, v in {**opts, **default_device(opts)}.items() if k in names}
    if kw.get("cuda_graph_bs"):
        kw["cuda_graph_bs"] = tuple(kw["cuda_graph_bs"])
    return EngineConfig(model_path=opts["model"], enable_prefix_reuse=not opts.get("disable_prefix_reuse"),
                        cuda_graphs=not opts.get("disable_cuda_graph"), **kw)


def build_app(opts: dict):
    """Load the checkpoint and assemble the app; a bad model directory or budget is a UsageError."""
    from dsv4rt.engine.model_runner import KVBudgetError
    from dsv4rt.server.app import create_app
    from dsv4rt.server.build import build_state

    cfg = engine_config(opts)
    name = opts.get("served_model_name") or Path(cfg.model_path).name
    try:
        state = build_state(cfg, name, opts.get("api_key"))
    except (ValueError, FileNotFoundError, KVBudgetError) as e:  # ConfigError, CheckpointError are ValueErrors
        raise UsageError(str(e)) from None
    pd = disagg_config(opts)
    if pd is not None:
        from dsv4rt.disagg.side import build_side

        state.disagg = build_side(pd, state, opts.get("host") or DEFAULT_HOST)
    return create_app(state)


def serve(opts: dict, app) -> None:
    import uvicorn

    host = opts.get("host") or DEFAULT_HOST
    if host in WILDCARD_HOSTS and not opts.get("api_key"):
        log.warning("SECURITY: binding %s (every interface) WITHOUT an API key: anyone who can reach this "
                    "machine can use the model; set $%s or --api-key-file, or bind 127.0.0.1", host, API_KEY_ENV)
    uvicorn.run(app, host=host, port=opts["port"], log_level=opts.get("log_level", "info"))


def main(argv: list[str] | None = None) -> int:
    ns = build_parser().parse_args(argv)
    logging.basicConfig(level=ns.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        opts = resolve_options(ns)
        engine_config(opts)  # validate before loading anything
        disagg_config(opts)
        app = build_app(opts)
    except (UsageError, ValueError) as e:
        print(f"dsv4rt serve: error: {e}", file=sys.stderr)
        return 2
    except RuntimeError as e:  # e.g. Mooncake cannot start: one line, not a traceback
        if type(e).__name__ != "TransferError":
            raise
        print(f"dsv4rt serve: error: {e}", file=sys.stderr)
        return 2
    serve(opts, app)
    return 0
