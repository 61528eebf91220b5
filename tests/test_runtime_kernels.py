"""Fast MoE and kernel registry on the CPU: the grouped-GEMM work list, stacked expert weights
against the per-expert modules, device dispatch, and the Triton kernels under the interpreter."""

from __future__ import annotations

import logging
import textwrap

import pytest
import torch
from triton_interpreter import run_interpreted

from dsv4rt.checkpoint.make import preset_config
from dsv4rt.config import ModelArgs
from dsv4rt.ops import registry
from dsv4rt.kernels.moe_align import align, max_blocks
from dsv4rt.layers.moe import MoE


@pytest.mark.parametrize("tokens,top_k,experts,block_m", [(1, 6, 64, 16), (37, 4, 16, 16), (300, 6, 64, 64)])
def test_align_puts_every_pair_once_in_a_tile_of_its_expert(tokens, top_k, experts, block_m):
    g = torch.Generator().manual_seed(tokens)
    idx = torch.stack([torch.randperm(experts, generator=g)[:top_k] for _ in range(tokens)])
    work = align(idx, experts, block_m)
    P = tokens * top_k
    assert work.block_expert.numel() == max_blocks(P, experts, block_m)
    pairs = work.sorted_pairs.long()
    real = pairs[pairs < P]
    assert sorted(real.tolist()) == list(range(P))
    tile_expert = work.block_expert.long().repeat_interleave(block_m)
    assert torch.equal(idx.flatten()[real], tile_expert[pairs < P])
    assert (work.block_expert[work.block_expert >= 0].diff() >= 0).all()  # used tiles come first, by expert


