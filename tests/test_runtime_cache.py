"""The `decode_cache` op: a decode token's window row, compressor rings and entries in one launch
(kernels/triton_cache.py) against its PyTorch reference (ops/cache.py), under Triton's
CPU interpreter; and the model's decode through it against the reference path."""

from __future__ import annotations

import textwrap

import pytest
import torch
from triton_interpreter import run_interpreted

from dsv4rt import ops
from dsv4rt.ops.cache import Compression

_KERNEL = textwrap.dedent("""
    import torch
    from dsv4rt import ops
    from dsv4rt.kernels import triton_cache as tc
    ref = ops.decode_cache.reference
    assert tc.self_check("cpu", torch.float32) < 1e-5
    tc._block = lambda hd, span: 16  # many programs a compressor: the last one of each row writes the entry
    assert tc.self_check("cpu", torch.float32) < 1e-5
    # traced whole as a custom op that mutates lists of buffers: written in place, as eagerly
    g = torch.Generator().manual_seed(1)
    comps = [tc._case("cpu", torch.float32, g, 4, 64, True), tc._case("cpu", torch.float32, g, 4, 32, True)]
    kv, w, rope = torch.randn(3, 1, 128), torch.randn(128), torch.rand(128)
    win, slots, pos = torch.randn(4, 16, 128), torch.tensor([1, 3, 0]), torch.tensor([[3], [11], [40]])
    mine, win_mine = [tc._fresh(c) for c in comps], win.clone()
    step = torch.compile(lambda *a: tc.decode_cache(*a), backend="aot_eager", fullgraph=True)
    step(kv, w, win_mine, rope, pos, slots, 1e-6, mine)
    ref(kv, w, win, rope, pos, slots, 1e-6, comps)
    for x, y in zip([win_mine] + tc._state(mine), [win] + tc._state(comps)):
        assert (x - y).abs().max() < 1e-5 * y.abs().max(), (x - y).abs().max()
    print("ok")
""")

_MODEL = textwrap.dedent("""
    import torch
    from dsv4rt import ops
    from dsv4rt.checkpoint.load import load_model
    from dsv4rt.kernels import triton_cache as tc
    from dsv4rt.ops import registry
    m, _ = load_model({path!r})

    def run():
        m.allocate_cache(3, 160)
        ids = torch.randint(2, m.args.vocab_size, (2, 132), generator=torch.Generator().manual_seed(2))
        slots = torch.tensor([2, 0])
        m(ids[:, :124], torch.zeros(2, dtype=torch.long), slots)
        # positions 124..129: 127 ends a CSA block and the first HCA block
        out = [m(ids[:, 124 + k:125 + k], torch.full((2,), 124 + k), slots) for k in range(6)]
        # an entries buffer's last row is scratch, unspecified (kernels/triton_cache.py)
        return torch.stack(out), [(b[:, :-1] if n.endswith("entries") else b).clone() for n, b in m.named_buffers()]

    want, want_state = run()
    with registry.scoped():
        registry.register(ops.decode_cache, "triton", 10)(tc.decode_cache)
        got, got_state = run()
    assert (got - want).abs().max() < 1e-4 * want.abs().max(), (got - want).abs().max()
    for x, y in zip(got_state, want_state):
        assert x.shape == y.shape and (x - y).abs().max() <= 1e-5 * max(1.0, y.abs().max()), (x - y).abs().max()
    print("ok")
""")


def test_kernel_matches_reference_in_interpreter():
    """fp32 (the interpreter's bf16 is not the GPU's); bf16 is the self-check on the GPU."""
    run_interpreted(_KERNEL)


@pytest.mark.slow
def test_model_decodes_the_same_through_the_kernel_in_interpreter(tiny_dir):
    run_interpreted(_MODEL.format(path=str(tiny_dir)), timeout=300)


