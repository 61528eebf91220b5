"""`serve`, `status`, `stop` and `render`: launching plans and rendering them for clusters.

Heavy work lives in dsv4ctl.launch and dsv4ctl.render and is imported inside the commands, so the
root CLI stays fast; the included runtime (torch) only ever runs in a child process.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Optional

import typer

from dsv4ctl.commands.plan_options import (
    ForceOpt, HwOpt, RecipeOpt, SetOpt, StrictOpt, VariantOpt, model_options,
)
from dsv4ctl.errors import UserError
from dsv4ctl.schema.recipe import CliOverrides, Toggles

if TYPE_CHECKING:
    from dsv4ctl.launch.assemble import ServeOptions
    from dsv4ctl.pipeline import CheckedPlan, PlanRequest

ENGINES = ("auto", "sglang", "builtin")
TARGETS = ("k8s", "slurm", "docker", "sglang")


def _check_choice(value: str, choices: tuple[str, ...], flag: str) -> None:
    if value not in choices:
        from dsv4ctl.errors import did_you_mean

        raise UserError(f"unknown {flag} '{value}'", where=flag, fix=did_you_mean(value, list(choices)))


def _checked_for_serve(plan_file: Optional[Path], request: PlanRequest | None, cli: CliOverrides,
                       node0_addr: Optional[str]) -> CheckedPlan | None:
    """--plan FILE (with the cli layer on top), or the plan `request` resolves, or None (the caller
    decides the default). Either way checked by the pipeline: rendered once, every rule run."""
    from dsv4ctl.pipeline import RenderOptions, check_plan, make_plan

    if plan_file and request:
        raise UserError("both --plan and --hw given", where="serve", fix="pass a plan file or the plan options, not both")
    if plan_file:
        from dsv4ctl.resolve.cli import apply_cli_to_plan
        from dsv4ctl.schema import load_plan

        return check_plan(apply_cli_to_plan(load_plan(plan_file), cli), RenderOptions(node0_addr=node0_addr))
    if request:
        return make_plan(request)
    return None


@model_options
def serve(
    plan_file: Optional[Path] = typer.Option(None, "--plan", help="A plan file from `dsv4ctl plan -o`."),
    hw: HwOpt = None, variant: VariantOpt = "flash", recipe: RecipeOpt = "balanced", toggles: Toggles = None,
    set_: SetOpt = None, cli: CliOverrides = None,
    engine: str = typer.Option("auto", "--engine", help="sglang | builtin (the included runtime) | auto."),
    engine_bin: Optional[str] = typer.Option(None, "--engine-bin", help="The sglang program to run (also $DSV4CTL_SGLANG_BIN)."),
    api_key: Optional[str] = typer.Option(None, "--api-key", envvar="DSV4CTL_API_KEY", help="Require this API key."),
    run_dir: Optional[Path] = typer.Option(None, "--run-dir", help="Where runs go (default ./runs or $DSV4CTL_RUNS)."),
    name: Optional[str] = typer.Option(None, "--name", help="Run name (default variant-recipe-engine)."),
    timeout: float = typer.Option(1800.0, "--timeout", help="Seconds to wait for readiness."),
    grace: float = typer.Option(10.0, "--grace", help="Seconds between SIGTERM and SIGKILL on stop."),
    node_rank: int = typer.Option(0, "--node-rank", help="Which node of a multi-node plan this is."),
    node0_addr: Optional[str] = typer.Option(None, "--node0-addr", help="Multi-node: the first node's address (rendezvous)."),
    force: ForceOpt = False, strict: StrictOpt = False,
    dry_run: bool = typer.Option(False, "--dry-run", help="Print what would run and exit."),
    detach: bool = typer.Option(False, "--detach", help="Leave the server running once ready."),
) -> None:
    """Validate a plan, start its engine processes, wait until they answer, and supervise them."""
    from dsv4ctl.launch import assemble
    from dsv4ctl.launch.health import require_positive_timeout, require_seconds
    from dsv4ctl.pipeline import PlanRequest, RenderOptions

    _check_choice(engine, ENGINES, "--engine")
    require_positive_timeout(timeout)
    require_seconds(grace, "--grace", allow_zero=True)
    opts = assemble.ServeOptions(engine=engine, engine_bin=engine_bin, api_key=api_key, name=name,
                                 timeout=timeout, grace=grace, node_rank=node_rank,
                                 node0_addr=node0_addr, force=force, strict=strict)
    request = PlanRequest(hw=hw, variant=variant, recipe=recipe, toggles=toggles, sets=tuple(set_ or ()), cli=cli,
                          render=RenderOptions(node0_addr=node0_addr)) if hw else None
    checked = _checked_for_serve(plan_file, request, cli, node0_addr)
    raise typer.Exit(_launch(checked, cli, opts, run_dir, dry_run=dry_run, detach=detach))


def _launch(checked: CheckedPlan | None, cli: CliOverrides, opts: ServeOptions, run_dir: Optional[Path], *,
            dry_run: bool, detach: bool) -> int:
    """Engine choice → exit-code policy → launch description → preflight → run directory → supervise."""
    from dsv4ctl.commands.verdict import refuse_unless_ok
    from dsv4ctl.launch import assemble, fingerprint, preflight, rundir, session

    plan = checked.plan if checked else None
    chosen = assemble.choose_engine(opts.engine, plan, have_gpus=bool(fingerprint.gpu_names()))
    if checked is None and chosen != "builtin":
        raise UserError("no plan given", where="serve", fix="pass --plan plan.yaml or the plan options (--hw, --variant, --recipe)")
    if checked is None:
        from dsv4ctl.pipeline import make_plan

        checked = make_plan(assemble.embedded_default_request(cli=cli))
    refuse_unless_ok(checked, "serve", force=opts.force, strict=opts.strict)
    launch = assemble.build_launch(checked, opts, engine=chosen, dry_run=dry_run)
    if dry_run:
        session.print_dry_run(launch)
        return 0
    from dsv4ctl.launch.ports import claimed

    with claimed([s.port for s in launch.specs if s.port and s.http]):  # until the children hold them
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
    rows = [control.run_state(r) | {"dir": str(r.path)} for r in rundir.known_runs(rundir.runs_root(run_dir))]
    rows = rows if all_runs else [r for r in rows if r["status"] in control.LIVE_STATES]
    if fmt == "json":
        emit_data(rows, "json")
        return
    if not rows:
        out.print("no running servers" + ("" if all_runs else " (--all lists finished runs)"))
        return
    from dsv4ctl.console import fit_table

    head = ["run", "status", "health", "endpoint", "model", "engine", "started"]
    body = [[r["name"], r["status"], "ok" if r["healthy"] else "-", (r["base_url"] or "").split("://")[-1],
             r["model"] or "", r["engine"] or "", (r["started_at"] or "").replace("T", " ").rstrip("Z")]
            for r in rows]
    # the run name is what `stop` needs: it folds, never drops; the rest goes by priority
    out.print(fit_table(head, body, drop_order=["started", "engine", "model"]), highlight=False)


def stop(
    run: str = typer.Argument(..., help="Run name (or a unique part of it, or 'latest'), or its directory."),
    run_dir: Optional[Path] = typer.Option(None, "--run-dir", help="Where runs are."),
    grace: float = typer.Option(10.0, "--grace", help="Seconds between SIGTERM and SIGKILL."),
) -> None:
    """Stop a detached run: SIGTERM to every process group, SIGKILL after the grace period."""
    from dsv4ctl.console import out
    from dsv4ctl.launch import control, rundir
    from dsv4ctl.launch.health import require_seconds

    require_seconds(grace, "--grace", allow_zero=True)
    target = rundir.find_run(rundir.runs_root(run_dir), run)
    for role, pgid in control.foreign_groups(target.read_manifest()).items():
        out.print(f"[yellow]not signalled:[/] {role}: process group {pgid} is not the one this run started "
                  "(pid reused or manifest edited)", highlight=False)
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
    force: ForceOpt = False, strict: StrictOpt = False,
) -> None:
    """Render a plan for a cluster: Kubernetes LeaderWorkerSet, Slurm sbatch, docker run, or plain commands.
    The plan is checked first, with the same rules as `validate`; a plan with errors is refused unless --force."""
    from dsv4ctl.commands.verdict import refuse_unless_ok
    from dsv4ctl.pipeline import RenderOptions, check_plan
    from dsv4ctl.render.targets import render_target
    from dsv4ctl.render.topology import NODE0
    from dsv4ctl.schema import load_plan

    _check_choice(target, TARGETS, "--target")
    checked = check_plan(load_plan(plan_file), RenderOptions(node0_addr=NODE0))
    refuse_unless_ok(checked, "render", force=force, strict=strict)
    if checked.render_error is not None:
        raise checked.render_error
    plan = checked.plan
    text = render_target(plan, checked.commands, target, name or f"dsv4-{plan.variant}-{plan.recipe}", image)
    if output is None:
        print(text, end="")
    else:
        from dsv4ctl.files import write_text

        write_text(output, text, where="--output")
        from dsv4ctl.console import err

        err.print(f"wrote {output}", highlight=False)


def register(app: typer.Typer) -> None:
    """Add this module's commands to the root app."""
    app.command("serve")(serve)
    app.command("status")(status)
    app.command("stop")(stop)
    app.command("render")(render)
