"""Triton GEMV linears (kernels/triton_gemv.py) against the references of ops.linear / fp32_linear: fp32 under the
CPU interpreter, bf16 on a GPU; and the reference's grouped linear against the einsum it replaced."""

from __future__ import annotations

import textwrap

import pytest
import torch
from triton_interpreter import run_interpreted

_INTERPRETED = textwrap.dedent("""
    import torch
    from dsv4rt import ops
    from dsv4rt.kernels import triton_gemv as tg
    torch.manual_seed(0)
    tg._PROGRAMS, tg._TILE = 8, 256  # small tiles: several K steps and every row block on small shapes

    def case(M, N, K, groups, out_dtype=torch.float32):
        x = torch.randn(M, groups * K + 5)[:, :groups * K]  # a row stride that is not the width
        w = torch.randn(N, K + 3)[:, :K]  # nor for the weight
        got = tg._launch(x, w, groups, out_dtype)
        want = ops.linear.reference(x, w, groups)
        assert got.shape == (M, N) and got.dtype == out_dtype, (got.shape, got.dtype)
        err = float((got.float() - want).abs().max() / want.abs().max())
        assert err < 1e-5, (M, N, K, groups, err)

    for M in (1, 2):
        case(M, 64, 256, 1)  # 8 programs of 8 rows, 8 K steps of 32
        case(M, 48, 128, 1)  # 48 = 16·3: rows blocks that divide N, not a power of two
        case(M, 32, 64, 4)  # grouped: 4 groups of 8 rows, each reading its 64-wide slice of x
        case(M, 16, 256, 1)  # 2 K steps of 128: both weight tiles requested before the wait
    case(2, 24, 512, 3)  # 3 groups of 8 rows, many K steps
    tg.EARLY_TILES = 1  # only the first tile early: the same sums
    case(1, 64, 256, 1)
    case(1, 16, 256, 1)
    tg.EARLY_TILES = 2
    # the RMSNorm in the loads (wq_b after q_norm): every program takes the row's RMS over all K steps
    for M in (1, 2):
        x, nw, w = torch.randn(M, 256) * 3, torch.rand(256) + 0.5, torch.randn(64, 256)
        got, want = tg._launch(x, w, 1, torch.float32, nw, 1e-6), ops.norm_linear.reference(x, nw, 1e-6, w)
        assert (got - want).abs().max() < 1e-5 * want.abs().max(), M
    # the registry's gate runs the kernel itself on every case it checks (bf16: no dot involved)
    assert tg.self_check("cpu", torch.bfloat16) < 2e-2
    print("ok")
""")


def test_gemv_matches_reference_in_interpreter():
    run_interpreted(_INTERPRETED)


def test_reference_grouped_linear_is_the_grouped_einsum():
    from dsv4rt import ops

    x, w = torch.randn(3, 1, 4 * 16), torch.randn(4 * 8, 16)
    want = torch.einsum("btgi,goi->btgo", x.unflatten(-1, (4, 16)), w.view(4, 8, 16)).flatten(2)
    assert torch.allclose(ops.linear.reference(x, w, 4), want, atol=1e-6)
    assert torch.allclose(ops.linear.reference(x, w[:, :16].repeat(1, 4)), x @ w[:, :16].repeat(1, 4).t(), atol=1e-5)


def test_block_choice_keeps_programs_and_divides_groups():
    pytest.importorskip("triton")
    from dsv4rt.kernels import triton_gemv as tg

    assert tg._blocks(8192, 8192, 512) == (16, 256)  # wq_b of mini: 512 programs of 16 rows
    assert tg._blocks(2048, 512, 2048) == (4, 1024)  # wo_a: 4 groups of 512 rows
    assert tg._blocks(64, 64, 2048) == (1, 2048)  # the router: one row a program
    assert tg._blocks(3600, 3600, 2048) == (4, 1024)  # CSA's fused input projection


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("M", [1, 2, 3])
def test_gemv_bf16_on_gpu_and_under_compile(M):
    from dsv4rt import ops

    lin, fp32 = ops.linear, ops.fp32_linear
    x = torch.randn(M, 1, 4 * 2048, device="cuda", dtype=torch.bfloat16)
    for w, groups in ((torch.randn(2048, 2048, device="cuda", dtype=torch.bfloat16) / 45, 4),
                      (torch.randn(3600, 8192, device="cuda", dtype=torch.bfloat16) / 90, 1)):
        want = ops.linear.reference(x.float(), w.float(), groups)
        got = lin(x, w, groups)
        assert got.dtype == torch.bfloat16 and float((got.float() - want).abs().max() / want.abs().max()) < 2e-2
        assert torch.equal(torch.compile(lambda a, b: lin(a, b, groups), fullgraph=True)(x, w), got)
    head = torch.randn(32000, 2048, device="cuda", dtype=torch.bfloat16)
    got, want = fp32(x[..., :2048], head), ops.fp32_linear.reference(x[..., :2048], head)
    assert got.dtype == torch.float32 and float((got - want).abs().max() / want.abs().max()) < 1e-3
    qa, nw = x[..., :512] * 3, torch.rand(512, device="cuda", dtype=torch.bfloat16) + 0.5  # wq_b after q_norm
    wq_b = torch.randn(8192, 512, device="cuda", dtype=torch.bfloat16) / 22
    got, want = ops.norm_linear(qa, nw, 1e-6, wq_b), ops.norm_linear.reference(qa.float(), nw.float(), 1e-6,
                                                                                      wq_b.float())
    assert got.dtype == torch.bfloat16 and float((got.float() - want).abs().max() / want.abs().max()) < 2e-2
