"""dsv4rt decode/prefill speed on one GPU against the HBM roofline and transformers, in one run.

    PYTHONPATH=runtime python benchmarks/gpu_decode.py --model /tmp/mini [--make] [--json out.json]

(1) HBM copy bandwidth (device-to-device copy, bytes read + written); (2) bytes one decode step must
read (benchmarks/decode_bytes.py, distinct experts measured from the router) -> roofline tok/s;
(3) our decode (CUDA graphs, greedy tokens fed back on the device) at each batch size, median over
repeats after warm-up; (4) transformers' `generate` at batch 1 and 8; (5) one table. Correctness in
the same run: greedy tokens of the GPU paths against the CPU float32 path. Method: docs/performance.md.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from unittest import mock

import torch

from decode_bytes import RouterProbe, step_bytes
from gpu_checks import compile_check, compile_f32_check, correctness, engine_check, profile_step
from dsv4rt.checkpoint.load import load_model
from dsv4rt.engine.cuda_graphs import DecodeGraphs


def hbm_bandwidth(gib: float = 2.0, reps: int = 20) -> float:
    """Device-to-device copy, bytes read + written per second (median of reps)."""
    n = int(gib * (1 << 30)) // 4
    src, dst = torch.randn(n, device="cuda"), torch.empty(n, device="cuda")
    times = []
    for _ in range(reps + 2):
        e0, e1 = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        e0.record()
        dst.copy_(src)
        e1.record()
        torch.cuda.synchronize()
        times.append(e0.elapsed_time(e1) / 1e3)
    del src, dst
    return 2 * n * 4 / statistics.median(times[2:])


def _cuda_time(fn, repeats: int) -> float:
    """Median seconds of fn() over repeats, after one warm-up call."""
    times = []
    for _ in range(repeats + 1):
        e0, e1 = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        e0.record()
        fn()
        e1.record()
        torch.cuda.synchronize()
        times.append(e0.elapsed_time(e1) / 1e3)
    return statistics.median(times[1:])


def prefill_tok_s(model, n: int, repeats: int = 3) -> float:
    model.allocate_cache(1, n + 8)
    ids = torch.randint(2, model.args.vocab_size, (1, n), device="cuda")
    zero, slot = torch.zeros(1, dtype=torch.long, device="cuda"), torch.zeros(1, dtype=torch.long, device="cuda")
    return n / _cuda_time(lambda: model(ids, zero, slot), repeats)


def _prefill_slots(model, rows: int, prompt_len: int) -> None:
    g = torch.Generator(device="cuda").manual_seed(0)
    ids = torch.randint(2, model.args.vocab_size, (rows, prompt_len), device="cuda", generator=g)
    model(ids, torch.zeros(rows, dtype=torch.long, device="cuda"), torch.arange(rows, device="cuda"))


def experts_used(model, bs: int, prompt_len: int) -> list[int]:
    """Distinct routed experts per layer in one eager decode step of rows 0..bs-1."""
    probe = RouterProbe(model)
    ids = torch.randint(2, model.args.vocab_size, (bs, 1), device="cuda")
    model(ids, torch.full((bs,), prompt_len, device="cuda"), torch.arange(bs, device="cuda"))
    probe.remove()
    return probe.used


def graph_step_seconds(graphs: DecodeGraphs, bs: int, start: int, steps: int, repeats: int) -> float:
    """Per-step time of `steps` replays of the greedy graph (each feeds its argmax back on the device)."""
    graphs.slots[:bs].copy_(torch.arange(bs, device="cuda"))
    graphs.ids[:bs].random_(2, graphs.model.args.vocab_size)

    def run():
        graphs.pos[:bs].fill_(start)
        for _ in range(steps):
            graphs.advance(bs)

    return _cuda_time(run, repeats) / steps


def eager_step_seconds(model, bs: int, start: int, steps: int = 4) -> float:
    ids = torch.randint(2, model.args.vocab_size, (bs, 1), device="cuda")
    pos, slots = torch.full((bs,), start, device="cuda"), torch.arange(bs, device="cuda")
    return _cuda_time(lambda: [model(ids, pos, slots) for _ in range(steps)], 2) / steps


def decode_section(model, batches: list[int], a, bw: float, log) -> list[dict]:
    """Byte count, roofline and graph-replay timing per batch size (plus eager at 1 and max)."""
    rows = max(batches)
    model.allocate_cache(rows + 1, a.prompt_len + a.steps + 8)
    _prefill_slots(model, rows, a.prompt_len)
    fns, model.compiled_decode = model.compiled_decode, None  # the router hooks only fire in eager code
    used = {bs: experts_used(model, bs, a.prompt_len) for bs in batches}
    model.compiled_decode = fns
    eager = {bs: eager_step_seconds(model, bs, a.prompt_len) for bs in (batches[0], batches[-1])}
    graphs = DecodeGraphs(model, rows, pad_slot=rows, sizes=tuple(batches), greedy=True)
    t0 = time.perf_counter()
    graphs.capture()  # with torch.compile on, its warm-up is where every batch size compiles
    capture_s = time.perf_counter() - t0
    log(f"captured graphs at {graphs.sizes} in {capture_s:.1f} s")
    out = []
    for bs in batches:
        sec = graph_step_seconds(graphs, bs, a.prompt_len, a.steps, a.repeats)
        nbytes = step_bytes(model, bs, a.prompt_len + a.steps // 2, used[bs])
        roof = bw / nbytes["total"] * bs
        row = {"batch": bs, "step_ms": sec * 1e3, "tok_s": bs / sec, "roofline_tok_s": roof,
               "pct_roofline": 100 * bs / sec / roof, "step_gb": nbytes["total"] / 1e9,
               "experts_per_layer": used[bs], "eager_step_ms": eager[bs] * 1e3 if bs in eager else None,
               "capture_s": capture_s}
        log(json.dumps(row))
        out.append(row)
    return out


def variant_section(model, batches: list[int], a, bw: float, log, variant) -> list[dict]:
    """The decode rows again inside `variant(model)` (a context manager), for a side-by-side ratio."""
    with variant(model):
        return decode_section(model, batches, a, bw, log)


def _pdl_off(model):
    """The runtime's Triton kernels launched plainly (kernels/pdl.py); compiled Inductor kernels keep
    what they were compiled with."""
    from dsv4rt.kernels import pdl

    return pdl.use(False)


def _gemv_early1(model):
    """The GEMVs requesting only their first weight tile before the PDL wait (triton_gemv.EARLY_TILES;
    a launcher reads its setting at capture, so nothing is compiled again)."""
    from dsv4rt.kernels import triton_gemv

    return mock.patch.object(triton_gemv, "EARLY_TILES", 1)


def _cache_pool_always(model):
    """`decode_cache` pooling the compressors' rings on every step, not only where a block ends
    (triton_cache.POOL_ALWAYS: the kernel as it was up to round 8)."""
    from dsv4rt.kernels import triton_cache

    return mock.patch.object(triton_cache, "POOL_ALWAYS", True)


def _post_unfused(model):
    """`wo_b` as a GEMV launch of its own before the mHC post, not inside it (triton_mhc_post.LINEAR_IN_POST)."""
    from dsv4rt.kernels import triton_mhc_post

    return mock.patch.object(triton_mhc_post, "LINEAR_IN_POST", False)


@contextmanager
def _retraced():
    """Dynamo's compiled code dropped on entry and on exit: the blocks are traced again inside (and after)."""
    torch._dynamo.reset()
    try:
        yield
    finally:
        torch._dynamo.reset()


