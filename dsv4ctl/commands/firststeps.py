"""A new user's first commands: `quickstart` (the whole path in minutes, dsv4ctl.quickstart) and
`doctor` (this host's readiness, alone or against a plan; the checks live in dsv4ctl.doctor)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

MARK = {"ok": "[green]ok[/]", "info": "[dim]info[/]", "warn": "[yellow]warn[/]", "fail": "[red]FAIL[/]",
        "unknown": "[yellow]could not check[/]"}


def doctor(
    plan_file: Optional[Path] = typer.Option(None, "--plan", help="Check this host against a plan's needs."),
    fmt: str = typer.Option("table", "--format", help="table | json"),
) -> None:
    """What this host can run, and with --plan what it lacks for that plan (exit 1 when a check fails).

    GPUs, driver/CUDA, NVLink, InfiniBand ports, memlock, /dev/shm, engine packages, fitting recipes."""
    from dsv4ctl import doctor as doc
    from dsv4ctl.commands.serving import _check_choice

    _check_choice(fmt, ("table", "json"), "--format")
    plan = None
    if plan_file is not None:
        from dsv4ctl.schema import load_plan

        plan = load_plan(plan_file)
    result = doc.report(doc.gather(), plan)
    if fmt == "json":
        from dsv4ctl.console import emit_data

        emit_data(result, "json")
    else:
        show(result)
    raise typer.Exit(0 if result["ok"] else 1)


def show(result: dict) -> None:
    from dsv4ctl.console import fit_table, out

    rows = []
    for c in result["checks"]:
        rows.append([c["name"], MARK[c["status"]], c["detail"] + (f"\n[bold]fix:[/] {c['fix']}" if c["fix"] else "")])
    out.print(fit_table(["check", "status", "detail"], rows, title="this host"))
    if result["profile"] is None:
        out.print("hardware profile: none matches these GPUs (dsv4ctl plan --hw … picks one by hand)")
        return
    fits = [f"{r['variant']}/{r['recipe']}" for r in result["recipes"] if r["fits"]]
    out.print(f"hardware profile: [bold]{result['profile']}[/]", highlight=False)
    out.print("recipes that fit here: " + (", ".join(fits) or "none on one node (see --format json for why)"),
              highlight=False)


def quickstart(
    out: Optional[Path] = typer.Option(None, "--out", help="Where the report goes (default runs/quickstart-<time>)."),
    port: Optional[int] = typer.Option(None, "--port", help="Port for the server (default: a free one)."),
    fmt: str = typer.Option("text", "--format", help="text | json (the result, for scripts)"),
) -> None:
    """The whole path on this machine in minutes: plan, serve, GSM8K + MMLU, load sweep, one report.

    Serves the tiny model (random weights: accuracy ~0 by design) on the included runtime, then stops it."""
    import time

    from dsv4ctl import quickstart as qs
    from dsv4ctl.commands.serving import _check_choice

    _check_choice(fmt, ("text", "json"), "--format")
    out = out or Path("runs") / f"quickstart-{time.strftime('%Y%m%d-%H%M%S')}"
    out.mkdir(parents=True, exist_ok=True)
    result = qs.run(out, port)
    if fmt == "json":
        from dsv4ctl.console import emit_data

        emit_data(result, "json")
        return
    from dsv4ctl.console import out as console

    console.print(f"[bold green]report:[/] {result['report']}", highlight=False)


def register(app: typer.Typer) -> None:
    app.command("quickstart")(quickstart)
    app.command("doctor")(doctor)
