"""`dsv4ctl bench`: load (latency/throughput), accuracy (gsm8k, mmlu), report, compare.

The bench modules and matplotlib are imported inside the commands so the root CLI stays fast.
"""

from __future__ import annotations

from pathlib import Path

import typer

from dsv4ctl.bench.options import AccuracyOptions, LoadOptions
from dsv4ctl.commands.model_options import model_options

bench = typer.Typer(help="Benchmark an OpenAI-compatible endpoint: load, accuracy, reports.", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    """Add `bench` to the root app."""
    app.add_typer(bench, name="bench")


def run_ref(plan: Path | None) -> Path | None:
    """--plan as given, or a serve run named as `dsv4ctl stop` takes it (a name, part of one, 'latest')."""
    if plan is None or plan.exists() or plan.suffix in (".yaml", ".yml", ".json"):
        return plan
    from dsv4ctl.launch.rundir import find_run, runs_root

    return find_run(runs_root(None), str(plan)).path


@bench.command("load")
@model_options
def load(opts: LoadOptions) -> None:
    """Latency/throughput benchmark: TTFT, ITL, TPOT, E2E, tok/s (per GPU), goodput, error rate."""
    from dsv4ctl.bench import load_cmd

    load_cmd.main(opts.model_copy(update={"plan": run_ref(opts.plan)}))


@bench.command("accuracy")
@model_options
def accuracy(opts: AccuracyOptions) -> None:
    """GSM8K / MMLU accuracy with the whole setup (data checksum, shots, endpoint, extractor) stored."""
    from dsv4ctl.bench import accuracy_cmd

    accuracy_cmd.main(opts.model_copy(update={"plan": run_ref(opts.plan)}))


FMT = typer.Option("table", "--format", help="table | json (the summary, for scripts)")


@bench.command("report")
def report(run_dir: Path = typer.Argument(..., help="A bench run directory"), fmt: str = FMT) -> None:
    """Re-derive summary-based reports: table, CSV, Markdown, PNG plots, HTML."""
    from dsv4ctl.bench import service
    from dsv4ctl.bench.compare import load_summary
    from dsv4ctl.bench.report.build import write_reports
    from dsv4ctl.console import err

    service.check_format(fmt)
    summary = load_summary(run_dir)
    for path in write_reports(run_dir):
        err.print(f"wrote {path}", highlight=False)
    service.show(summary, str(run_dir), fmt)


@bench.command("compare")
def compare(a: Path = typer.Argument(...), b: Path = typer.Argument(...),
            allow_unlike: bool = typer.Option(False, "--allow-unlike", help="Compare runs of different workloads"),
            fmt: str = FMT) -> None:
    """Diff two runs' summaries metric by metric, sweep point by sweep point (paired by concurrency)."""
    from dsv4ctl.bench import service
    from dsv4ctl.bench.compare import compare as compare_runs, load_summary
    from dsv4ctl.console import emit_data, fit_table, out

    service.check_format(fmt)
    result = compare_runs(load_summary(a), load_summary(b), allow_unlike)
    if fmt == "json":
        emit_data(result, "json")
        return
    out.print(f"comparing {', '.join(result['points'])}: A = {a}, B = {b}", highlight=False)
    if result["unlike"]:
        out.print("[yellow]unlike workloads:[/] " + "; ".join(result["unlike"]), highlight=False)
    body = [[r["point"], r["metric"], f"{r['a']:.4g}", f"{r['b']:.4g}",
             "-" if r["change_pct"] is None else f"{r['change_pct']:+.1f}%"] for r in result["rows"]]
    out.print(fit_table(["point", "metric", "A", "B", "change"], body, justify="right"))
