"""Fidelity and ceiling of dsv4ctl's load generator on a 2-core machine.

A mock OpenAI server pinned to core 0 streams 64 tokens after a 50 ms TTFT with 5 ms ITL and records
server-side when each token left; our client, pinned to core 1, runs at concurrency 64 and 256.
Printed: our TTFT/ITL medians beside the server's truth, and requests/s.

    python benchmarks/loadgen_fidelity.py [--prompts-per-conc 10]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TTFT_S, ITL_S, TOKENS = 0.050, 0.005, 64


def client(port: int, conc: int, n: int) -> dict:
    """Runs in the pinned child: drive the mock, return our medians and req/s."""
    from dsv4ctl.bench import metrics, records
    from dsv4ctl.bench.client import Endpoint
    from dsv4ctl.bench.loadgen import LoadPlan, run_points
    from dsv4ctl.bench.service import run_async
    from dsv4ctl.bench.workloads import random_prompts

    out = Path(tempfile.mkdtemp())
    ep = Endpoint(f"http://127.0.0.1:{port}", "mock-model", api="completions")
    run_async(run_points(ep, random_prompts(n, 16, TOKENS), LoadPlan([conc], warmup=conc), out))
    s = metrics.summarize_load(records.read_records(out))
    return {"ttft_p50_ms": s.ttft_ms.median, "itl_p50_ms": s.itl_ms.median,
            "req_s": s.request_throughput, "failed": s.failed}


def one_point(conc: int, n: int, port: int) -> dict:
    server = subprocess.Popen(["taskset", "-c", "0", sys.executable, str(ROOT / "tests" / "mock_openai.py"),
                               str(port), str(TTFT_S), str(ITL_S)], stdout=subprocess.PIPE, text=True)
    try:
        server.stdout.readline()  # "ready"
        res = subprocess.run(["taskset", "-c", "1", sys.executable, __file__, "--client", str(port), str(conc), str(n)],
                             capture_output=True, text=True, check=True, cwd=ROOT)
        ours = json.loads(res.stdout.strip().splitlines()[-1])
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/truth") as resp:
            truth = json.load(resp)
    finally:
        server.terminate()
        server.wait(10)
    return {"concurrency": conc, **ours, "truth_ttft_p50_ms": truth["ttft_p50_ms"],
            "truth_itl_p50_ms": truth["itl_p50_ms"]}


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--client":
        print(json.dumps(client(int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]))))
        return
    ap = argparse.ArgumentParser()
    ap.add_argument("--prompts-per-conc", type=int, default=10, help="requests = this × concurrency")
    ap.add_argument("--port", type=int, default=18931)
    args = ap.parse_args()
    print(f"{'conc':>5} {'TTFT p50 ours':>14} {'truth':>7} {'err%':>6} {'ITL p50 ours':>13} {'truth':>7} {'err%':>6} {'req/s':>7}")
    for conc in (64, 256):
        r = one_point(conc, conc * args.prompts_per_conc, args.port)
        e_ttft = (r["ttft_p50_ms"] / r["truth_ttft_p50_ms"] - 1) * 100
        e_itl = (r["itl_p50_ms"] / r["truth_itl_p50_ms"] - 1) * 100
        print(f"{conc:>5} {r['ttft_p50_ms']:>14.1f} {r['truth_ttft_p50_ms']:>7.1f} {e_ttft:>+6.1f} "
              f"{r['itl_p50_ms']:>13.2f} {r['truth_itl_p50_ms']:>7.2f} {e_itl:>+6.1f} {r['req_s']:>7.0f}"
              + (f"  ({r['failed']} failed)" if r["failed"] else ""))
        time.sleep(0.5)


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    main()