def _comp(ratio: int, hd: int, overlap: bool, rows: int = 2, slots: int = 3) -> Compression:
    c = 2 if overlap else 1
    g = torch.Generator().manual_seed(ratio + hd)
    rand = lambda *s: torch.randn(*s, generator=g)  # noqa: E731
    ring = lambda: rand(slots, c * hd, c * ratio)  # noqa: E731
    return Compression(rand(rows, 1, c * hd), rand(rows, 1, c * hd), rand(ratio, c * hd), ring(), ring(),
                       torch.zeros(slots, 9, hd), torch.rand(hd) + 0.5, torch.rand(hd) * 0.1)


def test_reference_writes_an_entry_only_where_a_block_ends():
    """ratio 4: position 7 ends a block (entry row 1), position 9 does not (the scratch row, 8)."""
    c = _comp(4, 16, True)
    kv, win = torch.randn(2, 1, 32), torch.zeros(3, 8, 32)
    ops.decode_cache.reference(kv, torch.ones(32), win, torch.zeros(32), torch.tensor([[7], [9]]), torch.tensor([2, 0]),
                               1e-6, [c])
    written = c.entries.abs().sum(-1) > 0  # [slot, row]
    assert written.nonzero().tolist() == [[0, 8], [2, 1]]
    # the window rows: slot 2 row 7 % 8, slot 0 row 9 % 8; RoPE frequencies 0 leave the normed kv as is
    assert torch.allclose(win[2, 7], kv[0, 0] * torch.rsqrt(kv[0, 0].square().mean() + 1e-6))
    assert (win.abs().sum(-1) > 0).nonzero().tolist() == [[0, 1], [2, 7]]


def test_reference_pools_the_newest_token_from_the_projection_not_the_ring():
    """The token is pushed into the ring before the pool: at position 0 the entry is that token's
    a (softmax over one live token), normed."""
    c = _comp(4, 16, False)
    ops.decode_cache.reference(torch.randn(2, 1, 32), torch.ones(32), torch.zeros(3, 8, 32), torch.zeros(32),
                               torch.tensor([[3], [3]]), torch.tensor([0, 1]), 1e-6, [c._replace(rope=torch.zeros(16))])
    a = c.a[0, 0]
    # position 3 ends block 0, which pools positions 0..3 from the ring: 3 from this token, 0..2 old
    assert torch.equal(c.ring_kv[0, :, 3], a) and torch.equal(c.ring_sc[0, :, 3], c.z[0, 0] + c.ape[3])
    weights = c.ring_sc[0].softmax(-1)
    pooled = (c.ring_kv[0] * weights).sum(-1)
    want = pooled * torch.rsqrt(pooled.square().mean() + 1e-6) * c.norm_weight
    torch.testing.assert_close(c.entries[0, 0], want)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_kernel_at_mini_shapes_matches_reference_in_bf16():
    """mini's CSA layer (compressors of 512 and 128 channels, ratio 4) and HCA layer (512, ratio 128), at
    1 and 64 rows: many programs a row, and rows racing for nothing (each row its own counts)."""
    from dsv4rt.kernels import triton_cache as tc
    from dsv4rt.ops.registry import get

    assert get("decode_cache").backend == "dispatch"  # its self-check passed
    g, dev, bf16 = torch.Generator().manual_seed(3), "cuda", torch.bfloat16
    for rows in (1, 64):
        slots = torch.randperm(rows + 1, generator=g)[:rows].to(dev)
        pos = torch.randint(0, 1000, (rows, 1), generator=g)
        pos[0] = 125  # row 0's third token ends an HCA block (and a CSA one): both sizes run the pool
        pos = pos.to(dev)
        for spec in (((4, 512, True), (4, 128, True)), ((128, 512, False),)):
            comps = [tc._case(dev, bf16, g, r, hd, ov, rows, rows + 1, 260) for r, hd, ov in spec]
            kv, w = torch.randn(rows, 1, 512, generator=g).to(dev, bf16), torch.rand(512, generator=g).to(dev, bf16)
            rope, win = torch.rand(512, generator=g).to(dev) * 0.1, torch.randn(rows + 1, 128, 512).to(dev, bf16)
            assert tc.check_steps(comps, kv, w, rope, win, slots, pos, 3) <= 2e-2