@contextmanager
def _cache_unfused(model):
    """A decode token's cache writes as the reference op (ops/cache.py), which Inductor compiles into
    its own kernels, instead of the one `decode_cache` launch."""
    from dsv4rt import ops
    from dsv4rt.ops import registry

    with registry.scoped(), _retraced():
        registry.register(ops.decode_cache, "inductor", 100)(lambda *args: ops.decode_cache.reference(*args))
        yield


@contextmanager
def _locality(model):
    """The compiled blocks again with Inductor's locality reordering, which `compiled.inductor_options`
    turns off (static shapes, as the table's)."""
    from dsv4rt.compiled import compile_decode

    saved = model.compiled_decode
    with _retraced():
        compile_decode(model, dynamic=False, options={"reorder_for_locality": True})
        try:
            yield
        finally:
            model.compiled_decode = saved


# --flag (batch sizes timed again inside a context manager of the model, result key "decode_<flag>") ->
# (context manager, what the other column is, what the flag times: its help)
VARIANTS = {
    "pdl_off": (_pdl_off, "the Triton kernels without PDL", "the Triton kernels launched without PDL"),
    "gemv_early1": (_gemv_early1, "GEMVs with one weight tile before the wait",
                    "the GEMVs requesting one weight tile before the PDL wait"),
    "cache_unfused": (_cache_unfused, "the cache writes compiled by Inductor",
                      "a decode token's cache writes compiled by Inductor, not the one decode_cache launch"),
    "cache_pool_always": (_cache_pool_always, "decode_cache pooling every step",
                          "decode_cache pooling the rings on every step (as up to round 8)"),
    "post_unfused": (_post_unfused, "wo_b as its own GEMV before the post",
                     "wo_b as a GEMV of its own, not inside the mHC post"),
    "locality": (_locality, "Inductor's locality reordering on",
                 "Inductor's locality reordering on (compiled.inductor_options)")}


