"""Triton decode attention (kernels/triton_attention.py) against ops.decode_attention.reference: fp32 under
the CPU interpreter, bf16 at the model's shapes on a GPU."""

from __future__ import annotations

import textwrap

import pytest
import torch
from triton_interpreter import run_interpreted

_INTERPRETED = textwrap.dedent("""
    import torch
    from dsv4rt import ops
    from dsv4rt.kernels import triton_attention as ta
    torch.manual_seed(0)
    S, W, N, D = 6, 32, 20, 128

    def case(H, B, with_entries, block_s=None, splits=None):
        q = torch.randn(B, H, D)
        win = torch.randn(S, W + 3, D)[:, :W]  # slot stride != W·D, as a slice of a larger buffer
        ent = torch.randn(S, N + 9, D)  # N' > N: the entries past N are never attended
        slots = torch.tensor([4, 0, 5, 2, 1, 3][:B])  # out of order
        # young rings, wrapped ones, and -1: an empty ring (strided, as model.py's pos[:, 0] may be)
        pos = torch.tensor([3, 40, 0, 31, 100, -1][:B]).repeat_interleave(2)[::2]
        mask = torch.rand(B, N) < 0.4
        mask[1] = False  # a row that attends its window alone
        sink = torch.randn(H) * 2
        entries, emask = (ent, mask) if with_entries else (None, None)
        ref = ops.decode_attention.reference(q, win, slots, pos, entries, emask, sink, D ** -0.5)
        # what the kernel must never read is NaN for it, zero for the reference (whose einsum would spread NaN)
        bad = win.clone()
        for b in range(B):
            bad[int(slots[b]), max(int(pos[b]) + 1, 0) :] = float("nan")
        bad_ent = ent.clone()
        bad_ent[:, N:] = float("nan")
        for b in range(B):
            bad_ent[int(slots[b]), :N][~mask[b]] = float("nan")
        got = ta._launch(q, bad, slots, pos, bad_ent if with_entries else None, emask, sink, D ** -0.5, block_s=block_s,
                         splits=splits)
        err = float((got - ref).abs().max() / ref.abs().max())
        assert err < 1e-5, (H, B, with_entries, block_s, splits, err)
        return q, win, slots, pos, entries, emask, sink

    case(8, 6, True)
    case(16, 6, True, block_s=16)  # several chunks in the window and in the entries
    case(16, 6, False)  # row 5 attends nothing but its sink: zeros
    case(8, 2, False, block_s=16)
    # split rows: partials merged by _combine, splits with no chunk (8 > 4 window + 2 entry chunks) included
    case(16, 6, True, block_s=16, splits=3)
    case(16, 6, False, splits=2)  # row 5's splits see no key
    case(8, 2, True, block_s=16, splits=8)
    # as a custom op it traces whole under torch.compile (dsv4rt/compiled.py)
    args = case(8, 5, True)
    fn = lambda *a: ta.decode_attention(*a, D ** -0.5)
    assert torch.equal(torch.compile(fn, backend="aot_eager", fullgraph=True)(*args), fn(*args))
    # no mask: every entry compressed so far, (pos + 1) // ratio of them (HCA; CSA with its indexer skipped)
    q, win, slots, pos, entries, _, sink = args
    for ratio in (4, 128):
        want = ops.decode_attention.reference(q, win, slots, pos, entries, None, sink, D ** -0.5, ratio)
        for splits in (1, 3):
            got = ta._launch(q, win, slots, pos, entries, None, sink, D ** -0.5, ratio, block_s=16, splits=splits)
            assert (got - want).abs().max() < 1e-5 * want.abs().max(), (ratio, splits)
    # the query's per-head norm and RoPE and the output's inverse RoPE in the kernel: one split, and three
    freqs = torch.cat([torch.zeros(64), torch.rand(32).repeat_interleave(2)])  # partial RoPE: 64 of 128 dims
    want = ops.decode_attention.reference(q, win, slots, pos, entries, None, sink, D ** -0.5, 4, freqs, 1e-6)
    for splits in (1, 3):
        got = ta._launch(q, win, slots, pos, entries, None, sink, D ** -0.5, 4, freqs, 1e-6, block_s=16, splits=splits)
        assert (got - want).abs().max() < 1e-5 * want.abs().max(), ("rope", splits)
    # a head dim the kernel does not tile goes to the reference
    q96 = torch.randn(2, 8, 96)
    odd = (q96, torch.randn(S, W, 96), torch.tensor([1, 3]), torch.tensor([5, 50]), None, None, torch.randn(8))
    assert torch.equal(ta.decode_attention(*odd, 0.1), ops.decode_attention.reference(*odd, 0.1))
    # a speculative verify: K rows a sequence, the ring already holding the span, old rows past t
    K = 4
    vslots = torch.tensor([4, 0, 2]).repeat_interleave(K)
    vpos = (torch.tensor([0, 30, 77])[:, None] + torch.arange(K)).flatten()  # young, wrapping, wrapped
    old, qv, sink8 = torch.randn(3, K, D), torch.randn(3 * K, 8, D), torch.randn(8)
    for ent_args in ((None, None, 0), (entries, None, 4), (entries, torch.rand(3 * K, N) < 0.5, 0)):
        want = ops.decode_attention.reference(qv, win, vslots, vpos, *ent_args[:2], sink8, D ** -0.5, ent_args[2],
                                              old_kv=old)
        for splits in (1, 3):
            got = ta._launch(qv, win, vslots, vpos, *ent_args[:2], sink8, D ** -0.5, ent_args[2], block_s=16,
                             splits=splits, old_kv=old)
            assert (got - want).abs().max() < 1e-5 * want.abs().max(), ("verify", splits)
    # the registry's gate (run in bf16 on a GPU) passes for a correct kernel
    assert ta.self_check("cpu", torch.float32) < 1e-5
    print("ok")
""")


