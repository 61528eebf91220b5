"""mHC split + Sinkhorn-Knopp in one Triton launch (op `hc_split_sinkhorn`, CUDA tensors), and the
whole rest of an mHC pre after the mix in one launch (op `hc_pre`: split, Sinkhorn, stream sum, RMSNorm).

The reference runs ~4 tiny kernels per Sinkhorn iteration, ~80 per sub-block and ~1,300 per decode
step of the mini model; here each program keeps BLOCK rows' n×n matrices in registers for all iterations.
Under torch.compile the Sinkhorn op and the fused stream sum + norm were two launches per sub-block
(benchmarks/launch_count.py); `hc_pre` is one. It takes the streams' projection as partial sums (the
previous post leaves them, triton_mhc_post) and gives each row two programs: one for the Sinkhorn, one
for the stream sum and norm, which need only the pre weights.
"""

from __future__ import annotations

import logging

import torch
import triton
import triton.language as tl

from dsv4rt import ops
from dsv4rt.kernels import pdl
from dsv4rt.kernels.pdl import wait_prior
from dsv4rt.ops.registry import next_impl, register, register_checked, rel_err

log = logging.getLogger(__name__)


@triton.jit
def _pre_weights(pre_raw, ms, scale_ptr, base_ptr, eps, N: tl.constexpr):
    """sigmoid(raw·ms·scale₀ + base) + eps for pre_raw [R, N] (ms [R]: the mix's RMS scale)."""
    pre = pre_raw * ms[:, None] * tl.load(scale_ptr) + tl.load(base_ptr + tl.arange(0, N))[None, :]
    return tl.sigmoid(pre) + eps


@triton.jit
def _sinkhorn(post_raw, comb_raw, ms, scale_ptr, base_ptr, eps, ITERS: tl.constexpr, N: tl.constexpr):
    """post [R, N] and comb [R, N, N] from their raw mix values (rows of R) times `ms` [R], in registers."""
    j = tl.arange(0, N)
    post = post_raw * ms[:, None] * tl.load(scale_ptr + 1)
    post = 2.0 * tl.sigmoid(post + tl.load(base_ptr + N + j)[None, :])
    cell = j[:, None] * N + j[None, :]  # [N, N]: row = input stream, column = output stream
    z = comb_raw * ms[:, None, None] * tl.load(scale_ptr + 2) + tl.load(base_ptr + 2 * N + cell)[None]
    z = tl.exp(z - tl.max(z, axis=2)[:, :, None])
    c = z / tl.sum(z, axis=2)[:, :, None] + eps
    c = c / (tl.sum(c, axis=1)[:, None, :] + eps)
    for _ in tl.static_range(ITERS - 1):
        c = c / (tl.sum(c, axis=2)[:, :, None] + eps)
        c = c / (tl.sum(c, axis=1)[:, None, :] + eps)
    return post, c


@triton.jit
def _store_split(post_ptr, comb_ptr, rows, ok, post, c, N: tl.constexpr):
    j = tl.arange(0, N)
    tl.store(post_ptr + rows[:, None] * N + j[None, :], post, mask=ok[:, None])
    cell = j[:, None] * N + j[None, :]
    tl.store(comb_ptr + rows[:, None, None] * (N * N) + cell[None], c, mask=ok[:, None, None])


