"""Per-kernel times at the mini model's decode shapes, alternatives side by side, in one GPU run.

    PYTHONPATH=runtime:benchmarks python benchmarks/kernel_bench.py [--json out.json]

Each case is captured 20 times in one CUDA graph and replayed, so a time includes the gap to the next
launch as in the engine's decode graphs (a loop of eager calls would time the CPU's launches instead).
Cases: decode attention split over key chunks against one program per row; the `hc_pre` kernel's
warps; the `hc_post` kernel's column blocks against Inductor's post and projection, and with wo_b
inside; `decode_cache` mid-block, at a block's end and pooling on every step, against Inductor's
kernels; the Triton GEMVs against cuBLAS for every linear of a mini layer and the head; the
routed-expert GEMVs' rows per program.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from unittest import mock

import torch

CALLS = 20  # launches per captured graph


def graph_us(fn, repeats: int = 7) -> float:
    """Median µs per call of fn() over `repeats` replays of a graph holding CALLS calls."""
    fn()
    torch.cuda.synchronize()
    g = torch.cuda.CUDAGraph()
    with torch.cuda.graph(g):
        for _ in range(CALLS):
            fn()
    times = []
    for _ in range(repeats + 1):
        e0, e1 = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        e0.record()
        g.replay()
        e1.record()
        torch.cuda.synchronize()
        times.append(e0.elapsed_time(e1) * 1e3 / CALLS)
    return statistics.median(times[1:])


def _rand(*shape, dtype=torch.bfloat16):
    return torch.randn(*shape, device="cuda").to(dtype)


def attention_cases(B: int) -> dict[str, float]:
    """mini's decode attention at a 168- and a 4,136-position cache: split rows against one program a row."""
    from dsv4rt.kernels import triton_attention as ta

    H, D, W, out = 16, 512, 128, {}
    freqs = torch.cat([torch.zeros(D - 64), torch.rand(32).repeat_interleave(2)]).cuda()
    for ctx in (168, 4136):
        for name, ratio in (("SWA", 0), ("HCA", 128), ("CSA", 4)):
            n = ctx // max(ratio, 1) + 1
            q, win, ent, sink = _rand(B, H, D), _rand(B, W, D), _rand(B, n, D), torch.randn(H, device="cuda")
            slots, pos = torch.arange(B, device="cuda"), torch.full((B,), ctx - 1, device="cuda")
            entries = ent if ratio else None
            mask = (torch.rand(B, n - 1, device="cuda") < 0.5) if ratio == 4 and ctx > 2048 else None
            for splits in (1, None):
                fn = lambda: ta._launch(q, win, slots, pos, entries, mask, sink, 0.04, ratio, splits=splits)  # noqa: E731,B023
                out[f"{name} ctx {ctx} {'split' if splits is None else 'one program'}"] = graph_us(fn)
            # the query's norm and RoPE and the output's inverse RoPE inside (what the model runs)
            fn = lambda: ta._launch(q, win, slots, pos, entries, mask, sink, 0.04, ratio, freqs, 1e-6)  # noqa: E731,B023
            out[f"{name} ctx {ctx} split, with norm/RoPE"] = graph_us(fn)
    return out


def hc_pre_cases(M: int) -> dict[str, float]:
    from dsv4rt.kernels import triton_mhc as tm

    raw, scale, base = torch.randn(M, 64, 24, device="cuda"), torch.rand(3, device="cuda"), torch.randn(24, device="cuda")
    h, w = _rand(M, 4, 2048), _rand(2048)
    saved, out = dict(tm.PRE_CONFIG), {}
    for warps in (2, 4, 8):
        tm.PRE_CONFIG.update(num_warps=warps)
        fn = lambda: tm.pre_apply(raw, scale, base, h, w, 4, 20, 1e-6, 1e-6, 1e-6)  # noqa: E731
        out[f"row in registers, {warps} warps"] = graph_us(fn)
    tm.PRE_CONFIG.update(saved)
    return out


