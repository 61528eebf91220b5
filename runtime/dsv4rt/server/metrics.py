"""Prometheus text exposition (format 0.0.4) for the server, written by hand to add no dependency.

Gauges are read live from the scheduler at scrape time; counters and histograms are updated by
the engine thread (tokens) and the request handlers (latencies). A lock keeps the two sides apart.
"""

from __future__ import annotations

import bisect
import threading
import time
from typing import Callable

_STEP_BUCKETS = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
PREFIX = "dsv4rt"


def _sample(name: str, kind: str, help_: str, value: float) -> list[str]:
    n = f"{PREFIX}_{name}"
    return [f"# HELP {n} {help_}", f"# TYPE {n} {kind}", f"{n} {value}"]


class Histogram:
    def __init__(self, name: str, help_: str, buckets=_LATENCY_BUCKETS):
        self.name, self.help, self.buckets = name, help_, buckets
        self.counts = [0] * (len(buckets) + 1)  # last one is +Inf
        self.sum, self.count = 0.0, 0

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.buckets, value)] += 1
        self.sum += value
        self.count += 1

    def render(self) -> list[str]:
        n = f"{PREFIX}_{self.name}"
        lines, cum = [f"# HELP {n} {self.help}", f"# TYPE {n} histogram"], 0
        for le, c in zip([*map(str, self.buckets), "+Inf"], self.counts):
            cum += c
            lines.append(f'{n}_bucket{{le="{le}"}} {cum}')
        return lines + [f"{n}_sum {self.sum}", f"{n}_count {self.count}"]


def spec_lines(stats) -> list[str]:
    """Speculative decoding's acceptance (engine.speculative.SpecStats; None: off): verify steps, the
    mean accept length (tokens per verify step) and the acceptance rate of each draft position."""
    if stats is None:
        return []
    lines = _sample("spec_verify_steps_total", "counter", "Speculative verify steps (one per row).", stats.verify_steps)
    lines += _sample("spec_accept_length", "gauge", "Mean tokens per verify step (accepted drafts + 1).",
                     stats.accept_length)
    n = f"{PREFIX}_spec_acceptance_rate"
    lines += [f"# HELP {n} Share of verify steps that accepted the draft at this position.", f"# TYPE {n} gauge"]
    return lines + [f'{n}{{position="{i}"}} {r}' for i, r in enumerate(stats.acceptance_rates(), 1)]


class Metrics:
    def __init__(self, gauges: Callable[[], dict[str, tuple[float, str]]], spec_stats=None):
        self._gauges = gauges  # name -> (value, help), evaluated at scrape time
        self.spec_stats = spec_stats  # engine.speculative.SpecStats when decoding speculatively
        self._lock = threading.Lock()
        self.counters: dict[str, list] = {
            "prompt_tokens_total": [0, "Prompt tokens prefilled."],
            "generation_tokens_total": [0, "Tokens generated."],
            "requests_finished_total": [0, "Requests that completed."],
            "requests_rejected_total": [0, "Requests refused with 503 (queue full)."],
            "requests_aborted_total": [0, "Requests aborted (client disconnect or error)."],
        }
        self.ttft = Histogram("time_to_first_token_seconds", "Time to first token.")
        self.itl = Histogram("inter_token_latency_seconds", "Time between streamed tokens.")
        self.e2e = Histogram("e2e_request_latency_seconds", "Request latency, first byte in to last token out.")
        self.step = Histogram("engine_step_seconds", "Engine step time (schedule, forward, sampling, "
                              "detokenization), one per step.", _STEP_BUCKETS)
        self.histograms = [self.ttft, self.itl, self.e2e, self.step]
        self._window: list[tuple[float, int]] = []  # (time, tokens) of recent steps, for tokens/s

    def add_histogram(self, name: str, help_: str, buckets=_LATENCY_BUCKETS) -> Histogram:
        """A further histogram, rendered after the built-in ones (e.g. PD transfer bytes/time)."""
        hist = Histogram(name, help_, buckets)
        self.histograms.append(hist)
        return hist

    def add_counter(self, name: str, help_: str) -> None:
        self.counters.setdefault(name, [0, help_])

    def inc(self, name: str, by: int = 1) -> None:
        with self._lock:
            self.counters[name][0] += by

    def observe(self, hist: Histogram, value: float) -> None:
        with self._lock:
            hist.observe(value)

    def on_step(self, prompt_tokens: int, tokens: int, seconds: float) -> None:
        now = time.monotonic()
        with self._lock:
            self.step.observe(seconds)
            self.counters["prompt_tokens_total"][0] += prompt_tokens
            self.counters["generation_tokens_total"][0] += tokens
            self._window = [w for w in self._window if now - w[0] < 10.0] + [(now, tokens)]

    def tokens_per_second(self) -> float:
        with self._lock:
            if len(self._window) < 2:
                return 0.0
            span = self._window[-1][0] - self._window[0][0]
            return sum(t for _, t in self._window[1:]) / span if span > 0 else 0.0

    def render(self) -> str:
        lines: list[str] = []
        tps = (self.tokens_per_second(), "Generated tokens/s over the last 10 s.")
        gauges = {**self._gauges(), "generation_tokens_per_second": tps}
        for name, (value, help_) in gauges.items():
            lines += _sample(name, "gauge", help_, value)
        with self._lock:
            for name, (value, help_) in self.counters.items():
                lines += _sample(name, "counter", help_, value)
            for h in self.histograms:
                lines += h.render()
            lines += spec_lines(self.spec_stats)
        return "\n".join(lines) + "\n"
