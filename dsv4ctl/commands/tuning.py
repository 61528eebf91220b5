"""`dsv4ctl tune` (search a plan's tunables under an SLO) and `dsv4ctl propose` (file the winner back
as a tuned overlay). The work lives in dsv4ctl.tune, imported inside the commands."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from dsv4ctl.commands.plan_options import HwOpt, RecipeOpt, SetOpt, VariantOpt, model_options
from dsv4ctl.schema.recipe import Toggles

O = typer.Option


@model_options
def tune(
    plan: Optional[Path] = O(None, "--plan", help="A plan file (or the plan options below)."),
    hw: HwOpt = None, variant: VariantOpt = "flash", recipe: RecipeOpt = "balanced", toggles: Toggles = None,
    set_: SetOpt = None,
    engine: Optional[str] = O(None, "--engine", help="builtin | sglang (default: the plan's engine)."),
    base_url: Optional[str] = O(None, "--base-url", help="A running endpoint: only the load ladder is tuned."),
    model: Optional[str] = O(None, "--model", help="With --base-url: the model name (default /v1/models)."),
    gpus: int = O(1, "--gpus", help="With --base-url: GPUs behind the endpoint."),
    knobs: Optional[str] = O(None, "--knobs", help="Tunables to search (comma-separated; key=MIN:MAX narrows "
                             "a range; default: all that apply)."),
    workload: str = O("random", "--workload", help="random | shared-prefix | trace"),
    num_prompts: int = O(64, "--num-prompts", "-n", min=1, help="Requests per load point."),
    input_len: int = O(1024, "--input-len", min=1), output_len: int = O(256, "--output-len", min=1),
    range_ratio: float = O(0.0, "--range-ratio"), prefix_groups: int = O(8, "--prefix-groups"),
    prefix_len: int = O(512, "--prefix-len"), trace: Optional[Path] = O(None, "--trace"), seed: int = O(0, "--seed"),
    concurrency: str = O("1,8,32", "--concurrency", "-c", help="Concurrency ladder (one server per candidate)."),
    slo: Optional[str] = O(None, "--slo", help="e.g. ttft=2s,tpot=50ms"),
    slo_percentile: float = O(90.0, "--slo-percentile", help="The SLO holds for this share of requests."),
    objective: str = O("throughput", "--objective", help="throughput (tok/s/GPU) | goodput | per-user@C"),
    budget: int = O(12, "--budget", min=1, help="Candidates to measure (the baseline included)."),
    time_budget: Optional[float] = O(None, "--time-budget", help="Seconds of search (the final step comes after)."),
    repeats: int = O(2, "--repeats", min=2, help="Final measurements of baseline and winner each (noise)."),
    gsm8k: Optional[Path] = O(None, "--gsm8k", help="GSM8K data dir (test.jsonl, train.jsonl): accuracy gate."),
    gsm8k_n: int = O(50, "--gsm8k-n", min=1), gsm8k_shots: int = O(5, "--gsm8k-shots", min=0),
    gsm8k_max_tokens: int = O(256, "--gsm8k-max-tokens", min=1),
    accuracy_tolerance: float = O(0.05, "--accuracy-tolerance", help="Accuracy the winner may lose (absolute)."),
    api: str = O("completions", "--api", help="chat | completions"),
    engine_timeout: float = O(1800.0, "--engine-timeout", help="Seconds a candidate's server may take to start."),
    out: Path = O(..., "--out", "-o", help="The tune directory."), resume: bool = O(False, "--resume"),
    live: bool = O(True, "--live/--no-live", help="Redraw the candidate table as results arrive."),
    fmt: str = O("rich", "--format", help="rich | json"),
) -> None:
    """Search a plan's tunables for the best objective under an SLO; resumable; ends with baseline vs winner."""
    from dsv4ctl.tune import tune_cmd

    tune_cmd.main(dict(locals()))


def propose(
    tune_dir: Path = typer.Argument(..., help="A finished tune directory."),
    out_dir: Optional[Path] = O(None, "--out-dir", help="Where the overlay goes (default hardware_profiles/tuned/)."),
) -> None:
    """Write the winner as a tuned overlay (with evidence), a Markdown report, a patch and the SGLang diff."""
    from dsv4ctl.console import err
    from dsv4ctl.tune.propose import run

    written = run(tune_dir, out_dir)
    print(written["report"].read_text(encoding="utf-8"), end="")
    for what, path in written.items():
        err.print(f"wrote {what}: {path}", highlight=False)


def register(app: typer.Typer) -> None:
    """Add this module's commands to the root app."""
    app.command("tune")(tune)
    app.command("propose")(propose)
