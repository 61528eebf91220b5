"""Correctness and diagnosis parts of benchmarks/gpu_decode.py: greedy tokens of the GPU paths
against the CPU float32 path, the engine (CUDA graphs) against plain greedy decoding, and one
profile of an eager decode step (what the kernels spend their time on)."""

from __future__ import annotations

import statistics
import time

import torch

from dsv4rt.checkpoint.load import load_model
from dsv4rt.generate import greedy_generate

PROMPT = [(7 * i + 3) % 997 + 2 for i in range(48)]
NEW = 12


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.float().cpu(), b.float().cpu()
    return float((a - b).abs().max() / b.abs().max())


def correctness(ckpt, gpu_model, with_cpu: bool, log) -> dict:
    """bf16 GPU (Triton kernels) vs float32 CPU (reference ops) vs float32 GPU (Triton kernels)."""
    gpu_model.allocate_cache(1, 128)
    bf16, bf16_logits = greedy_generate(gpu_model, PROMPT, NEW)
    res = {"prompt_len": len(PROMPT), "bf16_tokens": bf16}
    if with_cpu:
        torch.set_num_threads(max(1, torch.get_num_threads()))
        cpu, _ = load_model(ckpt, device="cpu", dtype=torch.float32)
        t0 = time.perf_counter()
        ref, ref_logits = greedy_generate(cpu, PROMPT, NEW)
        res["cpu_seconds"] = time.perf_counter() - t0
        f32, f32_logits = greedy_generate(cpu.to("cuda"), PROMPT, NEW)
        del cpu
        torch.cuda.empty_cache()
        res.update(cpu_f32_tokens=ref, gpu_f32_tokens=f32, gpu_f32_equal=f32 == ref, bf16_equal=bf16 == ref,
                   bf16_matching_prefix=next((i for i, (x, y) in enumerate(zip(bf16, ref)) if x != y), len(ref)))
        if f32 == ref:
            res["gpu_f32_last_logits_rel_err"] = _rel(f32_logits, ref_logits)
        if bf16 == ref:
            res["bf16_last_logits_rel_err"] = _rel(bf16_logits, ref_logits)
    log(f"correctness: { {k: v for k, v in res.items() if 'tokens' not in k} }")
    return res


def _run_engine(engine, seqs) -> list[float]:
    """Step until all finish; seconds of each step that decoded every sequence at once."""
    for s in seqs:
        engine.add(s)
    full = []
    while engine.scheduler.has_work:
        t0 = time.perf_counter()
        outs = engine.step()
        if len(outs) == len(seqs) and not any(s.in_prefill for s in seqs):
            full.append(time.perf_counter() - t0)
    return full


def engine_check(ckpt, model, expect: list[int], log, batch: int = 64) -> dict:
    """The server's path (scheduler -> runner -> CUDA graphs -> sampler): same greedy tokens as
    eager greedy decoding, then host-inclusive decode tok/s with `batch` running requests."""
    from dsv4rt.engine.config import EngineConfig
    from dsv4rt.engine.engine import build_engine
    from dsv4rt.engine.sequence import SamplingParams, Sequence

    cfg = EngineConfig(model_path=str(ckpt), device="cuda", dtype="bfloat16", context_length=256,
                       max_running_requests=batch, chunked_prefill_size=batch * 128,
                       torch_compile=model.compiled_decode is not None)
    t0 = time.perf_counter()
    engine = build_engine(cfg, model, model.args.max_seq_len)
    res = {"build_s": time.perf_counter() - t0, "graphs": engine.runner.graphs is not None,
           "torch_compile": cfg.torch_compile}
    one = Sequence(list(PROMPT), SamplingParams(max_tokens=NEW, temperature=0, ignore_eos=True))
    _run_engine(engine, [one])
    res["tokens_equal_eager"] = one.output_ids == expect
    g = torch.Generator().manual_seed(1)
    seqs = [Sequence(torch.randint(2, 30000, (128,), generator=g).tolist(),
                     SamplingParams(max_tokens=48, temperature=0, ignore_eos=True)) for _ in range(batch)]
    steps = _run_engine(engine, seqs)
    res.update(batch=batch, decode_steps=len(steps), step_ms=1e3 * statistics.median(steps),
               tok_s=batch / statistics.median(steps))
    log(f"engine: {res}")
    return res


