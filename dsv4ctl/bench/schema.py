"""pydantic v2 schemas of what a benchmark writes: one record per request, one summary per run."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field


class RequestRecord(BaseModel):
    """One finished (or failed) request, as appended to requests.jsonl."""

    index: int
    ok: bool
    error: str | None = None
    status: int | None = None
    session: int = 0  # one per invocation; --resume starts a new one
    start: float = 0.0  # seconds since this session started (client perf clock)
    ttft_ms: float | None = None
    e2e_ms: float | None = None
    itl_ms: list[float] = Field(default_factory=list)
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    tokens_from_usage: bool = False  # False: counted from stream chunks because the server sent no usage
    model: str | None = None
    spec_accept: float | None = None
    send_delay_ms: float | None = None  # client lag before the request left (not in TTFT/E2E)
    phase: str = "measure"  # "warmup" records are written but never summarised
    concurrency: int | None = None  # the sweep point this record belongs to
    extra: dict[str, Any] = Field(default_factory=dict)


class Stats(BaseModel):
    """A latency block: mean, median, p90, p99 (+ any extra percentiles as pNN)."""

    model_config = {"extra": "allow"}
    mean: float | None = None
    median: float | None = None
    std: float | None = None
    p90: float | None = None
    p99: float | None = None
    count: int = 0


class LoadSummary(BaseModel):
    """summary.json of a load run (or of one sweep point). Flat keys mirror sglang.bench_serving."""

    model_config = {"extra": "allow"}
    kind: str = "load"
    completed: int
    failed: int
    error_rate: float
    duration: float
    total_input_tokens: int
    total_output_tokens: int
    request_throughput: float
    input_throughput: float
    output_throughput: float
    total_throughput: float
    output_throughput_per_gpu: float | None = None
    total_throughput_per_gpu: float | None = None
    output_throughput_per_user: float | None = None
    concurrency: float  # sglang's meaning: sum of latencies / duration
    goodput: float | None = None  # requests/s meeting every SLO
    slo_attainment: float | None = None
    accept_length: float | None = None
    ttft_ms: Stats
    itl_ms: Stats
    tpot_ms: Stats
    e2e_ms: Stats
    send_delay_ms: Stats = Field(default_factory=Stats)
    setup: dict[str, Any] = Field(default_factory=dict)


class AccuracySummary(BaseModel):
    """summary.json of an accuracy run; `setup` is the whole tuple that makes the score comparable."""

    model_config = {"extra": "allow"}
    kind: str = "accuracy"
    task: str
    accuracy: float
    stderr: float
    num_questions: int
    repeats: int
    per_repeat: list[float]
    per_subject: dict[str, float] = Field(default_factory=dict)
    invalid_rate: float
    error_rate: float
    passed: bool | None = None
    min_accuracy: float | None = None
    request_throughput: float
    output_throughput: float
    ttft_ms: Stats
    itl_ms: Stats
    tpot_ms: Stats
    e2e_ms: Stats
    setup: dict[str, Any] = Field(default_factory=dict)
