"""`dsv4ctl bench`: load (latency/throughput), accuracy (gsm8k, mmlu), report, compare.

aiohttp and matplotlib are imported inside the commands so the root CLI stays fast.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

bench = typer.Typer(help="Benchmark an OpenAI-compatible endpoint: load, accuracy, reports.", no_args_is_help=True)

O = typer.Option
BASE = O(None, "--base-url", help="Endpoint, e.g. http://127.0.0.1:30000")
MODEL = O(None, "--model", help="Expected model name (default: the first of /v1/models)")
PLAN = O(None, "--plan", help="Plan YAML or serve run directory: endpoint, model and GPU count from it")
OUT = O(None, "--out", help="Run directory (default runs/bench/<kind>-<time>)")


def register(app: typer.Typer) -> None:
    """Add `bench` to the root app."""
    app.add_typer(bench, name="bench")


@bench.command("load")
def load(
    base_url: Optional[str] = BASE, model: Optional[str] = MODEL, plan: Optional[Path] = PLAN,
    concurrency: Optional[int] = O(None, "--concurrency", "-c", help="Closed loop: requests in flight"),
    request_rate: Optional[float] = O(None, "--request-rate", help="Open loop: Poisson arrivals per second"),
    num_prompts: int = O(200, "--num-prompts", "-n", help="Requests per sweep point (≥ 5×concurrency advised)"),
    input_len: int = O(1024, "--input-len"), output_len: int = O(1024, "--output-len"),
    range_ratio: float = O(0.0, "--range-ratio", help="Length spread X: [L(1−X), L(1+X)] (see --range-style)"),
    range_style: str = O("centered", "--range-style", help="centered (mean L, like vLLM) or sglang ([X·L, L])"),
    workload: str = O("random", "--workload", help="random | shared-prefix | trace"),
    trace: Optional[Path] = O(None, "--trace", help="JSONL with prompt/messages (+output_len) per line"),
    prefix_groups: int = O(8, "--prefix-groups"), prefix_len: int = O(512, "--prefix-len"),
    sweep: Optional[str] = O(None, "--sweep", help="Concurrency ladder, e.g. 1,8,64"),
    slo: Optional[str] = O(None, "--slo", help="Goodput SLOs in ms, e.g. ttft=200,tpot=50"),
    gpus: Optional[int] = O(None, "--gpus", help="GPU count for tok/s/GPU (default: from --plan)"),
    warmup: int = O(2, "--warmup"), api: str = O("chat", "--api", help="chat | completions"),
    ignore_eos: bool = O(True, "--ignore-eos/--no-ignore-eos"),
    percentiles: str = O("50,90,99", "--percentiles"), max_error_rate: float = O(0.05, "--max-error-rate"),
    timeout: float = O(600.0, "--timeout"), api_key: Optional[str] = O(None, "--api-key", envvar="OPENAI_API_KEY"),
    extra_body: Optional[str] = O(None, "--extra-body", help="JSON merged into every request"),
    seed: int = O(0, "--seed"), out: Optional[Path] = OUT, resume: bool = O(False, "--resume"),
    progress: bool = O(True, "--progress/--no-progress"),
) -> None:
    """Latency/throughput benchmark: TTFT, ITL, TPOT, E2E, tok/s (per GPU), goodput, error rate."""
    from dsv4ctl.bench import load_cmd

    load_cmd.main(locals())


@bench.command("accuracy")
def accuracy(
    task: str = typer.Argument(..., help="gsm8k | mmlu"), base_url: Optional[str] = BASE,
    model: Optional[str] = MODEL, plan: Optional[Path] = PLAN,
    data_path: Optional[Path] = O(None, "--data-path", help="GSM8K JSONL (dir or test file); MMLU CSV dir or parquet"),
    shots: Optional[int] = O(None, "--shots", help="Few-shot exemplars (default gsm8k 5, mmlu 5)"),
    limit: Optional[int] = O(None, "--limit", help="First N questions only"),
    repeats: int = O(1, "--repeats"), concurrency: int = O(16, "--concurrency", "-c"),
    api: str = O("completions", "--api", help="chat | completions"),
    thinking: bool = O(False, "--thinking/--no-thinking", help="chat_template_kwargs thinking on/off"),
    max_tokens: Optional[int] = O(None, "--max-tokens"), temperature: float = O(0.0, "--temperature"),
    min_accuracy: Optional[float] = O(None, "--min-accuracy", help="Fail (exit 1) below this score"),
    max_error_rate: float = O(0.05, "--max-error-rate"), timeout: float = O(600.0, "--timeout"),
    api_key: Optional[str] = O(None, "--api-key", envvar="OPENAI_API_KEY"),
    out: Optional[Path] = OUT, resume: bool = O(False, "--resume"), progress: bool = O(True, "--progress/--no-progress"),
) -> None:
    """GSM8K / MMLU accuracy with the whole setup (data checksum, shots, endpoint, extractor) stored."""
    from dsv4ctl.bench import accuracy_cmd

    accuracy_cmd.main(locals())


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
