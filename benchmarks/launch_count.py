"""Kernel launches per compiled decode step, counted on a CPU from the Triton code Inductor writes.

    PYTHONPATH=runtime:benchmarks python benchmarks/launch_count.py [--batch 1 64] [--ctx 168 4136] [--code DIR]

At batch 1 the step time is set by how many kernels run, not by bytes (docs/performance.md, round 2:
939 kernels for 2.96 ms against a 0.39 ms byte roofline). This counts them without a GPU.
- Inductor is told to write Triton for CPU tensors (`cpu_backend="triton"`): the same scheduler and
  fusion rules as on CUDA. Block sizes and autotuning differ, but those do not change the kernel list.
- The generated kernels are never built or run: a stub stands in, and the first launch stops the
  call. Only the wrapper's `call` function is read: each `.run(` is a Triton launch, each
  `extern_kernels.*` a cuBLAS call, each `torch.ops.aten.*` an aten fallback (at least one launch).
- The model's own GPU kernels are registered as on CUDA (`as_on_cuda`) and stay opaque custom ops,
  counted with the launches each one makes (`OPAQUE_LAUNCHES`).
- The compiled logits function (the vocab projection) is counted the same way;
  the eager rest of a step (the embedding) by a dispatch counter: one launch per aten op that is
  not a view. The engine's sampler is not counted.

It is a proxy: a CUDA profile of the same code is the measurement (benchmarks/gpu_decode.py).
The weights are uninitialised (nothing runs), so the mini model costs no time to build.
"""

from __future__ import annotations

import argparse
import collections
import re
import time
from contextlib import contextmanager
from pathlib import Path

import torch
from torch.utils._python_dispatch import TorchDispatchMode

from dsv4rt import ops
from dsv4rt.checkpoint.load import _cast
from dsv4rt.checkpoint.make import preset_config
from dsv4rt.config import ModelArgs
from dsv4rt.model import Block, HeadMixin, Transformer
from dsv4rt.ops import registry

# launches inside each opaque op (its implementation's kernel launches, read from its module)
# (decode_attention: the split kernel and its combine, as below 128 rows)
OPAQUE_LAUNCHES = {"decode_attention": 2, "decode_cache": 1, "hc_split_sinkhorn": 1, "hc_pre": 1, "hc_post": 1,
                   "hc_post_linear": 1, "moe_gemv": 2, "moe_grouped_gemms": 2, "moe_route": 1, "fp32_mm": 1, "gemv": 1}


class _NotRun(RuntimeError):
    """Raised by the first generated kernel: the code exists, running it is not the point."""


class _StubKernel:
    def __init__(self, name: str):
        self.name = name

    def run(self, *args, **kwargs):
        raise _NotRun(self.name)


@contextmanager
def triton_code_on_cpu():
    """Inductor writes Triton kernels for CPU tensors and loads them as stubs (no driver needed); the
    model's own kernels (in its opaque ops) stop the call as well, should one come first."""
    import torch._inductor.codegen.triton as codegen
    import torch.utils._triton as tu
    from torch._inductor import async_compile, config
    from triton.runtime.jit import JITFunction

    saved = (tu.triton_hash_with_backend, codegen.__dict__.get("triton_hash_with_backend"),
             async_compile.AsyncCompile.triton, JITFunction.run)
    tu.triton_hash_with_backend = codegen.triton_hash_with_backend = lambda: "NO-GPU"
    async_compile.AsyncCompile.triton = lambda self, name, src, *a, **k: _StubKernel(name)
    JITFunction.run = _StubKernel("model kernel").run
    try:
        with config.patch(cpu_backend="triton", compile_threads=1, fx_graph_cache=False):
            yield
    finally:
        (tu.triton_hash_with_backend, codegen.triton_hash_with_backend, async_compile.AsyncCompile.triton,
         JITFunction.run) = saved


