"""From a checked plan and `serve`'s options to a Launch: pick the engine, apply the exit-code policy,
and build one ChildSpec per process. serve's --model-path/--host/--port are plan keys by now (the `cli`
layer, dsv4ctl.resolve.cli); the engine commands were rendered once by the pipeline."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from dsv4ctl.console import err
from dsv4ctl.errors import UserError
from dsv4ctl.launch import builtin, pd, preflight
from dsv4ctl.launch.session import RUN_DIR_TOKEN, Launch
from dsv4ctl.launch.supervisor import ChildSpec
from dsv4ctl.pipeline import CheckedPlan, PlanRequest
from dsv4ctl.schema.plan import LaunchPlan
from dsv4ctl.sizing.placement import slots


@dataclass
class ServeOptions:
    engine: str = "auto"  # auto | sglang | builtin
    engine_bin: str | None = None
    api_key: str | None = None
    name: str | None = None
    timeout: float = 1800.0
    grace: float = 10.0
    node_rank: int = 0
    node0_addr: str | None = None
    force: bool = False
    strict: bool = False


def embedded_default_request(**given) -> PlanRequest:
    """What `dsv4ctl serve` runs with no arguments on a machine without GPUs: the planner's cpu / tiny /
    balanced plan (the included runtime on CPU), bound to localhost like the runtime's own default."""
    return PlanRequest(hw="cpu", variant="tiny", recipe="balanced",
                       sets=("host=127.0.0.1", f"served_model_name={builtin.TINY_MODEL_NAME}"), **given)


def embedded_default_plan() -> LaunchPlan:
    from dsv4ctl.pipeline import make_plan

    return make_plan(embedded_default_request()).plan


def choose_engine(requested: str, plan: LaunchPlan | None, have_gpus: bool) -> str:
    """auto: the plan's engine; with no plan, the included runtime on a machine without GPUs."""
    if requested != "auto":
        return requested
    if plan is not None:
        return plan.engine
    return "sglang" if have_gpus else "builtin"


def sglang_specs(checked: CheckedPlan, opts: ServeOptions) -> list[ChildSpec]:
    """This node's rendered commands, with the engine/router binary overrides applied."""
    plan = checked.plan
    if plan.engine != "sglang":
        raise UserError(f"plan engine is '{plan.engine}', not sglang", where=f"plan for {plan.hardware}",
                        fix="use `serve --engine builtin` for the included runtime")
    if checked.render_error is not None:
        raise checked.render_error
    engine_bin, router_bin = preflight.bin_overrides(opts.engine_bin)
    if any(r.nodes > 1 for r in plan.roles) and not opts.node0_addr:
        raise UserError(f"a {plan.nodes}-node plan needs the first node's address", where="serve",
                        fix="pass --node0-addr HOST on every node (with --node-rank), or use `dsv4ctl render --target slurm|k8s`")
    cmds = [c for c in checked.commands if c.node_rank == opts.node_rank or c.role == "router"]
    if not cmds:
        raise UserError(f"the plan has no node rank {opts.node_rank}", fix=f"pass --node-rank below {plan.nodes}")
    check_one_node(plan, cmds)
    specs = [ChildSpec(role=c.role, argv=preflight.substitute_bins(list(c.argv), engine_bin, router_bin),
                       env=preflight.host_gpus(c.process_env()), port=_flag_int(c.argv, "--port", c.port), host=_flag(c.argv, "--host", "127.0.0.1"),
                       http=c.node_rank == 0, api_host=opts.node0_addr if c.node_rank else None)
             for c in cmds if opts.node_rank == 0 or c.role != "router"]
    if opts.api_key:
        front = next((s for s in specs if s.role == "router"), specs[0])
        front.argv += ["--api-key", opts.api_key]
    return specs


def check_one_node(plan: LaunchPlan, cmds) -> None:
    """`serve` starts its commands on this host: they must be ranks the plan places on one node
    (a PD plan whose roles fill a node each would otherwise put both on this host's GPUs)."""
    where = {(s.role, s.rank): s.node for s in slots(plan) if s.count}
    nodes = sorted({where[(c.role, c.node_rank)] for c in cmds if (c.role, c.node_rank) in where})
    if len(nodes) > 1:
        roles = " and ".join(sorted({c.role for c in cmds if c.role != "router"}))
        raise UserError(f"the plan places {roles} on {len(nodes)} different nodes; `serve` would start them "
                        f"all on this host's {plan.gpus_per_node} GPUs", where="serve",
                        fix="run one node per host with `dsv4ctl render --target slurm|k8s|docker`, or plan "
                            "smaller roles that share one node")