@pytest.mark.slow
def test_decode_attention_matches_reference_in_interpreter():
    """fp32 only: the interpreter's bf16 dot is wrong (triton 3.6 on CPU); bf16 runs on the GPU below."""
    run_interpreted(_INTERPRETED)


@pytest.mark.parametrize("p", [0, 3, 6, 21])  # a young ring, one that wraps inside the span, a wrapped one
def test_verify_rows_see_what_sequential_decode_steps_saw(p):
    """K verify rows over the ring holding the whole span plus the rows it overwrote (old_kv) equal K
    plain decode steps, each after its own token's write."""
    from dsv4rt import ops

    ref = ops.decode_attention.reference
    g = torch.Generator().manual_seed(p)
    S, W, D, H, K, slot = 3, 8, 16, 2, 4, 1
    ring = torch.randn(S, W, D, generator=g)
    keys, q, sink = torch.randn(K, D, generator=g), torch.randn(K, H, D, generator=g), torch.randn(H, generator=g)
    old = torch.stack([ring[slot, (p + j) % W] for j in range(K)])[None]
    want = []
    for t in range(K):
        ring[slot, (p + t) % W] = keys[t]
        want.append(ref(q[t : t + 1], ring, torch.tensor([slot]), torch.tensor([p + t]), None, None, sink, 0.3))
    got = ref(q, ring, torch.full((K,), slot), p + torch.arange(K), None, None, sink, 0.3, old_kv=old)
    assert torch.allclose(got, torch.cat(want), atol=1e-6)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("B", [1, 5])
def test_decode_attention_bf16_on_gpu_and_under_compile(B):
    from dsv4rt import ops
    from dsv4rt.kernels import triton_attention as ta
    from dsv4rt.ops import registry

    assert registry.get("decode_attention", backend="triton") is ta.decode_attention
    H, D, W, N, S = 16, 512, 128, 300, 7
    g = torch.Generator(device="cuda").manual_seed(B)
    rnd = lambda *shape: torch.randn(*shape, device="cuda", generator=g)  # noqa: E731
    q, sink = rnd(B, H, D).bfloat16(), rnd(H)
    win, ent = rnd(S, W, D).bfloat16(), rnd(S, N + 64, D).bfloat16()
    slots = torch.tensor([6, 2, 0, 5, 3][:B], device="cuda")
    pos = torch.tensor([700, 5, 127, 0, 300][:B], device="cuda")
    mask = torch.rand(B, N, device="cuda", generator=g) < 0.3
    args = (q, win, slots, pos, ent, mask, sink, D ** -0.5)
    ref = ops.decode_attention.reference(*args).float()
    got = ta.decode_attention(*args)
    assert got.dtype == torch.bfloat16 and got.shape == (B, H, D)
    assert float((got.float() - ref).abs().max() / ref.abs().max()) < 2e-2
    compiled = torch.compile(lambda *a: ta.decode_attention(*a), fullgraph=True)
    assert torch.equal(compiled(*args), got)
    window_only = (q, win, slots, pos, None, None, sink, D ** -0.5)
    ref = ops.decode_attention.reference(*window_only).float()
    assert float((ta.decode_attention(*window_only).float() - ref).abs().max() / ref.abs().max()) < 2e-2
    freqs = torch.cat([torch.zeros(D - 64, device="cuda"), rnd(32).abs().repeat_interleave(2)])
    with_rope = (*args, 0, freqs, 1e-6)  # the query's norm and RoPE, the output's inverse RoPE
    ref = ops.decode_attention.reference(*with_rope).float()
    assert float((ta.decode_attention(*with_rope).float() - ref).abs().max() / ref.abs().max()) < 2e-2
    K = 4  # a speculative verify: K rows a sequence, with the window rows the span overwrote
    verify = (rnd(B * K, H, D).bfloat16(), win, slots.repeat_interleave(K),
              (pos[:, None] + torch.arange(K, device="cuda")).flatten(), ent, None, sink, D ** -0.5, 4, freqs, 1e-6,
              rnd(B, K, D).bfloat16())
    ref = ops.decode_attention.reference(*verify).float()
    assert float((ta.decode_attention(*verify).float() - ref).abs().max() / ref.abs().max()) < 2e-2