@triton.jit
def _split_sinkhorn(mix_ptr, scale_ptr, base_ptr, pre_ptr, post_ptr, comb_ptr, M, eps,
                    ITERS: tl.constexpr, N: tl.constexpr, BLOCK: tl.constexpr, PDL: tl.constexpr):
    W: tl.constexpr = (2 + N) * N
    wait_prior(PDL)
    rows = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    ok, j = rows < M, tl.arange(0, N)
    row_ptr = mix_ptr + rows[:, None] * W + j[None, :]
    cell = j[:, None] * N + j[None, :]
    comb_raw = tl.load(mix_ptr + rows[:, None, None] * W + 2 * N + cell[None], mask=ok[:, None, None], other=0.0)
    ms = tl.full((BLOCK,), 1.0, tl.float32)
    pre = _pre_weights(tl.load(row_ptr, mask=ok[:, None], other=0.0), ms, scale_ptr, base_ptr, eps, N)
    post, c = _sinkhorn(tl.load(row_ptr + N, mask=ok[:, None], other=0.0), comb_raw, ms, scale_ptr, base_ptr, eps,
                        ITERS, N)
    tl.store(pre_ptr + rows[:, None] * N + j[None, :], pre, mask=ok[:, None])
    _store_split(post_ptr, comb_ptr, rows, ok, post, c, N)


@triton.jit
def _streams(h_ptr, d0, s_hn, D: tl.constexpr, N: tl.constexpr, BLOCK_D: tl.constexpr):
    """h[:, d0:d0+BLOCK_D] of one row's N streams as fp32 [N, BLOCK_D] (0 past D), and the columns."""
    d = d0 + tl.arange(0, BLOCK_D)
    hv = tl.load(h_ptr + tl.arange(0, N)[:, None] * s_hn + d[None, :], mask=(d < D)[None, :], other=0.0)
    return hv.to(tl.float32), d


@triton.jit
def _mixed(hv, p, dtype):
    """Σ_j p[j]·hv[j] of [N, BLOCK_D] streams, rounded to h's dtype as the reference does."""
    return tl.sum(p[:, None] * hv, axis=0).to(dtype).to(tl.float32)


@triton.jit
def _raw(mix_ptr, P, offs, P_PAD: tl.constexpr, W: tl.constexpr):
    """One row's raw mix values at `offs` [L]: the sum of its P partial projections of W values, as a
    2-row tile [2, L] with the second row 0 (tiles of one row are not portable)."""
    p = tl.arange(0, P_PAD)
    v = tl.sum(tl.load(mix_ptr + p[:, None] * W + offs[None, :], mask=(p < P)[:, None], other=0.0), axis=0)
    return tl.where((tl.arange(0, 2) == 0)[:, None], v[None, :], 0.0)


@triton.jit
def _row_sinkhorn(mix_ptr, P, scale_ptr, base_ptr, ms, hc_eps, ITERS: tl.constexpr, N: tl.constexpr,
                  P_PAD: tl.constexpr):
    """One row's post [2, N] and comb [2, N, N] (2-row tiles, row 0 valid; ms: the mix's RMS scale)."""
    W: tl.constexpr = (2 + N) * N
    j = tl.arange(0, N)
    comb_raw = tl.reshape(_raw(mix_ptr, P, 2 * N + tl.arange(0, N * N), P_PAD, W), (2, N, N))
    return _sinkhorn(_raw(mix_ptr, P, N + j, P_PAD, W), comb_raw, ms + tl.zeros((2,), tl.float32), scale_ptr,
                     base_ptr, hc_eps, ITERS, N)


@triton.jit
def _row_pre(mix_ptr, P, scale_ptr, base_ptr, ms, hc_eps, N: tl.constexpr, P_PAD: tl.constexpr, W: tl.constexpr):
    """One row's pre weights [N] (the first N of its W mix values)."""
    pre = _pre_weights(_raw(mix_ptr, P, tl.arange(0, N), P_PAD, W), ms + tl.zeros((2,), tl.float32),
                       scale_ptr, base_ptr, hc_eps, N)
    return tl.sum(tl.where((tl.arange(0, 2) == 0)[:, None], pre, 0.0), axis=0)


@triton.jit
def _row_scale(h_ptr, s_hn, eps, D: tl.constexpr, N: tl.constexpr, BLOCK_D: tl.constexpr):
    """The mix's RMS scale of a row, 1/sqrt(mean h² over its N streams + eps), and (when the row fits
    one block) the streams [N, BLOCK_D]."""
    hv, _ = _streams(h_ptr, 0, s_hn, D, N, BLOCK_D)
    square = tl.sum(hv * hv, axis=0)
    for d0 in range(BLOCK_D, D, BLOCK_D):
        hn, _ = _streams(h_ptr, d0, s_hn, D, N, BLOCK_D)
        square += tl.sum(hn * hn, axis=0)
    return 1.0 / tl.sqrt(tl.sum(square, axis=0) / (N * D) + eps), hv