def _flag(argv: list[str], flag: str, default: str) -> str:
    """A flag's value in argv: what the server will really bind, whatever the plan's role says."""
    return argv[argv.index(flag) + 1] if flag in argv[:-1] else default


def _flag_int(argv: list[str], flag: str, default: int) -> int:
    return int(_flag(argv, flag, str(default)))


def builtin_model(plan: LaunchPlan, create: bool) -> tuple[str, str]:
    """(checkpoint dir, served name) for the included runtime; the tiny checkpoint is the default
    for tiny plans (unless --model-path named another) and is made on first use."""
    model = plan.keys.model_path
    if model and Path(model).expanduser().is_dir():
        return str(Path(model).expanduser()), plan.keys.served_model_name or Path(model).name
    if plan.variant == "tiny" and not plan.provenance.get("model_path", "").startswith("cli:"):
        tiny = builtin.ensure_tiny_checkpoint(log=lambda m: err.print(f"[dim]{m}[/]")) if create \
            else builtin.dsv4ctl_home() / "tiny"
        return str(tiny), plan.keys.served_model_name or builtin.TINY_MODEL_NAME
    preflight.check_model_path(model, local_only=True)
    return model, plan.keys.served_model_name or Path(model).name


def builtin_specs(plan: LaunchPlan, opts: ServeOptions, create: bool) -> tuple[list[ChildSpec], str]:
    builtin.require_runtime()
    model, served = builtin_model(plan, create)
    given = plan.keys.host if plan.provenance.get("host") == "cli:--host" else None
    host = builtin.builtin_host(given, plan.keys.host, lambda m: err.print(f"[yellow]note:[/] {m}", highlight=False))
    port = plan.keys.port
    secret = {builtin.API_KEY_ENV: opts.api_key} if opts.api_key else {}  # never in argv (docs/security.md)

    def argv(p: int) -> list[str]:
        return builtin.builtin_argv(model, host=host, port=p, served_model_name=served,
                                    plan_path=Path(RUN_DIR_TOKEN, "plan.yaml"))
    if pd.is_pd(plan):  # prefill + decode workers behind sglang-router (its port: the plan's, --port applied)
        if create:
            pd.check_bootstrap_port(host)
        specs = pd.pd_specs(plan, argv, host=host, router_port=None, api_key=opts.api_key, env=dict(plan.env))
        return [replace(s, secret_env=secret) if s.role != "router" else s for s in specs], served
    return [ChildSpec("single", argv(port), dict(plan.env), port, host, secret_env=secret)], served


def expected_model(plan: LaunchPlan) -> str:
    """The name SGLang answers with: --served-model-name, else the model path."""
    return plan.keys.served_model_name or plan.keys.model_path


def engine_gpus(plan: LaunchPlan, engine: str) -> int:
    """GPUs the deployment uses (bench divides throughput by it); 0 for the runtime on CPU."""
    if engine == "builtin" and plan.hardware == "cpu":
        return 0
    return sum(plan.role_keys(r.name).tp * plan.role_keys(r.name).pp for r in plan.roles if r.name != "router")


def build_launch(checked: CheckedPlan, opts: ServeOptions, *, engine: str, dry_run: bool) -> Launch:
    """Checked plan (the caller applied the exit-code policy) + options → what to run. Raises
    UserError for anything fixable up front."""
    import yaml

    from dsv4ctl.schema import plan_to_data

    plan = checked.plan
    if engine == "builtin":
        specs, model = builtin_specs(plan, opts, create=not dry_run)
    else:
        preflight.check_model_path(plan.keys.model_path, local_only=False)
        specs, model = sglang_specs(checked, opts), expected_model(plan)
    return Launch(
        name=opts.name or f"{plan.variant}-{plan.recipe}-{engine}", engine=engine, specs=specs, model=model,
        gpus=engine_gpus(plan, engine), plan_yaml=yaml.safe_dump(plan_to_data(plan), sort_keys=False),
        api_key=opts.api_key, timeout_s=opts.timeout, grace_s=opts.grace,
        summary={"hardware": plan.hardware, "variant": plan.variant, "recipe": plan.recipe,
                 "nodes": plan.nodes, "node_rank": opts.node_rank},
    )