def _loop_moe(moe: MoE, x: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    """The pre-grouped formulation: one Expert module call per (token, pick)."""
    weights, idx = moe.gate(x, ids)
    y = torch.zeros_like(x, dtype=torch.float32)
    for t in range(x.shape[0]):
        for j in range(idx.shape[1]):
            y[t] += moe.experts[int(idx[t, j])](x[t : t + 1])[0].float() * weights[t, j]
    return (y + moe.shared_experts(x).float()).to(x.dtype)


def test_moe_on_stacked_weights_equals_per_expert_modules():
    cfg = preset_config("tiny")
    args = ModelArgs.from_config_dict(cfg)
    torch.manual_seed(0)
    moe = MoE(args, layer_id=args.n_hash_layers)  # a routed (not hashed) layer
    for p in moe.parameters():
        torch.nn.init.normal_(p, std=args.dim ** -0.5)
    x, ids = torch.randn(9, args.dim), torch.randint(0, args.vocab_size, (9,))
    ref = _loop_moe(moe, x, ids)
    assert torch.allclose(moe(x, ids), ref, atol=1e-5, rtol=1e-5)
    w13, w2 = moe.stacked_weights()
    assert moe.experts[3].w3.weight.data_ptr() == w13[3, args.moe_inter_dim :].data_ptr()  # views, no copy
    assert w13.shape[0] == args.n_routed_experts + 1  # the shared expert is the last one
    assert moe.shared_experts.w2.weight.data_ptr() == w2[-1].data_ptr()
    state = moe.state_dict()
    assert set(state) >= {"experts.0.w1.weight", "experts.15.w2.weight", "shared_experts.w1.weight"}


def test_cuda_only_backend_is_skipped_for_cpu_tensors():
    @registry.register("unit_device_op")
    def ref_impl(x):
        return "ref"

    @registry.register("unit_device_op", backend="gpu", priority=10, device="cuda")
    def gpu_impl(x):
        return "gpu"

    fn = registry.get("unit_device_op")
    assert fn(torch.zeros(1)) == "ref"
    assert fn(torch.zeros(1, device="meta")) == "ref"
    assert registry.get("unit_device_op", backend="gpu") is gpu_impl


def test_optional_backends_are_imported_once(monkeypatch):
    registry.get("rmsnorm")
    calls = []
    monkeypatch.setattr(registry.importlib, "import_module", lambda name: calls.append(name))
    for _ in range(3):
        registry.get("rmsnorm")
        registry.available()
    assert calls == []


_INTERPRETED = textwrap.dedent("""
    import torch
    from dsv4rt import ops
    from dsv4rt.kernels import triton_mhc, triton_moe
    torch.manual_seed(0)
    mix, scale, base = torch.randn(3, 5, 24), torch.rand(3) + 0.5, torch.randn(24) * 0.1
    got = triton_mhc.split_sinkhorn(mix, scale, base, 4, 20, 1e-6)
    # as a custom op it also traces whole under torch.compile (dsv4rt/compiled.py)
    traced = torch.compile(lambda m: triton_mhc.split_sinkhorn(m, scale, base, 4, 20, 1e-6),
                           backend="aot_eager", fullgraph=True)(mix)
    for a, b, c in zip(got, ops.hc_split_sinkhorn.reference(mix, scale, base, 4, 20, 1e-6), traced):
        assert (a - b).abs().max() < 1e-5 and torch.equal(a, c), (a - b).abs().max()
    # the router in one launch: bias and hash selection, traced whole as a custom op
    from dsv4rt.kernels import triton_route
    assert triton_route.self_check("cpu", torch.float32) < 1e-5
    x, wg, bias = torch.randn(3, 256), torch.randn(64, 256) / 16, torch.randn(64)
    route = torch.compile(lambda x: triton_route.moe_route(x, wg, bias, None, None, 6, 1.5, "sqrtsoftplus"),
                          backend="aot_eager", fullgraph=True)
    (w, i), (rw, ri) = route(x), ops.moe_route.reference(x, wg, bias, None, None, 6, 1.5, "sqrtsoftplus")
    assert torch.equal(i, ri) and (w - rw).abs().max() < 1e-5, (i, ri)
    # the fused rest of an mHC pre (split, Sinkhorn, stream sum, RMSNorm), with a partial last D chunk
    assert triton_mhc.pre_self_check("cpu", torch.float32) < 1e-5
    h, nw = torch.randn(3, 5, 4, 2000) * 3, torch.rand(2000) + 0.5  # RMS 3: the mix is scaled by ~1/3
    raw = torch.randn(3, 5, 3, 24)  # 3 partial projections per row, as hc_post leaves them
    got = triton_mhc.pre_apply(raw, scale, base, h, nw, 4, 20, 1e-6, 1e-6, 1e-6)
    traced = torch.compile(lambda m, h: triton_mhc.pre_apply(m, scale, base, h, nw, 4, 20, 1e-6, 1e-6, 1e-6),
                           backend="aot_eager", fullgraph=True)(raw, h)
    want = ops.hc_pre.reference(raw, scale, base, h, nw, 4, 20, 1e-6, 1e-6, 1e-6)
    for a, b, c in zip(got, want, traced):
        assert a.shape == b.shape and (a - b).abs().max() < 1e-5 * b.abs().max() and torch.equal(a, c)
    triton_mhc.PRE_CONFIG["row_elems"] = 0  # rows too wide for registers: three passes of 1,024 columns
    for a, b in zip(triton_mhc.pre_apply(raw, scale, base, h, nw, 4, 20, 1e-6, 1e-6, 1e-6), want):
        assert (a - b).abs().max() < 1e-5 * b.abs().max()
    # the post and the next pre's projection in one launch: h' exact, the partials sum to the projection
    from dsv4rt.kernels import triton_mhc_post as tp
    assert tp.post_self_check("cpu", torch.float32) < 1e-5  # also wo_b inside: 32 columns a program
    tp.LINEAR_ELEMS = 4096  # 4 columns a program: 4 rows of the weight, each padded to 1,024 inputs
    assert tp._block_d(700) == 4 and tp.post_self_check("cpu", torch.float32) < 1e-5
    out, post, comb, fn = torch.randn(3, 5, 2000), torch.rand(3, 5, 4) * 2, torch.rand(3, 5, 4, 4), torch.randn(24, 8000)
    for rows in (1, 2):  # one row a program, and two (the second program's last row missing)
        tp.POST_CONFIG["programs"] = 63 * 15 // rows
        h2, raw2 = tp.post_mix(out, h, post, comb, fn)
        want_h, want_raw = ops.hc_post.reference(out, h, post, comb, fn)
        assert tp._post_rows(15, 63) == rows and raw2.shape == (3, 5, 63, 24) and want_raw.shape == (3, 5, 1, 24)
        assert (h2 - want_h).abs().max() < 1e-5 * want_h.abs().max()
        assert (raw2.sum(-2) - want_raw.sum(-2)).abs().max() < 1e-5 * want_raw.abs().max()
    tp.MAX_ROWS = 14  # more rows than that go to the reference: one partial sum
    assert tp.post_mix(out, h, post, comb, fn)[1].shape == (3, 5, 1, 24)
    E, D, I, k = 8, 128, 64, 3
    w13, w2 = torch.randn(E, 2 * I, D) * D ** -0.5, torch.randn(E, D, I) * I ** -0.5
    for n, shared in ((2, False), (150, True)):  # small-batch and wide tiles; expert 7 as the shared one
        x, w = torch.randn(n, D), torch.rand(n, k)
        idx = torch.stack([torch.randperm(E - 1)[:k] for _ in range(n)])
        ref = ops.moe_experts.reference(x, w13, w2, w, idx, 1.0, shared)
        err = (triton_moe.grouped_moe(x, w13, w2, w, idx, 1.0, shared) - ref).abs().max() / ref.abs().max()
        assert err < 1e-5, err
    # the shared expert = one more pick of weight 1, unclamped: its own term, computed apart
    alone = ops.moe.swiglu(x, w13[7, :I], w13[7, I:], w2[7], 0.0)
    assert (ref - ops.moe_experts.reference(x, w13, w2, w, idx, 1.0) - alone).abs().max() < 1e-4
    print("ok")
""")


@pytest.mark.slow
def test_triton_kernels_match_reference_in_interpreter():
    """fp32 only: the interpreter's bf16 dot is wrong (triton 3.6 on CPU); bf16 runs in test_gpu_*."""
    run_interpreted(_INTERPRETED)


def test_register_checked_keeps_out_a_kernel_that_fails_or_disagrees(caplog):
    fn = lambda: None  # noqa: E731
    try:
        with caplog.at_level(logging.WARNING, logger="dsv4rt.ops.registry"):
            assert not registry.register_checked("probe_op", fn, lambda: 1 / 0, 1e-3, "fast", 10)
            assert not registry.register_checked("probe_op", fn, lambda: float("nan"), 1e-3, "fast", 10)
            assert not registry.register_checked("probe_op", fn, lambda: 0.5, 1e-3, "fast", 10)
        assert "probe_op" not in registry._REGISTRY
        assert "division by zero" in caplog.text and "self-check error 0.5" in caplog.text
        assert registry.register_checked("probe_op", fn, lambda: 1e-6, 1e-3, "fast", 10)
        assert registry.get("probe_op") is fn
    finally:
        registry._REGISTRY.pop("probe_op", None)
        registry._BEST.pop("probe_op", None)