@triton.jit
def _row_x(h_ptr, s_hn, hv, p, w_ptr, x_ptr, norm_eps, D: tl.constexpr, N: tl.constexpr, BLOCK_D: tl.constexpr):
    """Store x = RMSNorm(Σ_j p_j·h_j)·w of one row. With the whole row in one block (BLOCK_D ≥ D) from
    hv, its streams; otherwise in passes (x's mean square, then x), h read again rather than kept."""
    dt = h_ptr.dtype.element_ty
    if BLOCK_D < D:
        x_square = tl.zeros((BLOCK_D,), dtype=tl.float32)
        for d0 in range(0, D, BLOCK_D):
            xd = _mixed(_streams(h_ptr, d0, s_hn, D, N, BLOCK_D)[0], p, dt)
            x_square += xd * xd
        rstd = 1.0 / tl.sqrt(tl.sum(x_square, axis=0) / D + norm_eps)
    else:
        x = _mixed(hv, p, dt)
        rstd = 1.0 / tl.sqrt(tl.sum(x * x, axis=0) / D + norm_eps)
    for d0 in range(0, D, BLOCK_D):  # one step when the row was kept: x is still in registers
        if BLOCK_D < D:
            x = _mixed(_streams(h_ptr, d0, s_hn, D, N, BLOCK_D)[0], p, dt)
        d = d0 + tl.arange(0, BLOCK_D)
        w = tl.load(w_ptr + d, mask=d < D, other=0.0).to(tl.float32)
        tl.store(x_ptr + d, (x * rstd * w).to(x_ptr.dtype.element_ty), mask=d < D)


@triton.jit
def _pre_apply(mix_ptr, P, scale_ptr, base_ptr, h_ptr, w_ptr, x_ptr, post_ptr, comb_ptr, s_hm, s_hn, hc_eps, norm_eps,
               mix_eps, D: tl.constexpr, ITERS: tl.constexpr, N: tl.constexpr, BLOCK_D: tl.constexpr,
               P_PAD: tl.constexpr, W: tl.constexpr, FIRST_PART: tl.constexpr, PDL: tl.constexpr):
    """Row r's programs: (r, 0) the split + Sinkhorn (post, comb), (r, 1) x = RMSNorm(Σ_j pre_j·h_j)·w
    (FIRST_PART 1 launches only the second: the input alone, of W = N mix values for the head's
    collapse). x needs only pre, so it does not wait for the Sinkhorn's 20 dependent iterations. Both
    take the mix's RMS scale from the streams."""
    row, part = tl.program_id(0), tl.program_id(1) + FIRST_PART
    wait_prior(PDL)
    h_ptr += row.to(tl.int64) * s_hm
    mix_ptr += row.to(tl.int64) * P * W
    ms, hv = _row_scale(h_ptr, s_hn, mix_eps, D, N, BLOCK_D)
    if part == 0:
        post, c = _row_sinkhorn(mix_ptr, P, scale_ptr, base_ptr, ms, hc_eps, ITERS, N, P_PAD)
        _store_split(post_ptr, comb_ptr, row + tl.arange(0, 2), tl.arange(0, 2) == 0, post, c, N)
    else:
        p = _row_pre(mix_ptr, P, scale_ptr, base_ptr, ms, hc_eps, N, P_PAD, W)
        _row_x(h_ptr, s_hn, hv, p, w_ptr, x_ptr + row.to(tl.int64) * D, norm_eps, D, N, BLOCK_D)