def _step_graph(model, bs: int):
    """A CUDA graph of one decode step at batch bs, 64 tokens into slots 0..bs-1 (as the engine replays
    it). The cache the decode table used is kept where it is large enough: a new shape would recompile."""
    if model.num_slots < bs or model.max_seq_len < 72:
        model.allocate_cache(bs, 256)
    ids = torch.randint(2, model.args.vocab_size, (bs, 64), device="cuda")
    slots = torch.arange(bs, device="cuda")
    model(ids, torch.zeros(bs, dtype=torch.long, device="cuda"), slots)
    step = (ids[:, :1], torch.full((bs,), 64, device="cuda"), slots)
    model(*step)  # compiles, if it will, outside the capture
    torch.cuda.synchronize()
    g = torch.cuda.CUDAGraph()
    with torch.cuda.graph(g):
        model(*step)
    return g


def profile_step(model, log, bs: int = 1) -> dict:
    """Kernel count, top kernels and the idle time between them in one replay of a decode step's graph."""
    from torch.profiler import ProfilerActivity, profile

    g = _step_graph(model, bs)
    g.replay()
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        g.replay()
        torch.cuda.synchronize()
    kern = [e for e in prof.events() if e.device_type == torch.autograd.DeviceType.CUDA]
    total = sum(e.device_time for e in kern)
    span = max(e.time_range.end for e in kern) - min(e.time_range.start for e in kern) if kern else 0.0
    by_name: dict[str, list] = {}
    for e in kern:
        row = by_name.setdefault(e.name[:100], [0, 0.0])
        row[0] += 1
        row[1] += e.device_time
    top = sorted(([n, c, us] for n, (c, us) in by_name.items()), key=lambda r: -r[2])[:40]
    res = {"batch": bs, "kernels": len(kern), "kernel_us": total, "span_us": span, "top_us": top}
    log(f"profile b={bs} (graph replay): {len(kern)} kernels, {total:.0f} us of kernel time in a {span:.0f} us span")
    for name, count, us in top[:25]:
        log(f"  {us:9.1f} us {count:5d}x  {name}")
    return res


def compile_check(model, log, dynamic: bool | None = None) -> dict:
    """Install the torch.compile decode block (dsv4rt/compiled.py) and compare greedy tokens and
    last logits against the same model's eager bf16 decode; the wall time of the first decode steps
    (which compile at batch 1) is in `first_generate_s`."""
    from dsv4rt.compiled import compile_decode, compile_failures

    model.compiled_decode = None
    model.allocate_cache(1, 128)
    want, want_logits = greedy_generate(model, PROMPT, NEW)
    res = {"installed": compile_decode(model, dynamic=dynamic), "dynamic": dynamic}
    t0 = time.perf_counter()
    got, got_logits = greedy_generate(model, PROMPT, NEW)
    res["first_generate_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    greedy_generate(model, PROMPT, NEW)
    res.update(warm_generate_s=time.perf_counter() - t0, tokens=got, tokens_equal_eager=got == want,
               matching_prefix=next((i for i, (x, y) in enumerate(zip(got, want)) if x != y), len(want)),
               last_logits_rel_err=_rel(got_logits, want_logits), failures=compile_failures(model))
    log(f"compile check: {res}")
    return res


def compile_f32_check(ckpt, cpu_tokens: list[int] | None, log) -> dict:
    """The compiled block in float32 on the GPU against the CPU float32 path (reference ops):
    bf16's small top-1 margins on random weights cannot hide a numeric error here."""
    from dsv4rt.compiled import compile_decode, compile_failures

    m, _ = load_model(ckpt, device="cuda", dtype=torch.float32)
    m.allocate_cache(1, 128)
    eager, eager_logits = greedy_generate(m, PROMPT, NEW)
    compile_decode(m)
    got, logits = greedy_generate(m, PROMPT, NEW)
    res = {"tokens_equal_gpu_f32_eager": got == eager, "failures": compile_failures(m)}
    if got == eager:
        res["last_logits_rel_err_vs_eager"] = _rel(logits, eager_logits)
    if cpu_tokens is not None:
        res["tokens_equal_cpu_f32"] = got == cpu_tokens
    del m
    torch.cuda.empty_cache()
    log(f"compile f32 check: {res}")
    return res
