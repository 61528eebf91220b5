"""Small-batch GEMV MoE (kernels/triton_moe_gemv.py) against ops.moe_experts.reference: float32 under the
Triton interpreter on the CPU, bf16 at the model's shapes on a GPU."""

from __future__ import annotations

import textwrap

import pytest
import torch
from triton_interpreter import run_interpreted

_INTERPRETED = textwrap.dedent("""
    import torch
    from dsv4rt import ops
    from dsv4rt.kernels import triton_moe_gemv as gm

    def check(E, D, I, k, n, limit, shared=False):
        torch.manual_seed(n)  # the same draw for both limits
        w13, w2 = torch.randn(E, 2 * I, D) * D ** -0.5, torch.randn(E, D, I) * I ** -0.5
        x, w = torch.randn(n, D) * 3, torch.rand(n, k)  # x·3 puts pre-activations past 1: the clamp bites
        idx = torch.stack([torch.randperm(E - int(shared))[:k] for _ in range(n)])
        if n > 1:  # the last token picks token 0's experts in another order: every expert read twice
            idx[n - 1] = idx[0].roll(1)
        assert gm.supported(x, w13, w2)
        ref = ops.moe_experts.reference(x, w13, w2, w, idx, limit, shared)
        got = gm.gemv_moe(x, w13, w2, w, idx, limit, shared)
        err = (got - ref).abs().max() / ref.abs().max()
        assert got.dtype == torch.float32 and got.shape == (n, D) and err < 1e-5, (D, I, n, limit, err)
        return ref

    for n in (1, 2, 3):
        clamped, free = (check(8, 128, 64, 3, n, limit) for limit in (1.0, 0.0))  # 0 = no clamp
        assert (clamped - free).abs().max() > 0.1  # the clamp changed the result: both paths ran
    for n in (1, 2):  # + the last expert as a shared one: a pick the kernels add, weight 1, unclamped
        check(8, 128, 64, 3, n, 1.0, shared=True)
    check(8, 192, 192, 3, 2, 1.0)  # 3 chunks of 64 in both kernels: the loops over D and over I
    assert not gm.supported(torch.zeros(1, 96), torch.zeros(8, 128, 96), torch.zeros(8, 96, 64))
    assert gm.self_check("cpu", torch.float32) < 1e-5  # the gate triton_moe runs in bf16 on a GPU
    # the custom op the model calls: GEMV at n <= MAX_TOKENS, grouped GEMMs above; traced whole
    from dsv4rt.kernels import triton_moe
    triton_moe._GEMV_OK = True
    E, D, I, k = 8, 128, 64, 3
    w13, w2 = torch.randn(E, 2 * I, D) * D ** -0.5, torch.randn(E, D, I) * I ** -0.5
    op = torch.compile(triton_moe.moe_experts, backend="aot_eager", fullgraph=True)
    for n in (1, 5):
        x, w = torch.randn(n, D), torch.rand(n, k)
        idx = torch.stack([torch.randperm(E)[:k] for _ in range(n)])
        ref = ops.moe_experts.reference(x, w13, w2, w, idx, 1.0, True)
        assert (op(x, w13, w2, w, idx, 1.0, True) - ref).abs().max() / ref.abs().max() < 1e-5, n
    print("ok")
""")


@pytest.mark.slow
def test_gemv_moe_matches_reference_in_interpreter():
    """fp32 only: the interpreter's bf16 arithmetic is not the GPU's (triton 3.6 on CPU)."""
    run_interpreted(_INTERPRETED)


_needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
E, D, I, K = 64, 2048, 1024, 6  # the model's routed-expert shapes


def _experts(g):
    w13 = (torch.randn(E, 2 * I, D, device="cuda", generator=g) * D ** -0.5).bfloat16()
    return w13, (torch.randn(E, D, I, device="cuda", generator=g) * I ** -0.5).bfloat16()


def _routing(n: int, g):
    """x, weights and expert ids for n tokens; the last token repeats token 0's experts."""
    x = torch.randn(n, D, device="cuda", generator=g).bfloat16()
    w = torch.rand(n, K, device="cuda", generator=g)
    idx = torch.stack([torch.randperm(E, device="cuda", generator=g)[:K] for _ in range(n)])
    if n > 1:
        idx[n - 1] = idx[0].roll(1)
    return x, w, idx


def _rel(a, b) -> float:
    return float((a.float() - b.float()).abs().max() / b.float().abs().max())


@pytest.mark.gpu
@_needs_cuda
@pytest.mark.parametrize("n", [1, 2])
@pytest.mark.parametrize("limit", [1.0, 0.0])
def test_gemv_moe_matches_reference_in_bf16(n, limit):
    pytest.importorskip("triton")
    from dsv4rt import ops
    from dsv4rt.kernels import triton_moe_gemv as gm

    g = torch.Generator(device="cuda").manual_seed(n)
    (w13, w2), (x, w, idx) = _experts(g), _routing(n, g)
    assert gm.supported(x, w13, w2)
    got = gm.gemv_moe(x, w13, w2, w, idx, limit)
    assert got.dtype == torch.float32
    assert _rel(got, ops.moe_experts.reference(x, w13, w2, w, idx, limit)) < 2e-2


@pytest.mark.gpu
@_needs_cuda
def test_gemv_moe_replays_in_a_cuda_graph_with_new_routing():
    pytest.importorskip("triton")
    from dsv4rt import ops
    from dsv4rt.kernels import triton_moe_gemv as gm

    g = torch.Generator(device="cuda").manual_seed(0)
    (w13, w2), (x, w, idx) = _experts(g), _routing(1, g)
    gm.gemv_moe(x, w13, w2, w, idx, 1.0)  # compile outside the capture
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        out = gm.gemv_moe(x, w13, w2, w, idx, 1.0)
    for dst, src in zip((x, w, idx), _routing(1, g)):
        dst.copy_(src)
    graph.replay()
    assert _rel(out, ops.moe_experts.reference(x, w13, w2, w, idx, 1.0)) < 2e-2
