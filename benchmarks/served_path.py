"""The engine's output tok/s against the HTTP served path's at the same batch, in one run on one GPU.

    PYTHONPATH=.:runtime python benchmarks/served_path.py --model /tmp/mini --make \
        --input-len 512 --output-len 128 -c 1,16,64 [--server-args "--max-running-requests 64"] [--json out.json]

(1) Served: `python -m dsv4rt serve --model DIR` as `dsv4ctl serve --engine builtin` starts it (no device
flag: the runtime's own default), driven by `dsv4ctl bench load` (closed loop: c requests in flight,
-n prompts of --input-len tokens of the checkpoint's tokenizer, --output-len tokens each, ignore_eos,
raw completions, streamed). (2) Engine: the same EngineConfig (`dsv4rt.cli.engine_config` of the same
flags) in this process, prompts of the same token lengths kept c in flight, stepping `LLMEngine`
directly: no HTTP, no tokenizer, no asyncio. The ratio served / engine is what the HTTP path, the
engine thread hand-off and detokenization cost; a ratio far below 1 is a served-path problem, not a
model one. The server runs first (its process frees the GPU), then the engine.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def log(msg: str) -> None:
    print(f"[served_path] {msg}", flush=True)


def wait_healthy(url: str, proc: subprocess.Popen, timeout: float) -> None:
    """`serve`'s own readiness poll (dsv4ctl.launch.health), failing at once when the server exits."""
    from dsv4ctl.launch.health import wait_health

    def alive() -> None:
        if proc.poll() is not None:
            raise RuntimeError(f"the server exited with {proc.returncode} before it was healthy")

    wait_health(url, time.monotonic() + timeout, alive, poll_s=1.0)


def bench_point(a, url: str, conc: int, out: Path) -> dict:
    """One `dsv4ctl bench load` point -> its summary's numbers."""
    argv = [sys.executable, "-m", "dsv4ctl", "bench", "load", "--base-url", url, "--tokenizer", str(a.model),
            "-n", str(a.num_prompts or 4 * conc), "--input-len", str(a.input_len), "--output-len", str(a.output_len),
            "-c", str(conc), "--api", "completions", "--gpus", "1", "--warmup", str(min(conc, 4)),
            "--no-progress", "--format", "json", "--out", str(out)]
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, env=os.environ | {"PYTHONPATH": _pythonpath()})
    s = json.loads((out / "summary.json").read_text())
    s = s.get("points", [s])[0] if "points" in s else s
    return {"tok_s": s["output_throughput"], "per_user": s.get("output_throughput_per_user"),
            "tpot_ms": s["tpot_ms"]["median"], "ttft_ms": s["ttft_ms"]["median"], "completed": s["completed"]}


def _pythonpath() -> str:
    return os.pathsep.join([str(ROOT), str(ROOT / "runtime"), os.environ.get("PYTHONPATH", "")])


def served(a, out: Path) -> dict[int, dict]:
    from dsv4ctl.launch.ports import free_port

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    argv = [sys.executable, "-m", "dsv4rt", "serve", "--model", str(a.model), "--port", str(port),
            *shlex.split(a.server_args)]
    log(" ".join(argv))
    with open(out / "server.log", "w") as logf:
        env = os.environ | {"PYTHONPATH": _pythonpath()}
        proc = subprocess.Popen(argv, stdout=logf, stderr=subprocess.STDOUT, env=env)
        try:
            t0 = time.monotonic()
            wait_healthy(url, proc, a.server_timeout)
            log(f"server healthy after {time.monotonic() - t0:.0f} s")
            rows = {}
            for c in a.concurrency:
                rows[c] = bench_point(a, url, c, out / f"bench-c{c}")
                log(f"served c={c}: {json.dumps(rows[c])}")
            rows["metrics"] = _metrics(url)
            return rows
        finally:
            proc.terminate()
            proc.wait(60)


def _metrics(url: str) -> dict:
    """The server's own step histogram and forward share, after the points."""
    with urllib.request.urlopen(url + "/metrics", timeout=10) as r:
        lines = r.read().decode().splitlines()
    get = lambda name: next((float(ln.split()[1]) for ln in lines if ln.startswith(name + " ")), None)  # noqa: E731
    steps, total = get("dsv4rt_engine_step_seconds_count"), get("dsv4rt_engine_step_seconds_sum")
    return {"steps": steps, "mean_step_ms": total / steps * 1e3 if steps else None,
            "forward_share": get("dsv4rt_engine_forward_share")}


