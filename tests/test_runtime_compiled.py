"""torch.compile decode regions (kernels/compiled.py) on CPU: same logits and cache state as the
eager model, the CUDA-only switch, and the eager fallback when a compile fails. CPU runs use the
cheap `aot_eager` backend (Dynamo graphs, graph breaks and functionalization, no code generation);
Inductor itself runs in tests/test_gpu_decode.py."""

from __future__ import annotations

import logging

import pytest
import torch

from dsv4rt.checkpoint.load import load_model
from dsv4rt.kernels import compiled


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
    assert compiled.compile_failures(model) == {"attn_half": None, "ffn_half": None}
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
    for name, buf in want_state.items():
        torch.testing.assert_close(got_state[name], buf, rtol=1e-5, atol=1e-5, msg=name)


def test_compile_is_cuda_only_unless_asked(model, caplog):
    with caplog.at_level(logging.INFO, logger="dsv4rt.kernels.compiled"):
        assert not compiled.compile_decode(model)
    assert model.decode_fns is None and "CUDA only" in caplog.text


def test_a_failing_compile_falls_back_to_eager_and_says_why(caplog):
    def broken(*args):
        raise RuntimeError("inductor exploded")

    fn = compiled._Guarded(broken, lambda x: x + 1, "attn_half")
    with caplog.at_level(logging.WARNING, logger="dsv4rt.kernels.compiled"):
        assert fn(1) == 2 and fn(2) == 3
    assert "inductor exploded" in fn.failed and caplog.text.count("inductor exploded") == 1

