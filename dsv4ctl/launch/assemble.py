"""From `serve`'s options to a Launch: pick the plan and engine, apply the options users reach for
first (--model-path, --host, --port, --api-key), validate, and build one ChildSpec per process."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dsv4ctl.console import err
from dsv4ctl.errors import UserError
from dsv4ctl.launch import builtin, preflight
from dsv4ctl.launch.session import RUN_DIR_TOKEN, Launch
from dsv4ctl.launch.supervisor import ChildSpec


@dataclass
class ServeOptions:
    engine: str = "auto"  # auto | sglang | builtin
    engine_bin: str | None = None
    model_path: str | None = None
    host: str | None = None
    port: int | None = None
    api_key: str | None = None
    served_model_name: str | None = None
    name: str | None = None
    timeout: float = 1800.0
    grace: float = 10.0
    node_rank: int = 0
    node0_addr: str | None = None
    force: bool = False


def embedded_default_plan() -> Any:
    """What `dsv4ctl serve` runs with no arguments on a machine without GPUs: the planner's cpu / tiny /
    balanced plan (the included runtime on CPU), bound to localhost like the runtime's own default."""
    from dsv4ctl.resolve import resolve_plan

    return resolve_plan("cpu", "tiny", "balanced", None,
                        ["host=127.0.0.1", f"served_model_name={builtin.TINY_MODEL_NAME}"])


def choose_engine(requested: str, plan: Any | None, have_gpus: bool) -> str:
    """auto: the plan's engine; with no plan, the included runtime on a machine without GPUs."""
    if requested != "auto":
        return requested
    if plan is not None:
        return plan.engine
    return "sglang" if have_gpus else "builtin"


def apply_overrides(plan: Any, opts: ServeOptions) -> Any:
    """The plan with the command-line overrides in it, so plan.yaml in the run dir is what ran.
    --port moves the endpoint: the single server, or the router of a PD plan."""
    keys = {k: v for k, v in (("model_path", opts.model_path), ("host", opts.host),
                              ("served_model_name", opts.served_model_name)) if v is not None}
    front = "router" if plan.role("router") else "single"
    if opts.port is not None and front == "single":
        keys["port"] = opts.port
    roles = [_with_port(r, opts.port) if r.name == front and opts.port is not None else r for r in plan.roles]
    return plan.model_copy(update={"keys": plan.keys.model_copy(update=keys), "roles": roles})


def _with_port(role: Any, port: int) -> Any:
    # A role's own keys win over the plan's, so a port the role carries there moves too.
    keys = {**role.keys, "port": port} if "port" in role.keys else role.keys
    return role.model_copy(update={"port": port, "keys": keys})


def validate(plan: Any, force: bool) -> None:
    """Run the rules; errors stop the launch unless --force."""
    from dsv4ctl.validate import run_rules

    findings = run_rules(plan)
    for f in findings:
        colour = {"error": "red", "warning": "yellow"}.get(f.severity, "blue")
        err.print(f"[{colour}]{f.severity}[/] {f.rule}: {f.message}" + (f" (fix: {f.fix})" if f.fix else ""),
                  highlight=False)
    errors = [f.rule for f in findings if f.severity == "error"]
    if errors and not force:
        raise UserError(f"the plan fails validation ({', '.join(errors)})", where="serve",
                        fix="fix the plan (see above) or pass --force to launch anyway")


def sglang_specs(plan: Any, opts: ServeOptions) -> list[ChildSpec]:
    """This node's rendered commands, with the engine/router binary overrides applied."""
    from dsv4ctl.render.sglang import render_commands

    engine_bin, router_bin = preflight.bin_overrides(opts.engine_bin)
    if any(r.nodes > 1 for r in plan.roles) and not opts.node0_addr:
        raise UserError(f"a {plan.nodes}-node plan needs the first node's address", where="serve",
                        fix="pass --node0-addr HOST on every node (with --node-rank), or use `dsv4ctl render --target slurm|k8s`")
    cmds = [c for c in render_commands(plan, node0_addr=opts.node0_addr)
            if c.node_rank == opts.node_rank or c.role == "router"]
    if not cmds:
        raise UserError(f"the plan has no node rank {opts.node_rank}", fix=f"pass --node-rank below {plan.nodes}")
    specs = [ChildSpec(role=c.role, argv=preflight.substitute_bins(list(c.argv), engine_bin, router_bin),
                       env=dict(c.env), port=_flag_int(c.argv, "--port", c.port), host=_flag(c.argv, "--host", "127.0.0.1"),
                       http=c.node_rank == 0, api_host=opts.node0_addr if c.node_rank else None)
             for c in cmds if opts.node_rank == 0 or c.role != "router"]
    if opts.api_key:
        front = next((s for s in specs if s.role == "router"), specs[0])
        front.argv += ["--api-key", opts.api_key]
    return specs


