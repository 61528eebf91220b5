"""Linears of one row (decode at batch 1) as Triton GEMVs: ops `linear`, `fp32_linear` and `norm_linear`.

At batch 1 cuBLAS ran the layers' projections at ~1.3 TB/s on the H100 (8 MiB `wq_b`/`wo_b` in 6.1 µs)
and the router's 64×2048 scores in 5.1 µs (docs/performance.md, round 3): its tiles are sized for M ≥ 8
and leave most SMs idle. Here each program streams BLOCK_N whole weight rows, and BLOCK_N shrinks until
there are enough programs for every SM to keep several 8 KiB loads in flight (as `triton_moe_gemv`).
`groups` covers the grouped output projection (`wo_a`: group g of the rows reads slice g of x).
Only batches of at most MAX_ROWS rows come here; larger ones, other dtypes and shapes the tiles do not
divide go to the next implementation of the op (cuBLAS).
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

MAX_ROWS = 1  # at 2 rows cuBLAS was faster for wq_b, the CSA projection and the head (kernel_bench, H100)
_PROGRAMS = 512  # ~4 resident programs per SM of an H100, each with one 8 KiB tile in flight
_TILE = 4096  # weight elements per program and step (8 KiB in bf16)
EARLY_TILES = 2  # weight tiles a program requests before its PDL wait (1: only the first; kernel_bench compares)


@triton.jit
def _tile(x_ptrs, w_ptrs, ok, k0):
    return tl.load(x_ptrs + k0, mask=ok, other=0.0), tl.load(w_ptrs + k0)


@triton.jit
def _rstd(x_ptr, M, K, s_xm, eps, M_PAD: tl.constexpr, BLOCK_K: tl.constexpr):
    """1/RMS of each of x's rows [M_PAD] (the whole row: every program reads it anyway)."""
    ms, cols = tl.arange(0, M_PAD), tl.arange(0, BLOCK_K)
    square = tl.zeros((M_PAD,), tl.float32)
    for k0 in range(0, K, BLOCK_K):
        xk = tl.load(x_ptr + ms[:, None] * s_xm + k0 + cols[None, :], mask=(ms < M)[:, None], other=0.0)
        square += tl.sum(xk.to(tl.float32) * xk.to(tl.float32), axis=1)
    return 1.0 / tl.sqrt(square / K + eps)


@triton.jit
def _normed(xv, nw_ptr, k0, cols, rstd, HAS_NORM: tl.constexpr):
    """x's tile at column k0 as fp32; with HAS_NORM RMSNorm(x)·nw, rounded to x's dtype as the norm op's
    output would be."""
    if HAS_NORM:
        nw = tl.load(nw_ptr + k0 + cols).to(tl.float32)
        xv = (xv.to(tl.float32) * rstd[:, None, None] * nw[None, None, :]).to(xv.dtype)
    return xv.to(tl.float32)