def ratio_table(res: dict, key: str, other: str) -> str:
    """ms/step of the table and of a variant, from the same run."""
    on = {r["batch"]: r["step_ms"] for r in res["decode"]}
    lines = [f"side by side: the table (PDL: {res['pdl']}) and {other}",
             f"{'batch':>5} {'table ms':>8} {'other ms':>8} {'other/table':>11}"]
    lines += [f"{r['batch']:>5} {on[r['batch']]:>8.3f} {r['step_ms']:>8.3f} {r['step_ms'] / on[r['batch']]:>11.3f}"
              for r in res[key] if r["batch"] in on]
    return "\n".join(lines)


def hf_section(model, ckpt: Path, a, log) -> dict:
    import hf_baseline

    path = hf_baseline.export_for_transformers(model, ckpt, Path(a.hf_dir))
    ref = hf_baseline.load(path)
    res = {bs: hf_baseline.decode_tok_s(ref, bs, a.prompt_len, a.hf_steps) for bs in (1, 8)}
    log(f"transformers tok/s: {res}")
    del ref
    torch.cuda.empty_cache()
    return res


def table(res: dict) -> str:
    hf = res.get("transformers_tok_s", {})
    lines = [f"HBM copy bandwidth: {res['hbm_bytes_s'] / 1e12:.2f} TB/s   prefill ({res['prefill_len']} tokens):"
             f" {res['prefill_tok_s']:,.0f} tok/s",
             f"{'batch':>5} {'GB/step':>8} {'roofline':>9} {'tok/s':>9} {'%roof':>6} {'ms/step':>8} "
             f"{'eager ms':>8} {'x transformers':>14}"]
    for r in res["decode"]:
        x = f"{r['tok_s'] / hf[r['batch']]:.1f}" if r["batch"] in hf else "-"
        eager = f"{r['eager_step_ms']:.2f}" if r["eager_step_ms"] else "-"
        lines.append(f"{r['batch']:>5} {r['step_gb']:>8.3f} {r['roofline_tok_s']:>9,.0f} {r['tok_s']:>9,.0f} "
                     f"{r['pct_roofline']:>5.1f}% {r['step_ms']:>8.3f} {eager:>8} {x:>14}")
    for bs, v in hf.items():
        lines.append(f"transformers generate, batch {bs}: {v:,.1f} tok/s")
    return "\n".join(lines)


def _section(res: dict, name: str, fn, log) -> None:
    """Run one part; a failure is logged and recorded so the other parts still report."""
    try:
        res[name] = fn()
    except Exception as e:  # noqa: BLE001 - one broken part must not lose a whole GPU run
        import traceback

        traceback.print_exc()
        res[f"{name}_error"] = repr(e)
        log(f"{name} failed: {e!r}")


def _args(argv):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", required=True)
    p.add_argument("--make", action="store_true", help="write the mini checkpoint first if missing")
    p.add_argument("--json", default=None)
    p.add_argument("--batches", default="1,8,32,64,128")
    p.add_argument("--prompt-len", type=int, default=128)
    p.add_argument("--long-len", type=int, default=4096,
                   help="context of the 'decode_long' part (batches 1 and 8), where the CSA indexer's "
                        "top-k is a real selection (more entries than index_topk); 0 skips it")
    p.add_argument("--prefill-len", type=int, default=4096)
    p.add_argument("--steps", type=int, default=128,
                   help="greedy steps a timed run (128 from --prompt-len 128: every compressor's block ends inside)")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--hf-steps", type=int, default=16)
    p.add_argument("--hf-dir", default="/tmp/dsv4rt_hf_export")
    p.add_argument("--skip", default="", help="comma list of: cpu,transformers,engine,profile[_eager|_compiled],baseline,compile_f32")
    p.add_argument("--compile", action="store_true",
                   help="also time the torch.compile decode block (the plain-graph table becomes 'baseline')")
    for flag, (_, _, what) in VARIANTS.items():
        p.add_argument(f"--{flag.replace('_', '-')}", default="", help=f"batch sizes timed again with {what}")
    p.add_argument("--dynamic", choices=("static", "auto"), default="static",
                   help="static: every batch size and cache shape compiles its own graph; auto: torch's "
                        "automatic dynamic shapes (the second shape recompiles with symbolic sizes)")
    return p.parse_args(argv)


def _dynamic(a) -> bool | None:
    return False if a.dynamic == "static" else None