def _flag(argv: list[str], flag: str, default: str) -> str:
    """A flag's value in argv: what the server will really bind, whatever the plan's role says."""
    return argv[argv.index(flag) + 1] if flag in argv[:-1] else default


def _flag_int(argv: list[str], flag: str, default: int) -> int:
    return int(_flag(argv, flag, str(default)))


def builtin_model(plan: Any, opts: ServeOptions, create: bool) -> tuple[str, str]:
    """(checkpoint dir, served name) for the included runtime; the tiny checkpoint is the default
    for tiny plans and is made on first use."""
    model = opts.model_path or plan.keys.model_path
    if model and Path(model).expanduser().is_dir():
        return str(Path(model).expanduser()), plan.keys.served_model_name or Path(model).name
    if plan.variant == "tiny" and not opts.model_path:
        tiny = builtin.ensure_tiny_checkpoint(log=lambda m: err.print(f"[dim]{m}[/]")) if create \
            else builtin.dsv4ctl_home() / "tiny"
        return str(tiny), plan.keys.served_model_name or builtin.TINY_MODEL_NAME
    preflight.check_model_path(model, local_only=True)
    return model, plan.keys.served_model_name or Path(model).name


def builtin_specs(plan: Any, opts: ServeOptions, create: bool) -> tuple[list[ChildSpec], str]:
    builtin.require_runtime()
    model, served = builtin_model(plan, opts, create)
    host = opts.host or plan.keys.host
    port = opts.port or plan.keys.port
    argv = builtin.builtin_argv(model, host=host, port=port, served_model_name=served,
                                api_key=opts.api_key, plan_path=Path(RUN_DIR_TOKEN, "plan.yaml"))
    return [ChildSpec("single", argv, dict(plan.env), port, host)], served


def expected_model(plan: Any) -> str:
    """The name SGLang answers with: --served-model-name, else the model path."""
    return plan.keys.served_model_name or plan.keys.model_path


def engine_gpus(plan: Any, engine: str) -> int:
    """GPUs the deployment uses (bench divides throughput by it); 0 for the runtime on CPU."""
    if engine == "builtin" and plan.hardware == "cpu":
        return 0
    return sum(plan.role_keys(r.name).tp * plan.role_keys(r.name).pp for r in plan.roles if r.name != "router")


def build_launch(plan: Any, opts: ServeOptions, *, engine: str, dry_run: bool) -> Launch:
    """Validated plan + options → what to run. Raises UserError for anything fixable up front."""
    import yaml

    from dsv4ctl.schema import plan_to_data

    plan = apply_overrides(plan, opts)
    validate(plan, opts.force)
    if engine == "builtin":
        specs, model = builtin_specs(plan, opts, create=not dry_run)
    else:
        preflight.check_model_path(plan.keys.model_path, local_only=False)
        specs, model = sglang_specs(plan, opts), expected_model(plan)
    return Launch(
        name=opts.name or f"{plan.variant}-{plan.recipe}-{engine}", engine=engine, specs=specs, model=model,
        gpus=engine_gpus(plan, engine), plan_yaml=yaml.safe_dump(plan_to_data(plan), sort_keys=False),
        api_key=opts.api_key, timeout_s=opts.timeout, grace_s=opts.grace,
        summary={"hardware": plan.hardware, "variant": plan.variant, "recipe": plan.recipe,
                 "nodes": plan.nodes, "node_rank": opts.node_rank},
    )