def engine_point(eng, vocab: int, a, conc: int, seed: int) -> dict:
    """Closed loop on the engine itself: c sequences in flight until -n have finished."""
    import torch

    from dsv4rt.engine.sequence import SamplingParams, Sequence

    g = torch.Generator().manual_seed(seed)
    n = a.num_prompts or 4 * conc
    pending = [torch.randint(2, vocab, (a.input_len,), generator=g).tolist() for _ in range(n)]
    live, done, first = [], [], {}
    t0 = time.perf_counter()
    while pending or live:
        while pending and len(live) < conc:
            s = Sequence(pending.pop(), SamplingParams(max_tokens=a.output_len, temperature=0, ignore_eos=True))
            s.t_add = time.perf_counter()
            eng.add(s)
            live.append(s)
        eng.step()
        now = time.perf_counter()
        for s in live:
            if s.output_ids and s.seq_id not in first:
                first[s.seq_id] = now
        done += [(s, now) for s in live if s.finish_reason is not None]
        live = [s for s in live if s.finish_reason is None]
    wall = time.perf_counter() - t0
    tpot = sorted((end - first[s.seq_id]) / max(len(s.output_ids) - 1, 1) for s, end in done)
    toks = sum(len(s.output_ids) for s, _ in done)
    return {"tok_s": toks / wall, "tpot_ms": tpot[len(tpot) // 2] * 1e3,
            "per_user": 1e3 / (tpot[len(tpot) // 2] * 1e3), "completed": len(done)}


def engine(a) -> dict[int, dict]:
    from dsv4rt.cli import build_parser, engine_config, resolve_options
    from dsv4rt.engine.engine import build_engine
    from dsv4rt.server.build import load_model

    opts = resolve_options(build_parser().parse_args(["serve", "--model", str(a.model), *shlex.split(a.server_args)]))
    cfg = engine_config(opts)
    model, args = load_model(cfg)
    eng = build_engine(cfg, model, args.max_seq_len)
    log(f"engine: {cfg.device} {cfg.dtype}, {eng.runner.num_slots} slots x {eng.context_length} tokens")
    engine_point(eng, args.vocab_size, argparse.Namespace(**{**vars(a), "num_prompts": 2, "output_len": 8}), 2, 1)
    rows = {}
    for c in a.concurrency:
        rows[c] = engine_point(eng, args.vocab_size, a, c, c)
        log(f"engine c={c}: {json.dumps(rows[c])}")
    return rows


def table(res: dict) -> str:
    lines = [f"ISL {res['input_len']} / OSL {res['output_len']} tokens; output tok/s (one GPU), "
             "per-user tok/s, median TPOT",
             f"{'c':>4} {'engine tok/s':>12} {'served tok/s':>12} {'served/engine':>13} {'engine TPOT':>11} "
             f"{'served TPOT':>11} {'served tok/s/user':>17}"]
    for c in res["concurrency"]:
        e, s = res["engine"].get(c), res["served"].get(c)
        ratio = s["tok_s"] / e["tok_s"] if e and s else None
        lines.append(f"{c:>4} {e['tok_s'] if e else float('nan'):>12,.1f} {s['tok_s'] if s else float('nan'):>12,.1f} "
                     f"{ratio if ratio else float('nan'):>13.2f} {e['tpot_ms'] if e else float('nan'):>9.1f}ms "
                     f"{s['tpot_ms'] if s else float('nan'):>9.1f}ms {s['per_user'] if s else float('nan'):>17.1f}")
    return "\n".join(lines)


def parse(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", type=Path, required=True)
    p.add_argument("--make", action="store_true", help="write the --preset checkpoint if absent")
    p.add_argument("--preset", default="mini")
    p.add_argument("--input-len", type=int, default=512)
    p.add_argument("--output-len", type=int, default=128)
    p.add_argument("-c", "--concurrency", default="16")
    p.add_argument("-n", "--num-prompts", type=int, default=0, help="per point (default 4 x c)")
    p.add_argument("--server-args", default="", help="flags for both the server and the engine's config")
    p.add_argument("--server-timeout", type=float, default=300)
    p.add_argument("--skip", default="", help="served and/or engine")
    p.add_argument("--out", type=Path, default=Path("/tmp/served-path"))
    p.add_argument("--json", type=Path)
    a = p.parse_args(argv)
    a.concurrency = [int(x) for x in a.concurrency.split(",")]
    return a


def main(argv=None) -> dict:
    a = parse(argv)
    a.out.mkdir(parents=True, exist_ok=True)
    if a.make and not (a.model / "config.json").is_file():
        import torch

        from dsv4rt.checkpoint.make import write_checkpoint

        write_checkpoint(a.model, a.preset, 0, "cuda" if torch.cuda.is_available() else "cpu")
    res = {"input_len": a.input_len, "output_len": a.output_len, "concurrency": a.concurrency,
           "server_args": a.server_args, "served": {}, "engine": {}}
    if "served" not in a.skip:
        res["served"] = served(a, a.out)
        res["server_metrics"] = res["served"].pop("metrics")
    if "engine" not in a.skip:
        res["engine"] = engine(a)
    print(table(res), flush=True)
    if res.get("server_metrics"):
        print(f"server: {json.dumps(res['server_metrics'])}", flush=True)
    if a.json:
        a.json.write_text(json.dumps(res, indent=1))
    return res


if __name__ == "__main__":
    main()
