"""RoPE (ops/rope.py) against the complex-number definition: pair (x_2i, x_2i+1) is rotated as
(x_2i + i·x_2i+1)·e^{i·pos·f_i} on the trailing dims; the leading dims pass through bit for bit."""

from __future__ import annotations

import pytest
import torch

from dsv4rt.ops.rope import apply_rope, channel_freqs, inv_freq


def _complex_rope(x, pos, freqs, inverse):
    r = 2 * freqs.shape[0]
    angle = (pos[..., None].float() * freqs).double()  # the angle is defined in fp32
    if x.dim() == 4:
        angle = angle[:, :, None]
    turn = torch.polar(torch.ones_like(angle), -angle if inverse else angle)
    pairs = torch.view_as_complex(x[..., -r:].double().unflatten(-1, (-1, 2)).contiguous())
    return torch.cat([x[..., :-r].double(), torch.view_as_real(pairs * turn).flatten(-2)], -1)


@pytest.mark.parametrize("inverse", [False, True])
@pytest.mark.parametrize("shape", [(2, 3, 128), (2, 3, 4, 512)])
def test_rope_is_the_complex_rotation(shape, inverse):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(*shape, generator=g)
    pos = torch.randint(0, 5000, shape[:2], generator=g)
    freqs = inv_freq(64, 160000.0, 16.0, 65536, 32.0, 1.0)
    got = apply_rope(x, pos, channel_freqs(freqs, shape[-1]), inverse)
    want = _complex_rope(x, pos, freqs, inverse)
    torch.testing.assert_close(got.double(), want, rtol=1e-5, atol=1e-5)
    assert torch.equal(got[..., :-64], x[..., :-64])


def test_inverse_undoes_the_rotation_in_bf16_rounding():
    x = torch.randn(3, 5, 8, 512).bfloat16()
    pos = torch.arange(15).view(3, 5) * 997
    f = channel_freqs(inv_freq(64, 10000.0), 512)
    back = apply_rope(apply_rope(x, pos, f), pos, f, inverse=True)
    torch.testing.assert_close(back, x, rtol=2e-2, atol=2e-2)
    assert torch.equal(back[..., :448], x[..., :448])
