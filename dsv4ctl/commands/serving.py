"""`serve`, `status`, `stop` and `render`: launching plans and rendering them for clusters.

Heavy work lives in dsv4ctl.launch and dsv4ctl.render and is imported inside the commands, so the
root CLI stays fast; the included runtime (torch) only ever runs in a child process.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from dsv4ctl.commands.plan_options import (
    ContextOpt, EngineVersionOpt, HicacheOpt, HwOpt, MegamoeOpt, MtpOpt, NodesOpt, QuantOpt, ReasoningOpt,
    RecipeOpt, SetOpt, ToolOpt, VariantOpt, build_plan,
)
from dsv4ctl.errors import UserError

ENGINES = ("auto", "sglang", "builtin")
TARGETS = ("k8s", "slurm", "docker", "sglang")


def _check_choice(value: str, choices: tuple[str, ...], flag: str) -> None:
    if value not in choices:
        from dsv4ctl.errors import did_you_mean

        raise UserError(f"unknown {flag} '{value}'", where=flag, fix=did_you_mean(value, list(choices)))


def _load_plan(plan_file: Optional[Path]):
    from dsv4ctl.schema import load_plan

    return load_plan(plan_file)


def _plan_for_serve(plan_file: Optional[Path], hw: Optional[str], variant: str, recipe: str,
                    sets: Optional[list[str]], toggles: dict):
    """--plan FILE, or a plan resolved from the same options as `dsv4ctl plan`, or None (the caller
    decides the default)."""
    if plan_file and hw:
        raise UserError("both --plan and --hw given", where="serve", fix="pass a plan file or the plan options, not both")
    if plan_file:
        return _load_plan(plan_file)
    if hw:
        return build_plan(hw, variant, recipe, sets=sets, **toggles)
    return None


def serve(
    plan_file: Optional[Path] = typer.Option(None, "--plan", help="A plan file from `dsv4ctl plan -o`."),
    hw: HwOpt = None, variant: VariantOpt = "flash", recipe: RecipeOpt = "balanced", quant: QuantOpt = None,
    nodes: NodesOpt = None, mtp: MtpOpt = None, megamoe: MegamoeOpt = None, hicache: HicacheOpt = None,
    reasoning_parser: ReasoningOpt = None, tool_call_parser: ToolOpt = None, context_length: ContextOpt = None,
    engine_version: EngineVersionOpt = None, set_: SetOpt = None,
    engine: str = typer.Option("auto", "--engine", help="sglang | builtin (the included runtime) | auto."),
    engine_bin: Optional[str] = typer.Option(None, "--engine-bin", help="The sglang program to run (also $DSV4CTL_SGLANG_BIN)."),
    model_path: Optional[str] = typer.Option(None, "--model-path", help="A local checkpoint or a repo id."),
    host: Optional[str] = typer.Option(None, "--host", help="Address to bind."),
    port: Optional[int] = typer.Option(None, "--port", help="Endpoint port (the router's on PD plans)."),
    api_key: Optional[str] = typer.Option(None, "--api-key", envvar="DSV4CTL_API_KEY", help="Require this API key."),
    served_model_name: Optional[str] = typer.Option(None, "--served-model-name", help="Model name clients use."),
    run_dir: Optional[Path] = typer.Option(None, "--run-dir", help="Where runs go (default ./runs or $DSV4CTL_RUNS)."),
    name: Optional[str] = typer.Option(None, "--name", help="Run name (default variant-recipe-engine)."),
    timeout: float = typer.Option(1800.0, "--timeout", help="Seconds to wait for readiness."),
    grace: float = typer.Option(10.0, "--grace", help="Seconds between SIGTERM and SIGKILL on stop."),
    node_rank: int = typer.Option(0, "--node-rank", help="Which node of a multi-node plan this is."),
    node0_addr: Optional[str] = typer.Option(None, "--node0-addr", help="Multi-node: the first node's address (rendezvous)."),
    force: bool = typer.Option(False, "--force", help="Launch even if validation reports errors."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Print what would run and exit."),
    detach: bool = typer.Option(False, "--detach", help="Leave the server running once ready."),
) -> None:
    """Validate a plan, start its engine processes, wait until they answer, and supervise them."""
    from dsv4ctl.launch import assemble
    from dsv4ctl.launch.health import require_positive_timeout

    _check_choice(engine, ENGINES, "--engine")
    require_positive_timeout(timeout)
    opts = assemble.ServeOptions(engine=engine, engine_bin=engine_bin, model_path=model_path, host=host,
                                 port=port, api_key=api_key, served_model_name=served_model_name, name=name,
                                 timeout=timeout, grace=grace, node_rank=node_rank,
                                 node0_addr=node0_addr, force=force)
    toggles = dict(quant=quant, nodes=nodes, mtp=mtp, megamoe=megamoe, hicache=hicache,
                   reasoning_parser=reasoning_parser, tool_call_parser=tool_call_parser,
                   context_length=context_length, engine_version=engine_version)
    plan = _plan_for_serve(plan_file, hw, variant, recipe, set_, toggles)
    raise typer.Exit(_launch(plan, opts, run_dir, dry_run=dry_run, detach=detach))


def _launch(plan, opts, run_dir: Optional[Path], *, dry_run: bool, detach: bool) -> int:
    """Engine choice → launch description → preflight → run directory → supervise. Returns the exit code."""
    from dsv4ctl.launch import assemble, fingerprint, preflight, rundir, session

    chosen = assemble.choose_engine(opts.engine, plan, have_gpus=bool(fingerprint.gpu_names()))
    if plan is None and chosen != "builtin":
        raise UserError("no plan given", where="serve", fix="pass --plan plan.yaml or the plan options (--hw, --variant, --recipe)")
    launch = assemble.build_launch(plan or assemble.embedded_default_plan(), opts, engine=chosen, dry_run=dry_run)
    if dry_run:
        session.print_dry_run(launch)
        return 0
    preflight.preflight(launch.specs)
    run = rundir.create(rundir.runs_root(run_dir), launch.name)
    return session.run_launch(run, launch, detach)


def status(
    run_dir: Optional[Path] = typer.Option(None, "--run-dir", help="Where runs are (default ./runs or $DSV4CTL_RUNS)."),
    fmt: str = typer.Option("table", "--format", help="table | json"),
    all_runs: bool = typer.Option(False, "--all", help="Also list stopped and failed runs."),
) -> None:
    """List served runs: status (checked against the live processes), health, endpoint."""
    from dsv4ctl.console import emit_data, out
    from dsv4ctl.launch import control, rundir

    _check_choice(fmt, ("table", "json"), "--format")
    rows = [control.run_state(r) for r in rundir.list_runs(rundir.runs_root(run_dir))]
    rows = rows if all_runs else [r for r in rows if r["status"] in control.LIVE_STATES]
    if fmt == "json":
        emit_data(rows, "json")
        return
    if not rows:
        out.print("no running servers" + ("" if all_runs else " (--all lists finished runs)"))
        return
    from rich.table import Table

    table = Table("status", "health", "endpoint", "model", "engine", "started")
    table.add_column("run", overflow="fold")  # the name is what `stop` needs: never truncate it
    for r in rows:
        health = "[green]ok[/]" if r["healthy"] else "[dim]-[/]"
        table.add_row(r["status"], health, r["base_url"] or "", r["model"] or "", r["engine"] or "",
                      r["started_at"] or "", r["name"])
    out.print(table)


def stop(
    run: str = typer.Argument(..., help="Run name (or a unique part of it, or 'latest'), or its directory."),
    run_dir: Optional[Path] = typer.Option(None, "--run-dir", help="Where runs are."),
    grace: float = typer.Option(10.0, "--grace", help="Seconds between SIGTERM and SIGKILL."),
) -> None:
    """Stop a detached run: SIGTERM to every process group, SIGKILL after the grace period."""
    from dsv4ctl.console import out
    from dsv4ctl.launch import control, rundir

    target = rundir.find_run(rundir.runs_root(run_dir), run)
    stopped, killed = control.stop_run(target, grace)
    if not stopped:
        out.print(f"{target.name}: nothing running")
        return
    note = f" (SIGKILL: {', '.join(killed)})" if killed else ""
    out.print(f"stopped {target.name}: {', '.join(stopped)}{note}", highlight=False)


def render(
    target: str = typer.Option(..., "--target", "-t", help="k8s | slurm | docker | sglang"),
    plan_file: Path = typer.Option(..., "--plan", help="A plan file from `dsv4ctl plan -o`."),
    name: Optional[str] = typer.Option(None, "--name", help="Object / job name (default dsv4-<variant>-<recipe>)."),
    image: Optional[str] = typer.Option(None, "--image", help="Container image (default: the hardware profile's)."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Write here instead of stdout."),
) -> None:
    """Render a plan for a cluster: Kubernetes LeaderWorkerSet, Slurm sbatch, docker run, or plain commands."""
    _check_choice(target, TARGETS, "--target")
    plan = _load_plan(plan_file)
    text = render_text(plan, target, name or f"dsv4-{plan.variant}-{plan.recipe}", image)
    if output is None:
        print(text, end="")
    else:
        output.write_text(text)
        from dsv4ctl.console import err

        err.print(f"wrote {output}", highlight=False)


def render_text(plan, target: str, name: str, image: Optional[str]) -> str:
    """One plan rendered for one target. Commands carry a placeholder rendezvous host that each
    target replaces with its own way of naming a role's first node."""
    import shlex

    from dsv4ctl.launch.topology import NODE0
    from dsv4ctl.render import docker, k8s, slurm
    from dsv4ctl.render.sglang import render_commands

    commands = render_commands(plan, node0_addr=NODE0)
    if target == "sglang":
        return "".join(f"# {c.role} rank {c.node_rank}\n" + " ".join(f"{k}={shlex.quote(v)}" for k, v in c.env.items())
                       + (" " if c.env else "") + shlex.join(c.argv) + "\n" for c in commands)
    if target == "slurm":
        return slurm.render_slurm(plan, commands, name=name, image=image)
    renderer = k8s.render_k8s if target == "k8s" else docker.render_docker
    return renderer(plan, commands, name=name, image=image or docker.default_image(plan))


def register(app: typer.Typer) -> None:
    """Add this module's commands to the root app."""
    app.command("serve")(serve)
    app.command("status")(status)
    app.command("stop")(stop)
    app.command("render")(render)