def _steps(model, ckpt: Path, a, res: dict, batches: list[int], log) -> list:
    """(name, fn) of the parts in run order; with --compile the plain-graph decode runs first as
    'baseline', then the compiled block is installed and checked, and 'decode' (the table), the
    profile and the engine use it. The table comes early so a run cut off by time keeps it."""
    decode = lambda: decode_section(model, batches, a, res["hbm_bytes_s"], log)  # noqa: E731
    profile = lambda: [profile_step(model, log, 1), profile_step(model, log, 64)]  # noqa: E731
    cpu = lambda: res.get("correctness", {}).get("cpu_f32_tokens")  # noqa: E731
    steps = [("profile_eager", profile),
             ("correctness", lambda: correctness(ckpt, model, "cpu" not in skip_set(a), log))]
    # transformers right after the table: a run cut off by its time limit keeps the ratio
    hf = ("transformers_tok_s", lambda: hf_section(model, ckpt, a, log))
    variants = [s for flag in VARIANTS for s in _variant_step(model, a, res, log, flag)]
    if a.compile:
        steps += [("baseline", decode), ("compile", lambda: compile_check(model, log, _dynamic(a))), ("decode", decode),
                  hf, *variants, ("compile_f32", lambda: compile_f32_check(ckpt, cpu(), log)),
                  ("profile_compiled", profile)]
    else:
        steps += [("decode", decode), hf, *variants]
    if a.long_len:
        long = argparse.Namespace(**{**vars(a), "prompt_len": a.long_len})
        steps += [("decode_long", lambda: decode_section(model, [1, 8], long, res["hbm_bytes_s"], log))]
    return steps + [("engine", lambda: engine_check(ckpt, model, _expected_tokens(res), log))]


def _variant_step(model, a, res: dict, log, flag: str) -> list:
    """[(result key, fn)] for a variant flag (--pdl-off, --gemv-early1, ...) given batch sizes, else []."""
    batches = [int(b) for b in getattr(a, flag).split(",") if b]
    variant, key = VARIANTS[flag][0], f"decode_{flag}"
    return [(key, lambda: variant_section(model, batches, a, res["hbm_bytes_s"], log, variant))] if batches else []


def _expected_tokens(res: dict) -> list[int]:
    """Greedy bf16 tokens of the decode path the engine will run (compiled block or eager)."""
    return res.get("compile", {}).get("tokens") or res["correctness"]["bf16_tokens"]


def _pdl_state() -> dict:
    from dsv4rt import compiled
    from dsv4rt.kernels import pdl

    return {"triton": pdl.enabled(), "inductor": compiled.inductor_pdl()}


def skip_set(a) -> set[str]:
    return set(filter(None, a.skip.split(",")))


def main(argv=None) -> dict:
    a = _args(argv)
    skip, ckpt = skip_set(a), Path(a.model)
    log = lambda m: print(f"[{time.strftime('%H:%M:%S')}] {m}", flush=True)  # noqa: E731
    if a.make and not (ckpt / "config.json").is_file():
        from dsv4rt.checkpoint.make import write_checkpoint

        t0 = time.perf_counter()
        write_checkpoint(ckpt, "mini", device="cuda")
        log(f"made mini checkpoint in {time.perf_counter() - t0:.0f} s")
    res: dict = {"device": torch.cuda.get_device_name(), "torch": torch.__version__, "pdl": _pdl_state()}
    res["hbm_bytes_s"] = hbm_bandwidth()
    log(f"HBM copy {res['hbm_bytes_s'] / 1e12:.2f} TB/s")
    model, _ = load_model(ckpt, device="cuda", dtype=torch.bfloat16)
    res["prefill_len"], res["prefill_tok_s"] = a.prefill_len, prefill_tok_s(model, a.prefill_len)
    log(f"prefill {res['prefill_tok_s']:,.0f} tok/s")
    batches = [int(b) for b in a.batches.split(",")]
    for name, fn in _steps(model, ckpt, a, res, batches, log):
        if name not in skip and name.split("_")[0] not in skip:  # "profile" skips both profiles
            _section(res, name, fn, log)
            if a.json:  # after every part, so a run cut off by its time limit still leaves results
                Path(a.json).write_text(json.dumps(res, indent=2, default=str))
    if "baseline" in res:
        print("without torch.compile:\n" + table({**res, "decode": res["baseline"]}), flush=True)
    if "decode" in res:
        print(table(res), flush=True)
    for flag, (_, other, _) in VARIANTS.items():
        if f"decode_{flag}" in res and "decode" in res:
            print(ratio_table(res, f"decode_{flag}", other), flush=True)
    if "decode_long" in res:
        print(f"at a {a.long_len}-token context:\n" + table({**res, "decode": res["decode_long"]}), flush=True)
    if a.json:
        Path(a.json).write_text(json.dumps(res, indent=2, default=str))
    return res


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
