"""A mock engine for `dsv4ctl tune` tests: each candidate's "server" is tests/mock_openai.py's server
whose latency is a known function of the plan's knobs, so the optimum is known in advance.

    ITL = 20 ms × (1 + ½|log2(max_running_requests / 32)| + ½|log2(chunked_prefill_size / 1024)|)

Throughput at a fixed concurrency falls as ITL grows, so the best candidate is exactly
(max_running_requests 32, chunked_prefill_size 1024) — off the coarse grid, reachable only by the fine
pass. `python tests/tune_mock.py OUT` runs a tune with it (the kill/resume test kills that process)."""

from __future__ import annotations

import contextlib
import json
import math
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from mock_openai import MockConfig, ThreadedMock

OPTIMUM = {"max_running_requests": 32, "chunked_prefill_size": 1024}
BASE_ITL_S = 0.02  # large against event-loop jitter on a busy CI machine


def itl_s(mrr: int, cpf: int) -> float:
    return BASE_ITL_S * (1 + 0.5 * abs(math.log2(mrr / 32)) + 0.5 * abs(math.log2(cpf / 1024)))


class MockEngine:
    """Same `serve(plan, workdir)` shape as tune.engines.LaunchEngine; records every launched plan."""

    restarts = True

    def __init__(self, log: Path | None = None):
        self.launched: list = []  # the plans it was asked to serve
        self.workdirs: list[Path] = []
        self.log = log

    @contextlib.contextmanager
    def serve(self, plan, workdir: Path):
        from dsv4ctl.tune.engines import Server

        k = plan.keys
        self.launched.append(plan)
        self.workdirs.append(Path(workdir))
        if self.log:  # one line per launch, so a killed process leaves its launches behind
            with open(self.log, "a") as fh:
                fh.write(json.dumps({"workdir": str(workdir), "errors": [f.rule for f in plan.findings
                                                                         if f.severity == "error"]}) + "\n")
        mock = ThreadedMock(MockConfig(model="mock-model", ttft_s=0.02,
                                       itl_s=itl_s(k.max_running_requests or 256, k.chunked_prefill_size or 8192)))
        try:
            yield Server(mock.base_url, "mock-model", 8, None)
        finally:
            mock.close()


def args(out: Path, **over) -> dict:
    """`dsv4ctl tune`'s options as the command passes them to tune_cmd.main."""
    a = dict(plan=None, hw="h200", variant="flash", recipe="balanced", toggles=None, set_=None, engine="sglang", base_url=None, model=None, gpus=1,
             knobs="max_running_requests,chunked_prefill_size", workload="random", num_prompts=8, input_len=16,
             output_len=6, range_ratio=0.0, prefix_groups=1, prefix_len=4, trace=None, seed=0,
             concurrency="4", slo="tpot=80ms", slo_percentile=90.0, objective="throughput", budget=30,
             time_budget=None, repeats=2, gsm8k=None, gsm8k_n=4, gsm8k_shots=1, gsm8k_max_tokens=8,
             accuracy_tolerance=0.05, api="completions", engine_timeout=60.0, out=out, resume=False, live=False,
             fmt="json")
    a.update(over)
    return a


def run(a: dict, engine: MockEngine):
    """What tune_cmd.main does, with the mock engine in place of a real one."""
    from dsv4ctl.tune import search, tune_cmd

    tune, gate = tune_cmd.setup(a)
    tune.engine = engine
    results = search.run(tune)
    return tune, results, tune_cmd.finish(tune, results, gate, a["repeats"])


if __name__ == "__main__":
    run(args(Path(sys.argv[1]), resume=len(sys.argv) > 2), MockEngine(Path(sys.argv[1]).with_suffix(".launches")))