def hc_post_cases(M: int) -> dict[str, float]:
    """The post + next projection kernel per column block, against Inductor's two launches."""
    from dsv4rt import ops
    from dsv4rt.kernels import triton_mhc_post as tp

    out_, h, fn = _rand(M, 2048), _rand(M, 4, 2048), torch.randn(24, 8192, device="cuda")
    post, comb = torch.rand(M, 4, device="cuda"), torch.rand(M, 4, 4, device="cuda")
    saved, saved_rows, res = dict(tp.POST_CONFIG), tp.MAX_ROWS, {}
    tp.MAX_ROWS = M  # the kernel itself at every M
    for block_d in (16, 32, 64):
        for programs in (128, 512, 2048, 8192):
            tp.POST_CONFIG.update(block_d=block_d, programs=programs)
            rows = tp._post_rows(M, 2048 // block_d)
            res[f"triton, {block_d} columns, {rows} rows a program"] = graph_us(
                lambda: tp.post_mix(out_, h, post, comb, fn))
    tp.POST_CONFIG.update(saved)
    tp.MAX_ROWS = saved_rows
    inductor = torch.compile(ops.hc_post.reference, dynamic=False)
    res["inductor (post, projection)"] = graph_us(lambda: inductor(out_, h, post, comb, fn))
    if M == 1:  # wo_b inside (op hc_post_linear) against its GEMV and the post as two launches
        x, wo_b = _rand(1, 2048), _rand(2048, 2048) / 45
        for inside in (True, False):
            with mock.patch.object(tp, "LINEAR_IN_POST", inside):
                res[f"wo_b {'inside' if inside else 'GEMV, then the post'}"] = graph_us(
                    lambda: tp.post_linear(x, wo_b, h, post, comb, fn))
    return res


MINI_LINEARS = {  # name: (out rows, in features, groups) of one mini layer, and the head
    "project SWA": (1024, 2048, 1), "project CSA": (3600, 2048, 1), "wq_b": (8192, 512, 1),
    "wo_a": (2048, 2048, 4), "wo_b": (2048, 2048, 1), "router (fp32 out)": (64, 2048, 1),
    "head (fp32 out)": (32000, 2048, 1)}


def linear_cases(M: int) -> dict[str, float]:
    from dsv4rt import ops
    from dsv4rt.kernels import triton_gemv as tg
    from dsv4rt.ops.registry import next_impl

    out = {}
    for name, (n, k, groups) in MINI_LINEARS.items():
        x, w = _rand(M, groups * k), _rand(n, k)
        fp32 = "fp32" in name
        ours = (lambda: tg.fp32_linear(x, w)) if fp32 else (lambda: tg.linear(x, w, groups))  # noqa: B023
        cublas = (lambda: next_impl(ops.fp32_linear, "triton")(x, w)) if fp32 else (  # noqa: B023
            lambda: ops.linear.reference(x, w, groups))  # noqa: B023
        gb = n * k * 2 / 1e9
        for label, fn in (("triton", ours), ("cublas", cublas)):
            us = graph_us(fn)
            out[f"{name} {label}"] = us
            out[f"{name} {label} TB/s"] = gb / us * 1e3
    return out


def moe_gemv_cases() -> dict[str, float]:
    """mini's routed experts at batch 1 (6 picks + the shared expert) per rows-per-program choice."""
    from dsv4rt.kernels import triton_moe_gemv as mg

    E, D, inter = 65, 2048, 1024
    x, w13, w2 = _rand(1, D), _rand(E, 2 * inter, D) / 45, _rand(E, D, inter) / 32
    idx = torch.randperm(E - 1, device="cuda")[:6][None]
    wts = torch.rand(1, 6, device="cuda")
    gb = 7 * 3 * D * inter * 2 / 1e9
    saved, out = dict(mg.GEMV_CONFIG), {}
    for up, down in ((16, 8), (8, 8), (4, 8), (8, 4), (8, 16), (4, 4)):
        mg.GEMV_CONFIG.update(up_rows=up, down_rows=down)
        us = graph_us(lambda: mg.gemv_moe(x, w13, w2, wts, idx, 10.0, shared=True))
        out[f"gate/up {up} rows, down {down} rows"] = us
        out[f"gate/up {up} rows, down {down} rows TB/s"] = gb / us * 1e3
    mg.GEMV_CONFIG.update(saved)
    return out


MINI_CACHES = {"SWA": (), "HCA": ((128, 512, False),), "CSA": ((4, 512, True), (4, 128, True))}  # (ratio, hd, overlap)


def cache_cases(M: int) -> dict[str, float]:
    """A decode token's cache writes per mini layer kind, in one `decode_cache` launch: mid-block (push
    only), where every row's block ends (the pool), and pooling on every step (`POOL_ALWAYS`, before);
    against Inductor's kernels for the reference ops, which pool on every step."""
    from dsv4rt import compiled, ops
    from dsv4rt.kernels import triton_cache as tc

    g, res = torch.Generator().manual_seed(0), {}
    inductor = torch.compile(ops.decode_cache.reference, dynamic=False, options=compiled.inductor_options())
    for kind, spec in MINI_CACHES.items():
        comps = [tc._case("cuda", torch.bfloat16, g, r, hd, ov, M, M + 1, 1100) for r, hd, ov in spec]
        kv, w, rope, win = _rand(M, 1, 512), _rand(512), torch.rand(512, device="cuda"), _rand(M + 1, 128, 512)
        slots = torch.arange(M, device="cuda")
        for case, p, always in (("mid-block", 4093, False), ("block end", 4095, False), ("every step", 4093, True)):
            pos = torch.full((M, 1), p, device="cuda")
            with mock.patch.object(tc, "POOL_ALWAYS", always):
                res[f"{kind} triton, {case}"] = graph_us(lambda: tc.decode_cache(kv, w, win, rope, pos, slots, 1e-6,
                                                                                  comps))  # noqa: B023
        res[f"{kind} inductor"] = graph_us(lambda: inductor(kv, w, win, rope, pos, slots, 1e-6, comps))  # noqa: B023
    return res


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--json")
    p.add_argument("--parts", default="attention,hc_pre,hc_post,linear,moe",
                   help="comma list of the parts to time")
    a = p.parse_args(argv)
    from dsv4rt.ops.registry import available

    available()  # the backends register (and self-check) first
    parts = {"attention": {"attention B=1": lambda: attention_cases(1)},
             "hc_pre": {"hc_pre M=1": lambda: hc_pre_cases(1), "hc_pre M=64": lambda: hc_pre_cases(64)},
             "hc_post": {f"hc_post M={m}": (lambda m=m: hc_post_cases(m)) for m in (1, 8, 64, 128)},
             "linear": {"linear M=1": lambda: linear_cases(1)}, "moe": {"moe gemv B=1": moe_gemv_cases},
             "cache": {f"cache M={m}": (lambda m=m: cache_cases(m)) for m in (1, 64)}}
    res = {name: fn() for part in a.parts.split(",") for name, fn in parts[part].items()}
    for part, rows in res.items():
        print(f"## {part}")
        for name, v in rows.items():
            print(f"  {name:<40} {v:8.2f}" + ("" if name.endswith("TB/s") else " us"))
    if a.json:
        with open(a.json, "w") as f:
            json.dump(res, f, indent=2)
    return res


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