# A torch custom op, so torch.compile (dsv4rt/compiled.py) keeps this one launch as it is: traced
# as a user Triton kernel it ran ~44 µs per call under Inductor, and the reference's 20 iterations
# fused into ~170 µs reduction kernels (both measured on the H100); eager it is a few µs.
@torch.library.custom_op("dsv4rt::hc_split_sinkhorn", mutates_args=())
def _sinkhorn_op(flat: torch.Tensor, scale: torch.Tensor, base: torch.Tensor, n: int, iters: int,
                 eps: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """flat [M, (2+n)n] fp32 -> pre [M, n], post [M, n], comb [M, n, n]."""
    flat, M = flat.contiguous(), flat.shape[0]
    pre, post = flat.new_empty(M, n), flat.new_empty(M, n)
    comb = flat.new_empty(M, n, n)
    block = 16
    _split_sinkhorn[(triton.cdiv(M, block),)](flat, scale.contiguous(), base.contiguous(), pre, post, comb,
                                              M, eps, ITERS=iters, N=n, BLOCK=block, num_warps=1,
                                              **pdl.args())
    return pre, post, comb


@_sinkhorn_op.register_fake
def _(flat, scale, base, n, iters, eps):
    M = flat.shape[0]
    return flat.new_empty(M, n), flat.new_empty(M, n), flat.new_empty(M, n, n)


def split_sinkhorn(mix, scale, base, n: int, iters: int, eps: float):
    """Same contract as the reference `hc_split_sinkhorn` (fp32 mix [..., (2+n)n])."""
    if n & (n - 1) or mix.dtype != torch.float32:  # Triton tiles need a power-of-two n
        return ops.hc_split_sinkhorn.reference(mix, scale, base, n, iters, eps)
    lead = mix.shape[:-1]
    pre, post, comb = _sinkhorn_op(mix.reshape(-1, mix.shape[-1]), scale, base, n, iters, eps)
    return pre.view(*lead, n), post.view(*lead, n), comb.view(*lead, n, n)


# also an opaque custom op (as above): the split, the stream sum and the norm are one launch
@torch.library.custom_op("dsv4rt::hc_pre", mutates_args=())
def _pre_op(raw: torch.Tensor, scale: torch.Tensor, base: torch.Tensor, h: torch.Tensor, weight: torch.Tensor,
            n: int, iters: int, hc_eps: float, norm_eps: float, mix_eps: float,
            x_only: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """raw [M, P, k] fp32 (P partial sums, not yet RMS-scaled), h [M, n, D] -> x [M, D] (h's dtype),
    post [M, n], comb [M, n, n] (k = (2+n)n); x_only: x alone (k ≥ n; post and comb left unwritten)."""
    M, P, D = h.shape[0], raw.shape[1], h.shape[2]
    x, post, comb = h.new_empty(M, D), raw.new_empty(M, n), raw.new_empty(M, n, n)
    _pre_apply[(M, 1 if x_only else 2)](
        raw.contiguous(), P, scale.contiguous(), base.contiguous(), h, weight.contiguous(), x, post, comb, h.stride(0),
        h.stride(1), hc_eps, norm_eps, mix_eps, D=D, ITERS=iters, N=n, P_PAD=triton.next_power_of_2(P),
        W=raw.shape[2], FIRST_PART=int(x_only), **_pre_config(n, D), **pdl.args())
    return x, post, comb


PRE_CONFIG = {"row_elems": 8192, "num_warps": 4}  # benchmarks/kernel_bench.py times the warp counts


def _pre_config(n: int, d: int) -> dict:
    """The whole row in one block when its n·d elements fit PRE_CONFIG's register budget (mini: 4 × 2048),
    else 1,024-column passes."""
    whole = triton.next_power_of_2(d)
    block = whole if n * whole <= PRE_CONFIG["row_elems"] else min(1024, whole)
    return {"BLOCK_D": block, "num_warps": PRE_CONFIG["num_warps"]}


@_pre_op.register_fake
def _(raw, scale, base, h, weight, n, iters, hc_eps, norm_eps, mix_eps, x_only):
    M = h.shape[0]
    return h.new_empty(M, h.shape[2]), raw.new_empty(M, n), raw.new_empty(M, n, n)


def _tiled(raw, h, n: int) -> bool:
    """What the kernel tiles: n a power of two, an fp32 raw, h unit-stride along d."""
    return not n & (n - 1) and raw.dtype == torch.float32 and h.stride(-1) == 1


def pre_apply(raw, scale, base, h, norm_weight, n: int, iters: int, hc_eps: float, norm_eps: float, mix_eps: float):
    """Same contract as the reference `hc_pre`; what `_tiled` rejects goes to the reference."""
    if not _tiled(raw, h, n):
        return next_impl(ops.hc_pre, "triton")(raw, scale, base, h, norm_weight, n, iters, hc_eps, norm_eps, mix_eps)
    lead, D = h.shape[:-2], h.shape[-1]
    x, post, comb = _pre_op(raw.reshape(-1, *raw.shape[-2:]), scale, base, h.reshape(-1, n, D), norm_weight, n,
                            iters, hc_eps, norm_eps, mix_eps, False)
    return x.view(*lead, D), post.view(*lead, n), comb.view(*lead, n, n)


def pre_x_apply(raw, scale, base, h, norm_weight, n: int, hc_eps: float, norm_eps: float, mix_eps: float):
    """Same contract as the reference `hc_pre_x` (the second program of `hc_pre` alone)."""
    if not _tiled(raw, h, n):
        return next_impl(ops.hc_pre_x, "triton")(raw, scale, base, h, norm_weight, n, hc_eps, norm_eps, mix_eps)
    lead, D = h.shape[:-2], h.shape[-1]
    x, _, _ = _pre_op(raw.reshape(-1, *raw.shape[-2:]), scale, base, h.reshape(-1, n, D), norm_weight, n, 1,
                      hc_eps, norm_eps, mix_eps, True)
    return x.view(*lead, D)


def pre_self_check(device: str = "cuda", dtype: torch.dtype = torch.bfloat16) -> float:
    """Largest relative error of x, post and comb against the reference on 3 rows of D = 1000 (a
    partial last chunk), each with 5 partial projections: the registry's gate before this kernel may
    run in a model."""
    hc_pre, hc_pre_x = ops.hc_pre.reference, ops.hc_pre_x.reference

    g = torch.Generator(device="cpu").manual_seed(0)
    mix, scale, base = torch.randn(3, 5, 24, generator=g), torch.rand(3, generator=g) + 0.5, torch.randn(24, generator=g)
    h, w = torch.randn(3, 4, 1000, generator=g) * 3, torch.rand(1000, generator=g) + 0.5  # mix scale ~1/3
    args = [mix.to(device), scale.to(device), base.to(device), h.to(device, dtype), w.to(device, dtype)]
    got = pre_apply(*args, 4, 20, 1e-6, 1e-6, 1e-6)
    want = hc_pre(*args, 4, 20, 1e-6, 1e-6, 1e-6)
    head = [mix[..., :4].to(device), scale[:1].to(device), base[:4].to(device), *args[3:]]  # the head's collapse
    x_only = rel_err(pre_x_apply(*head, 4, 1e-6, 1e-6, 1e-6), hc_pre_x(*head, 4, 1e-6, 1e-6, 1e-6))
    return max([x_only] + [rel_err(a, b) for a, b in zip(got, want)])


if torch.cuda.is_available():
    register(ops.hc_split_sinkhorn, backend="triton", priority=10, device="cuda")(split_sinkhorn)
    if register_checked(ops.hc_pre, pre_apply, pre_self_check, 2e-2, "triton", 10, "cuda"):  # checks hc_pre_x too
        register(ops.hc_pre_x, "triton", 10, "cuda")(pre_x_apply)
else:
    log.info("triton mHC Sinkhorn not registered: no CUDA device")
