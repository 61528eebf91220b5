"""The options of `bench load` and `bench accuracy` as typed models: the commands' Typer options are
generated from these fields (dsv4ctl.commands.model_options), and the bench code reads attributes."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from dsv4ctl.schema.base import CliFlag


class EndpointOptions(BaseModel):
    """Where to send requests, and where the run's records go (shared by every bench command)."""

    model_config = ConfigDict(extra="forbid", defer_build=True)  # built on first use: the CLI starts fast

    base_url: str | None = Field(None, description="Endpoint, e.g. http://127.0.0.1:30000")
    model: str | None = Field(None, description="Expected model name (default: the first of /v1/models)")
    plan: Path | None = Field(None, description="Plan YAML, serve run directory or run name ('latest'): endpoint, "
                                                "model, GPUs")
    max_error_rate: float = Field(0.05, description="Fail when more requests than this fraction error")
    timeout: float = Field(600.0, description="Seconds per request")
    api_key: Annotated[str | None, CliFlag(envvar="OPENAI_API_KEY")] = Field(None, description="Bearer key")
    out: Path | None = Field(None, description="Run directory (default runs/bench/<kind>-<time>)")
    resume: bool = Field(False, description="Continue a run directory, skipping requests already recorded")
    progress: bool = Field(True, description="Live progress bar")
    format: Literal["table", "json"] = Field("table", description="table | json (the summary, for scripts)")


class LoadOptions(EndpointOptions):
    """`bench load`: the workload, the load shape and the report."""

    concurrency: Annotated[int | None, CliFlag(short="-c")] = Field(None, description="Closed loop: requests in flight")
    request_rate: float | None = Field(None, description="Open loop: Poisson arrivals per second")
    num_prompts: Annotated[int, CliFlag(short="-n")] = Field(
        200, description="Requests per sweep point (≥ 5×concurrency advised)")
    input_len: int = Field(1024, description="Prompt tokens (of --tokenizer / the plan's model)")
    output_len: int = Field(1024, description="Output tokens asked for")
    tokenizer: str | None = Field(None, description="Served model's tokenizer folder or repo id (default: the "
                                                    "plan's / run's checkpoint)")
    range_ratio: float = Field(0.0, description="Length spread X: [L(1−X), L(1+X)] (see --range-style)")
    range_style: Literal["centered", "sglang"] = Field(
        "centered", description="centered (mean L, like vLLM) or sglang ([X·L, L])")
    workload: Literal["random", "shared-prefix", "trace"] = Field("random", description="What to send")
    trace: Path | None = Field(None, description="JSONL with prompt/messages (+output_len) per line")
    prefix_groups: int = Field(8, description="shared-prefix: distinct prefixes")
    prefix_len: int = Field(512, description="shared-prefix: prefix tokens")
    sweep: str | None = Field(None, description="Concurrency ladder, e.g. 1,8,64")
    slo: str | None = Field(None, description="Goodput SLOs in ms, e.g. ttft=200,tpot=50")
    gpus: int | None = Field(None, description="GPU count for tok/s/GPU (default: from --plan)")
    warmup: int = Field(2, description="Warmup requests per point (not measured)")
    api: Literal["chat", "completions"] = Field(
        "completions", description="completions (raw prompt, like sglang.bench_serving) | chat")
    ignore_eos: bool = Field(True, description="Generate exactly --output-len tokens")
    percentiles: str = Field("50,90,99", description="Percentiles to report")
    extra_body: str | None = Field(None, description="JSON merged into every request")
    seed: int = Field(0, description="Workload seed")
    force: bool = Field(False, description="With --resume: continue even if the workload options differ (recorded)")


class AccuracyOptions(EndpointOptions):
    """`bench accuracy gsm8k|mmlu`: the task, its data and its setup (all recorded with the score)."""

    task: Annotated[str, CliFlag(argument=True)] = Field(description="gsm8k | mmlu")
    data_path: Path | None = Field(None, description="Your own data (default: the copy in the package). GSM8K "
                                   "JSONL (dir or test file); MMLU dev/+test/ CSV dir, JSONL or parquet")
    shots: int | None = Field(None, description="Few-shot exemplars (default gsm8k 5, mmlu 5)")
    limit: int | None = Field(None, description="First N questions only")
    repeats: int = Field(1, description="Runs over the questions")
    concurrency: Annotated[int, CliFlag(short="-c")] = Field(16, description="Requests in flight")
    api: Literal["chat", "completions"] = Field("completions", description="Which OpenAI endpoint")
    thinking: bool = Field(False, description="chat_template_kwargs thinking on/off")
    max_tokens: int | None = Field(None, description="Output budget per question")
    temperature: float = Field(0.0, description="Sampling temperature")
    min_accuracy: float | None = Field(None, description="Fail (exit 1) below this score")