@torch.library.custom_op("launch_count::fp32_mm", mutates_args=())
def fp32_mm(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """Stands in for cuda_ops.fp32_linear (`mm` with an fp32 out_dtype, which has no CPU lowering)."""
    raise _NotRun("fp32_mm")


@fp32_mm.register_fake
def _(x, w):
    return x.new_empty((*x.shape[:-1], w.shape[0]), dtype=torch.float32)


@contextmanager
def as_on_cuda():
    """The CUDA implementations registered for every device, as on a GPU whose self-checks pass."""
    from dsv4rt.kernels import (triton_attention, triton_cache, triton_gemv, triton_mhc, triton_mhc_post, triton_moe,
                                triton_route)

    gemv_ok = triton_moe._GEMV_OK
    with registry.scoped():
        registry.register(ops.decode_attention, "triton", 10)(triton_attention.decode_attention)
        registry.register(ops.decode_cache, "triton", 10)(triton_cache.decode_cache)
        registry.register(ops.hc_split_sinkhorn, "triton", 10)(triton_mhc.split_sinkhorn)
        registry.register(ops.hc_pre, "triton", 10)(triton_mhc.pre_apply)
        registry.register(ops.hc_post, "triton", 10)(triton_mhc_post.post_mix)
        registry.register(ops.hc_post_linear, "triton", 10)(triton_mhc_post.post_linear)
        registry.register(ops.hc_pre_x, "triton", 10)(triton_mhc.pre_x_apply)
        registry.register(ops.moe_route, "triton", 10)(triton_route.moe_route)
        triton_moe._GEMV_OK = True
        registry.register(ops.moe_experts, "triton", 10)(triton_moe.moe_experts)
        registry.register(ops.fp32_linear, "cublas", 10)(fp32_mm)
        registry.register(ops.fp32_linear, "triton", 20)(triton_gemv.fp32_linear)
        registry.register(ops.linear, "triton", 10)(triton_gemv.linear)
        registry.register(ops.norm_linear, "triton", 10)(triton_gemv.norm_linear)
        try:
            yield
        finally:
            triton_moe._GEMV_OK = gemv_ok


def skeleton_model(preset: str, dtype=torch.bfloat16) -> Transformer:
    """The preset's model with uninitialised weights in the checkpoint's dtypes (fp32 mHC etc.)."""
    args = ModelArgs.from_config_dict(preset_config(preset))
    with torch.device("meta"):
        model = Transformer(args)
    state = {k: _cast(k, torch.empty(v.shape, dtype=v.dtype), dtype) for k, v in model.state_dict().items()}
    model.load_state_dict(state, assign=True)
    return model.eval()


def launches(code: str) -> collections.Counter:
    """Launches in the `call` function of Inductor's wrapper code, by kind."""
    body = code[code.index("def call(self, args):"):]
    count: collections.Counter = collections.Counter()
    for line in body.splitlines():
        line = line.strip()
        if re.match(r"triton_\w+\.run\(", line):
            count["triton"] += 1
        elif re.match(r"extern_kernels\.\w+\(", line):
            count["cublas"] += 1
        elif m := re.match(r"(?:\w+ = )?torch\.ops\.(\w+)\.(\w+)\.", line):  # an op that mutates returns None
            ns, op = m.groups()
            kind = "aten" if ns == "aten" else "opaque"
            count[kind] += OPAQUE_LAUNCHES.get(op, 1)
    return count


def layer_kinds(model: Transformer) -> dict[tuple[int, bool], list[int]]:
    """(compress ratio, hash-routed) -> the layer indices of that kind (one compiled graph each)."""
    kinds: dict[tuple[int, bool], list[int]] = {}
    for i, layer in enumerate(model.layers):
        kinds.setdefault((layer.attn.ratio, layer.ffn.gate.hashed), []).append(i)
    return kinds


def _step_inputs(model: Transformer, batch: int, pos: int):
    a = model.args
    h = torch.empty(batch, 1, a.hc_mult, a.dim, dtype=model.embed.weight.dtype)
    ids = torch.zeros(batch, 1, dtype=torch.long)
    return h, ids, torch.full((batch, 1), pos), torch.arange(batch)


def _carry(model: Transformer, batch: int):
    """What a block gets from the block before: the attention's input, its post and its comb."""
    a, n = model.args, model.args.hc_mult
    x = torch.empty(batch, 1, a.dim, dtype=model.embed.weight.dtype)
    return x, torch.empty(batch, 1, n), torch.empty(batch, 1, n, n)


def compiled_code(fn, *args) -> str:
    """Inductor's wrapper code for fn(*args) compiled as one graph (fullgraph=True)."""
    from unittest import mock

    from torch._inductor.graph import GraphLowering

    torch._dynamo.reset()
    compiled = torch.compile(fn, fullgraph=True, dynamic=False)
    code: list[str] = []
    with triton_code_on_cpu(), torch.no_grad(), mock.patch.object(GraphLowering, "save_output_code", code.append):
        try:
            compiled(*args)
        except _NotRun:  # the first kernel stops the call: its code is written by then
            pass
    if len(code) != 1:
        raise RuntimeError(f"expected one graph for {fn.__qualname__}, Inductor wrote {len(code)}")
    return code[0]


def block_code(model: Transformer, layer: int, batch: int, pos: int, first: bool = False) -> str:
    """A block's step as every block but the first runs it: its attention's pre done by the previous
    block's last boundary (`first`: as block 0, which projects its streams and runs that pre itself)."""
    block, nxt = model.layers[layer], model.layers[(layer + 1) % len(model.layers)]
    carry = None if first else _carry(model, batch)
    return compiled_code(Block.forward, block, *_step_inputs(model, batch, pos), carry, nxt.attn_pre())


def logits_code(model: Transformer, batch: int) -> str:
    y = torch.empty(batch, 1, model.args.dim, dtype=model.embed.weight.dtype)
    return compiled_code(HeadMixin._logits, y, model.head, False)


class _OpCounter(TorchDispatchMode):
    """One launch per aten op that computes (views and allocations launch nothing)."""

    def __init__(self):
        super().__init__()
        self.count: collections.Counter = collections.Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = func.overloadpacket.__name__
        if func.namespace == "prim":  # metadata queries
            pass
        elif func.namespace != "aten":
            self.count["opaque"] += OPAQUE_LAUNCHES.get(name, 1)
        elif not func.is_view and not name.startswith(("empty", "_unsafe_view", "detach", "alias")):
            self.count["eager"] += 1
        return func(*args, **(kwargs or {}))


class _EmbeddingOnly:
    """Stands in for `model.compiled_decode` so that `forward` runs only its eager part."""

    block = staticmethod(lambda layer, h, *args: (h, None, None, None))
    logits = staticmethod(lambda *args: None)


def eager_rest(model: Transformer, batch: int, pos: int) -> collections.Counter:
    """Launches of a decode step outside the compiled functions (the embedding)."""
    from torch._subclasses.fake_tensor import FakeTensorMode

    model.compiled_decode, counter = _EmbeddingOnly(), _OpCounter()
    inputs = torch.zeros(batch, 1, dtype=torch.long), torch.full((batch,), pos), torch.arange(batch)
    try:
        with FakeTensorMode(allow_non_fake_inputs=True), counter:
            model(*inputs)
    finally:
        model.compiled_decode = None
    return counter.count


def _kind_name(ratio: int, hashed: bool) -> str:
    attn = {0: "SWA", 4: "CSA"}.get(ratio, "HCA")
    return f"{attn}/{'hash' if hashed else 'score'}"


def count_step(model: Transformer, batch: int, ctx: int, code_dir: Path | None) -> dict[str, collections.Counter]:
    """{row name: launches} for one decode step at `batch` rows, each `ctx - 1` tokens into its cache."""
    model.allocate_cache(batch, ctx)
    rows: dict[str, collections.Counter] = {}
    for (ratio, hashed), layers in layer_kinds(model).items():
        name = _kind_name(ratio, hashed)
        code = block_code(model, layers[0], batch, ctx - 1)
        if code_dir is not None:
            (code_dir / f"{name.replace('/', '-')}_b{batch}_ctx{ctx}.py").write_text(code)
        if layers[0] == 0:  # block 0 also projects its own streams: the difference of its two codes
            first = launches(block_code(model, 0, batch, ctx - 1, first=True)) - launches(code)
        rows[f"{name} ×{len(layers)}"] = collections.Counter({k: v * len(layers) for k, v in launches(code).items()})
    rows["layer 0: its own stream projection and pre"] = first
    rows["logits (vocab; the mHC head and norm are the last block's)"] = launches(logits_code(model, batch))
    rows["embedding (eager)"] = eager_rest(model, batch, ctx - 1)
    return rows


def table(results: dict[tuple[int, int], dict[str, collections.Counter]]) -> str:
    cols = list(results)
    head = "| launches per step | " + " | ".join(f"B={b}, ctx {c}" for b, c in cols) + " |"
    lines = [head, "|---" + "|---:" * len(cols) + "|"]
    names = list(dict.fromkeys(n for r in results.values() for n in r))
    for name in names + ["total"]:
        cells = []
        for col in cols:
            c = sum(results[col].values(), collections.Counter()) if name == "total" else results[col].get(name)
            cells.append("–" if not c else f"{sum(c.values())} ({', '.join(f'{k} {v}' for k, v in sorted(c.items()))})")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--preset", default="mini")
    p.add_argument("--batch", type=int, nargs="+", default=[1, 64])
    p.add_argument("--ctx", type=int, nargs="+", default=[168, 4136],
                   help="cache length per row (gpu_decode.py: 168, and 4096 + 40 for decode_long)")
    p.add_argument("--code", type=Path, help="write each layer kind's generated wrapper code here")
    a = p.parse_args(argv)
    torch.set_num_threads(1)
    model = skeleton_model(a.preset)
    for layer in model.layers:
        layer.stack_weights()
    if a.code:
        a.code.mkdir(parents=True, exist_ok=True)
    results, t0 = {}, time.perf_counter()
    with as_on_cuda():
        for batch in a.batch:
            for ctx in a.ctx:
                results[(batch, ctx)] = count_step(model, batch, ctx, a.code)
                print(f"counted B={batch}, ctx {ctx} ({time.perf_counter() - t0:.0f} s)", flush=True)
    print(table(results))


if __name__ == "__main__":
    main()
