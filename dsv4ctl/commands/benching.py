"""`dsv4ctl bench`: load (latency/throughput), accuracy (gsm8k, mmlu), report, compare.

aiohttp and matplotlib are imported inside the commands so the root CLI stays fast.
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


@bench.command("load")
@model_options
def load(opts: LoadOptions) -> None:
    """Latency/throughput benchmark: TTFT, ITL, TPOT, E2E, tok/s (per GPU), goodput, error rate."""
    from dsv4ctl.bench import load_cmd

    load_cmd.main(opts)


@bench.command("accuracy")
@model_options
def accuracy(opts: AccuracyOptions) -> None:
    """GSM8K / MMLU accuracy with the whole setup (data checksum, shots, endpoint, extractor) stored."""
    from dsv4ctl.bench import accuracy_cmd

    accuracy_cmd.main(opts)


@bench.command("report")
def report(run_dir: Path = typer.Argument(..., help="A bench run directory")) -> None:
    """Re-derive summary-based reports: table, CSV, Markdown, PNG plots, HTML."""
    from dsv4ctl.bench.compare import load_summary
    from dsv4ctl.bench.report.build import write_reports
    from dsv4ctl.bench.report.text import rich_table
    from dsv4ctl.console import out

    summary = load_summary(run_dir)
    for path in write_reports(run_dir):
        out.print(f"wrote {path}")
    out.print(rich_table(summary, title=str(run_dir)))


@bench.command("compare")
def compare(a: Path = typer.Argument(...), b: Path = typer.Argument(...)) -> None:
    """Diff two runs' summaries metric by metric."""
    from rich.table import Table

    from dsv4ctl.bench.compare import diff, load_summary
    from dsv4ctl.console import out

    table = Table(title=f"{a} → {b}")
    for col in ("metric", "A", "B", "change"):
        table.add_column(col, justify="right")
    for row in diff(load_summary(a), load_summary(b)):
        change = "-" if row["change_pct"] is None else f"{row['change_pct']:+.1f}%"
        table.add_row(row["metric"], f"{row['a']:.4g}", f"{row['b']:.4g}", change)
    out.print(table)