@triton.jit
def _acc(acc, xv, w, nw_ptr, k0, cols, rstd, HAS_NORM: tl.constexpr, M_PAD: tl.constexpr, BLOCK_N: tl.constexpr,
         BLOCK_K: tl.constexpr, VEC: tl.constexpr):
    """acc + the products of x's and w's tiles at column k0, folded over each thread's VEC columns."""
    part = _normed(xv, nw_ptr, k0, cols, rstd, HAS_NORM) * w.to(tl.float32)[None]
    return acc + tl.sum(tl.reshape(part, (M_PAD, BLOCK_N, BLOCK_K // VEC, VEC)), axis=3)


@triton.jit
def _gemv(x_ptr, w_ptr, y_ptr, nw_ptr, M, K, rows_per_group, s_xm, s_wn, s_ym, eps, M_PAD: tl.constexpr,
          BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr, VEC: tl.constexpr, HAS_NORM: tl.constexpr,
          EARLY: tl.constexpr, PDL: tl.constexpr):
    """y[m, tile rows] = x[m, group slice] · w[tile rows]ᵀ for the M ≤ M_PAD rows of x; with HAS_NORM
    x is RMSNorm(x)·nw first (one group), its RMS taken while the first weight tile is on its way.
    The first EARLY (1 or 2) weight tiles are requested before the wait for x (PDL): they overlap the
    previous kernel, and at two tiles a program (the layers' projections) that is every weight byte."""
    tile = tl.program_id(0)
    rows = tile * BLOCK_N + tl.arange(0, BLOCK_N)
    group = (tile * BLOCK_N) // rows_per_group  # BLOCK_N divides rows_per_group: one group per tile
    ms, cols = tl.arange(0, M_PAD), tl.arange(0, BLOCK_K)
    w_ptrs = w_ptr + rows[:, None].to(tl.int64) * s_wn + cols[None, :]
    # x as an [M_PAD, BLOCK_N, BLOCK_K] tile of equal rows, in the weights' layout (see triton_moe_gemv)
    x_ptrs = (x_ptr + group * K + ms[:, None, None] * s_xm + tl.zeros_like(rows)[None, :, None]
              + cols[None, None, :])
    ok = (ms < M)[:, None, None]
    acc = tl.zeros((M_PAD, BLOCK_N, BLOCK_K // VEC), dtype=tl.float32)
    w = tl.load(w_ptrs)
    if EARLY == 2:
        w_1 = tl.load(w_ptrs + BLOCK_K)
    wait_prior(PDL)
    xv = tl.load(x_ptrs, mask=ok, other=0.0)
    rstd = _rstd(x_ptr, M, K, s_xm, eps, M_PAD, BLOCK_K) if HAS_NORM else tl.zeros((M_PAD,), tl.float32)
    start = BLOCK_K
    if EARLY == 2:
        x_1 = tl.load(x_ptrs + BLOCK_K, mask=ok, other=0.0)
        acc = _acc(acc, xv, w, nw_ptr, 0, cols, rstd, HAS_NORM, M_PAD, BLOCK_N, BLOCK_K, VEC)
        xv, w, start = x_1, w_1, 2 * BLOCK_K
    for k0 in range(start, K + BLOCK_K, BLOCK_K):
        # the next tile's loads go out before this tile's sums; the last step reloads its own (min)
        xn, wn = _tile(x_ptrs, w_ptrs, ok, tl.minimum(k0, K - BLOCK_K))
        acc = _acc(acc, xv, w, nw_ptr, k0 - BLOCK_K, cols, rstd, HAS_NORM, M_PAD, BLOCK_N, BLOCK_K, VEC)
        xv, w = xn, wn
    y = tl.sum(acc, axis=2)
    tl.store(y_ptr + ms[:, None] * s_ym + rows[None, :], y.to(y_ptr.dtype.element_ty), mask=(ms < M)[:, None])


def _blocks(n: int, group_rows: int, k: int) -> tuple[int, int]:
    """(BLOCK_N, BLOCK_K): the widest row block that still gives _PROGRAMS programs (or the narrowest
    that divides the group), and a K step of _TILE elements (K itself when shorter)."""
    fits = [b for b in (16, 8, 4, 2, 1) if group_rows % b == 0]
    block_n = next((b for b in fits if n // b >= _PROGRAMS), fits[-1])
    return block_n, min(k, _TILE // block_n)


def fits(x: torch.Tensor, w: torch.Tensor, groups: int) -> bool:
    """What the kernel tiles: ≤ MAX_ROWS rows of a 16-bit dtype shared with w, K a power-of-two
    multiple of 64 (every step a full tile), unit strides along K, whole groups of rows (CUDA: the registry)."""
    k = x.shape[-1] // groups
    return (x.numel() // max(x.shape[-1], 1) <= MAX_ROWS and x.dtype in (torch.bfloat16, torch.float16)
            and w.dtype == x.dtype and w.dim() == 2 and w.shape[1] == k and k >= 64 and k & (k - 1) == 0
            and w.shape[0] % groups == 0 and x.shape[-1] % groups == 0 and w.stride(1) == 1)


def _launch(x: torch.Tensor, w: torch.Tensor, groups: int, out_dtype: torch.dtype, norm_weight=None,
            eps: float = 0.0) -> torch.Tensor:
    """x [M, G·K] (unit stride along K), w [G·O, K] -> [M, G·O] in out_dtype (x RMS-normalised and
    weighted by norm_weight first, if given)."""
    M, N, K = x.shape[0], w.shape[0], w.shape[1]
    y = torch.empty(M, N, dtype=out_dtype, device=x.device)
    block_n, block_k = _blocks(N, N // groups, K)
    _gemv[(N // block_n,)](x, w, y, x if norm_weight is None else norm_weight, M, K, N // groups, x.stride(0),
                           w.stride(0), y.stride(0), eps, M_PAD=triton.next_power_of_2(max(M, 1)), BLOCK_N=block_n,
                           BLOCK_K=block_k, VEC=min(8, block_k), HAS_NORM=norm_weight is not None,
                           EARLY=min(EARLY_TILES, K // block_k), num_warps=4,
                           **pdl.args())
    return y


# torch custom ops, so torch.compile (dsv4rt/compiled.py) calls the launch as it is
@torch.library.custom_op("dsv4rt::gemv", mutates_args=())
def _gemv_op(x: torch.Tensor, w: torch.Tensor, groups: int, fp32_out: bool, norm_weight: torch.Tensor | None,
             eps: float) -> torch.Tensor:
    x = x if x.stride(-1) == 1 else x.contiguous()
    return _launch(x, w, groups, torch.float32 if fp32_out else x.dtype, norm_weight, eps)


@_gemv_op.register_fake
def _(x, w, groups, fp32_out, norm_weight, eps):
    return x.new_empty((x.shape[0], w.shape[0]), dtype=torch.float32 if fp32_out else x.dtype)


def _call(x: torch.Tensor, w: torch.Tensor, groups: int, fp32_out: bool, norm_weight=None,
          eps: float = 0.0) -> torch.Tensor:
    y = _gemv_op(x.reshape(-1, x.shape[-1]), w, groups, fp32_out, norm_weight, eps)
    return y.view(*x.shape[:-1], w.shape[0])


def linear(x: torch.Tensor, w: torch.Tensor, groups: int = 1) -> torch.Tensor:
    """Same contract as `ops.linear`; what `fits` rejects goes to the next implementation."""
    if not fits(x, w, groups):
        return next_impl(ops.linear, "triton")(x, w, groups)
    return _call(x, w, groups, False)


def fp32_linear(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """Same contract as `ops.fp32_linear` (router scores, vocab logits) for what `fits` takes."""
    if not fits(x, w, 1):
        return next_impl(ops.fp32_linear, "triton")(x, w)
    return _call(x, w, 1, True)


def norm_linear(x: torch.Tensor, norm_weight: torch.Tensor, eps: float, w: torch.Tensor) -> torch.Tensor:
    """Same contract as `ops.norm_linear`: the norm in the GEMV's loads, for what `fits` takes."""
    if not fits(x, w, 1) or norm_weight.shape != (x.shape[-1],) or norm_weight.stride(0) != 1:
        return next_impl(ops.norm_linear, "triton")(x, norm_weight, eps, w)
    return _call(x, w, 1, False, norm_weight, eps)


def self_check(device: str = "cuda", dtype: torch.dtype = torch.bfloat16) -> float:
    """Largest relative error against the reference on one row (what `fits` sends here): plain,
    grouped, with fp32 out, and with the RMSNorm in its loads."""
    g = torch.Generator(device="cpu").manual_seed(0)
    x, w = torch.randn(1, 256, generator=g).to(device, dtype), torch.randn(96, 256, generator=g).to(device, dtype)
    nw = (torch.rand(256, generator=g) + 0.5).to(device, dtype)
    errs = [rel_err(linear(x, w), ops.linear.reference(x, w)),
            rel_err(linear(x, w[:64, :64], 4), ops.linear.reference(x, w[:64, :64], 4)),
            rel_err(fp32_linear(x, w), ops.fp32_linear.reference(x, w)),
            rel_err(norm_linear(x * 3, nw, 1e-6, w), ops.norm_linear.reference(x * 3, nw, 1e-6, w))]
    return max(errs)


if torch.cuda.is_available():
    if register_checked(ops.linear, linear, self_check, 2e-2, "triton", 10, "cuda"):  # checks the others too
        register(ops.fp32_linear, "triton", 20, "cuda")(fp32_linear)
        register(ops.norm_linear, "triton", 10, "cuda")(norm_linear)
else:
    log.info("triton GEMV linears not registered: no CUDA device")
