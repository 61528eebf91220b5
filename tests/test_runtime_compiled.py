"""torch.compile decode block (dsv4rt/compiled.py) on CPU: same logits and cache state as the
eager model, the CUDA-only switch, and the eager fallback when a compile fails. CPU runs use the
cheap `aot_eager` backend (Dynamo graphs, graph breaks and functionalization, no code generation);
Inductor itself runs in tests/test_gpu_decode.py."""

from __future__ import annotations

import logging
import re
import shutil

import pytest
import torch

from dsv4rt.checkpoint.load import load_model
from dsv4rt import compiled


@pytest.fixture
def model(tiny_dir):
    torch.set_num_threads(1)
    m, _ = load_model(tiny_dir)
    return m


def _decode_twice(m):
    """Prefill 2 rows of 20 tokens, then two decode steps; -> (logits of each step, cache buffers)."""
    m.allocate_cache(3, 64)
    ids = torch.randint(2, m.args.vocab_size, (2, 22), generator=torch.Generator().manual_seed(0))
    slots = torch.tensor([2, 0])  # out of order on purpose: writes must follow slots
    m(ids[:, :20], torch.zeros(2, dtype=torch.long), slots)
    out = [m(ids[:, 20 + k : 21 + k], torch.full((2,), 20 + k), slots) for k in range(2)]
    return out, {k: v.clone() for k, v in m.named_buffers()}


def test_compiled_decode_equals_eager(model):
    want, want_state = _decode_twice(model)
    assert compiled.compile_decode(model, backend="aot_eager", allow_cpu=True)
    got, got_state = _decode_twice(model)
    assert compiled.compile_failures(model) == {"block": None, "logits": None}
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
    for name, buf in want_state.items():
        torch.testing.assert_close(got_state[name], buf, rtol=1e-5, atol=1e-5, msg=name)


def test_compile_is_cuda_only_unless_asked(model, caplog):
    with caplog.at_level(logging.INFO, logger="dsv4rt.compiled"):
        assert not compiled.compile_decode(model)
    assert model.compiled_decode is None and "CUDA only" in caplog.text


def test_a_failing_compile_falls_back_to_eager_and_says_why(caplog):
    def broken(*args):
        raise RuntimeError("inductor exploded")

    fn = compiled._Guarded(broken, lambda x: x + 1, "block")
    with caplog.at_level(logging.WARNING, logger="dsv4rt.compiled"):
        assert fn(1) == 2 and fn(2) == 3
    assert "inductor exploded" in fn.failed and caplog.text.count("inductor exploded") == 1



@pytest.mark.slow
@pytest.mark.skipif(shutil.which("g++") is None, reason="Inductor on CPU needs a C++ compiler")
@torch.no_grad()
def test_inductor_writes_the_decode_cache_in_place(model):
    """One CSA layer (window ring, compressor, indexer compressor) through Inductor on CPU: the same
    output and cache as eager, and every cache write an in-place scatter. A write after a read of the
    old buffer becomes an out-of-place index_put plus a whole-buffer copy_ back (ops/cache.write_rows)."""
    from torch._inductor import config
    from torch._inductor.utils import run_and_get_code

    model.allocate_cache(3, 64)
    model(torch.randint(2, 4000, (2, 20)), torch.zeros(2, dtype=torch.long), torch.tensor([2, 0]))
    layer, a = model.layers[4], model.args
    assert layer.attn.indexer is not None and not layer.ffn.gate.hashed
    args = (torch.randn(2, 1, a.hc_mult, a.dim), torch.tensor([[5], [9]]), torch.full((2, 1), 20), torch.tensor([2, 0]),
            None, model.layers[5].attn_pre())
    bufs = dict(layer.named_buffers())
    before = {k: v.clone() for k, v in bufs.items()}
    want = layer(*args)
    want_state = {k: v.clone() for k, v in bufs.items()}
    for k, v in bufs.items():
        v.copy_(before[k])
    compiled.compile_decode(model, backend="inductor", allow_cpu=True)
    with config.patch(fx_graph_cache=False):
        got, code = run_and_get_code(model.compiled_decode.block, layer, *args)
    assert model.compiled_decode.block.failed is None
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)
    for k, v in bufs.items():
        torch.testing.assert_close(v, want_state[k], rtol=1e-4, atol=1e-4, msg=k)
    allocated = set(re.findall(r"empty_strided_cpu\(\(([\d, ]+)\)", "\n".join(code)))
    copies = {k: v.shape for k, v in bufs.items() if ", ".join(map(str, v.shape)) in allocated}
    assert allocated and not copies, f"whole-buffer temporaries of {copies}"
