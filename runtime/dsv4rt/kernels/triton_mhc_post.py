"""An mHC post and the next pre's projection in one Triton launch (op `hc_post`, CUDA tensors), and the
whole boundary between two sub-blocks in one launch (op `hc_post_pre`).

Under torch.compile the post (h' = post·out + Cᵀ·h) and the next sub-block's projection of h' by its
(2+n)·n mix weights were two launches per sub-block, 32 a step of the mini model: the projection reads
the whole row, so Inductor could not fuse it into the post. Here each program owns BLOCK_D columns of
all n streams: it writes them and leaves its share of the projection as one partial sum, and `hc_pre`
(triton_mhc) adds the partials when it reads them. Deterministic: no atomics.

`hc_post_pre` also takes the next pre (up to FUSED_MAX_ROWS rows). Before its PDL wait each program
computes this sub-block's post and comb (the Sinkhorn of its pre's projection, written a sub-block
earlier), so they cost no time between kernels. After its columns, each program counts itself in;
the row's last one (an atomic count) reads all of h' and the partial sums back from L2 and writes the
next pre's input x. The hc_pre launch between sub-blocks is gone: 15 of the mini step's 16, and the
final head's collapse and norm. Still deterministic: the last program sums the partials in a fixed order.
"""

from __future__ import annotations

import logging

import torch
import triton
import triton.language as tl

from dsv4rt.kernels import pdl
from dsv4rt.kernels import triton_mhc as tm
from dsv4rt.kernels.pdl import wait_prior
from dsv4rt.kernels.registry import next_impl, register_checked, rel_err

log = logging.getLogger(__name__)

# columns a program, and the programs to aim for before rows share one (kernel_bench, H100: at 1, 8, 64 and 128
# rows these gave 1, 1, 8 and 16 rows a program, the fastest of the 4 choices timed at each)
POST_CONFIG = {"block_d": 32, "programs": 512}
# above this many rows Inductor's post and projection (two launches) were faster: 16.2 against 18.7 µs at 128
# rows, the same (10.2) at 64, and at 8 rows 4.2 against 3.0 (kernel_bench, H100)
MAX_ROWS = 64


@triton.jit
def _post_row(out_ptr, res_ptr, h_ptr, raw_ptr, fn, post, comb, row64, p, parts, d, K, s_om, s_rm, s_rn, s_hm, s_hn,
              D: tl.constexpr, N: tl.constexpr, K_PAD: tl.constexpr):
    """Columns d of one row: h' = post·out + Cᵀ·res (post [N], comb [N, N]: [j (input), k (output)]),
    stored, and its partial projection Σ h'·fn over these columns into raw[row, p]."""
    j, k, dok = tl.arange(0, N), tl.arange(0, K_PAD), d < D
    out = tl.load(out_ptr + row64 * s_om + d, mask=dok, other=0.0).to(h_ptr.dtype.element_ty).to(tl.float32)
    res = tl.load(res_ptr + row64 * s_rm + j[:, None] * s_rn + d[None, :], mask=dok[None, :], other=0.0)
    h = post[:, None] * out[None, :] + tl.sum(comb[:, :, None] * res.to(tl.float32)[:, None, :], axis=0)
    h = h.to(h_ptr.dtype.element_ty)
    tl.store(h_ptr + row64 * s_hm + j[:, None] * s_hn + d[None, :], h, mask=dok[None, :])
    part = tl.sum(tl.sum(fn * h.to(tl.float32)[None], axis=2), axis=1)
    tl.store(raw_ptr + (row64 * parts + p) * K + k, part, mask=k < K)


@triton.jit
def _fn_tile(fn_ptr, K, d, D: tl.constexpr, N: tl.constexpr, K_PAD: tl.constexpr):
    """The next pre's projection weights at columns d of all N streams: [K_PAD, N, BLOCK_D]."""
    j, k = tl.arange(0, N), tl.arange(0, K_PAD)
    return tl.load(fn_ptr + k[:, None, None] * (N * D) + j[None, :, None] * D + d[None, None, :],
                   mask=(k < K)[:, None, None] & (d < D)[None, None, :], other=0.0)


@triton.jit
def _post_mix(out_ptr, res_ptr, post_ptr, comb_ptr, fn_ptr, h_ptr, raw_ptr, M, K, s_om, s_rm, s_rn, s_hm, s_hn,
              D: tl.constexpr, N: tl.constexpr, K_PAD: tl.constexpr, BLOCK_D: tl.constexpr, ROWS: tl.constexpr,
              PDL: tl.constexpr):
    """Program (r, p): columns p·BLOCK_D.. of rows r·ROWS.. (`_post_row`; fn's tile read once for the rows)."""
    r0, p, parts = tl.program_id(0) * ROWS, tl.program_id(1), tl.num_programs(1)
    d, j = p * BLOCK_D + tl.arange(0, BLOCK_D), tl.arange(0, N)
    fn = _fn_tile(fn_ptr, K, d, D, N, K_PAD)
    wait_prior(PDL)  # fn is a weight: its load overlaps the previous kernel
    for i in range(0, tl.minimum(ROWS, M - r0)):
        row64 = r0.to(tl.int64) + i
        post = tl.load(post_ptr + row64 * N + j)
        comb = tl.load(comb_ptr + row64 * N * N + j[:, None] * N + j[None, :])
        _post_row(out_ptr, res_ptr, h_ptr, raw_ptr, fn, post, comb, row64, p, parts, d, K, s_om, s_rm, s_rn, s_hm,
                  s_hn, D, N, K_PAD)


@triton.jit
def _post_pre(out_ptr, res_ptr, mix_ptr, P, scale_ptr, base_ptr, fn_ptr, h_ptr, raw_ptr, nscale_ptr, nbase_ptr, w_ptr,
              x_ptr, count_ptr, s_om, s_rm, s_rn, s_hm, s_hn, hc_eps, norm_eps, mix_eps, K: tl.constexpr,
              D: tl.constexpr, N: tl.constexpr, K_PAD: tl.constexpr, BLOCK_D: tl.constexpr, ROW_D: tl.constexpr,
              SQ_D: tl.constexpr, ITERS: tl.constexpr, P_PAD: tl.constexpr, Q_PAD: tl.constexpr, PDL: tl.constexpr):
    """Program (r, p) of one row: this sub-block's post and comb (the Sinkhorn of its pre's projection
    mix), columns p·BLOCK_D.. of h' with their partial projection (`_post_row`), and, in the row's last
    program to finish, the next pre's input x from all of h' and its projection."""
    row, p, parts = tl.program_id(0), tl.program_id(1), tl.num_programs(1)
    row64 = row.to(tl.int64)
    d = p * BLOCK_D + tl.arange(0, BLOCK_D)
    fn = _fn_tile(fn_ptr, K, d, D, N, K_PAD)
    # before the wait (pdl.py): mix and res were written three or more launches back, so read from L2
    ms, _ = tm.row_scale(res_ptr + row64 * s_rm, s_rn, mix_eps, D, N, SQ_D, ".cg")
    post, comb = tm.row_sinkhorn(mix_ptr + row64 * P * (2 + N) * N, P, scale_ptr, base_ptr, ms, hc_eps, ITERS, N,
                                 P_PAD, ".cg")  # 2-row tiles: row 0 is this row's
    first = tl.arange(0, 2) == 0
    post, comb = tl.sum(tl.where(first[:, None], post, 0.0), 0), tl.sum(tl.where(first[:, None, None], comb, 0.0), 0)
    wait_prior(PDL)
    _post_row(out_ptr, res_ptr, h_ptr, raw_ptr, fn, post, comb, row64, p, parts, d, K, s_om, s_rm, s_rn, s_hm, s_hn,
              D, N, K_PAD)
    tl.debug_barrier()  # every thread's h' and partial stored before the count (release: visible on the GPU)
    if tl.atomic_add(count_ptr + row, 1, sem="acq_rel") == parts - 1:
        h_row, raw_row = h_ptr + row64 * s_hm, raw_ptr + row64 * parts * K
        ms, hv = tm.row_scale(h_row, s_hn, mix_eps, D, N, ROW_D, ".cg")
        pre = tm.row_pre(raw_row, parts, nscale_ptr, nbase_ptr, ms, hc_eps, N, Q_PAD, K, ".cg")
        tm.row_x(h_row, s_hn, hv, pre, w_ptr, x_ptr + row64 * D, norm_eps, D, N, ROW_D, ".cg")
        tl.store(count_ptr + row, 0)  # for the next launch, which waits for this one


def _parts(d: int) -> int:
    """Column blocks of a row: one partial projection each."""
    return triton.cdiv(d, POST_CONFIG["block_d"])


def _post_rows(m: int, parts: int) -> int:
    """Rows per program: one until rows × column blocks fill the GPU, then enough rows that the fn tile
    each program loads is reused (it is read from L2 once per program, not once per row)."""
    return max(1, min(16, (m * parts) // POST_CONFIG["programs"]))


# an opaque custom op, as in triton_mhc: Inductor calls the launch as it is
@torch.library.custom_op("dsv4rt::hc_post", mutates_args=())
def _post_op(out: torch.Tensor, res: torch.Tensor, post: torch.Tensor, comb: torch.Tensor,
             fn: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """out [M, D], res [M, n, D], post [M, n], comb [M, n, n] fp32, fn [K, n·D] fp32 -> h' [M, n, D]
    (res's dtype), raw [M, P, K] fp32."""
    (M, n, D), K = res.shape, fn.shape[0]
    parts = _parts(D)
    h, raw = torch.empty_like(res), fn.new_empty(M, parts, K)
    rows = _post_rows(M, parts)
    _post_mix[(triton.cdiv(M, rows), parts)](out, res, post.contiguous(), comb.contiguous(), fn.contiguous(), h,
                                             raw, M, K, out.stride(0), res.stride(0), res.stride(1), h.stride(0),
                                             h.stride(1), D=D, N=n, K_PAD=triton.next_power_of_2(K),
                                             BLOCK_D=POST_CONFIG["block_d"], ROWS=rows, num_warps=4, **pdl.args())
    return h, raw


@_post_op.register_fake
def _(out, res, post, comb, fn):
    return torch.empty_like(res), fn.new_empty(res.shape[0], _parts(res.shape[2]), fn.shape[0])


def post_mix(out, res, post, comb, fn):
    """Same contract as the reference `hc_post`; what the kernel does not tile (n not a power of two,
    fp32 weights missing, a non-unit stride along d) and more than MAX_ROWS rows go to the reference."""
    n, D = res.shape[-2], res.shape[-1]
    if (n & (n - 1) or fn.dtype != torch.float32 or post.dtype != torch.float32 or res.stride(-1) != 1
            or out.stride(-1) != 1 or fn.shape[1] != n * D or res.shape[:-2].numel() > MAX_ROWS):
        from dsv4rt.kernels.reference import hc_post

        return hc_post(out, res, post, comb, fn)
    lead = res.shape[:-2]
    h, raw = _post_op(out.reshape(-1, D), res.reshape(-1, n, D), post.reshape(-1, n), comb.reshape(-1, n, n), fn)
    return h.view(*lead, n, D), raw.view(*lead, *raw.shape[1:])


def post_self_check(device: str = "cuda", dtype: torch.dtype = torch.bfloat16) -> float:
    """Largest relative error of h' and of the summed projection against the reference, on 3 rows of
    D = 1000 (a partial last column block) and 24 outputs: the registry's gate."""
    from dsv4rt.kernels.reference import hc_post

    g = torch.Generator(device="cpu").manual_seed(0)
    out, res = torch.randn(3, 1000, generator=g), torch.randn(3, 4, 1000, generator=g)
    post, comb, fn = torch.rand(3, 4, generator=g) * 2, torch.rand(3, 4, 4, generator=g), torch.randn(24, 4000, generator=g)
    args = [out.to(device, dtype), res.to(device, dtype), post.to(device), comb.to(device), fn.to(device)]
    (h, raw), (want_h, want_raw) = post_mix(*args), hc_post(*args)
    return max(rel_err(h, want_h), rel_err(raw.sum(-2), want_raw.sum(-2)))


# rows up to which a boundary between sub-blocks is one launch (`_post_pre`: each row's last program
# computes x, one row at a time); above, hc_post + hc_pre (the decode batches of 8 and less, where
# launches rather than bytes set the step's time)
FUSED_MAX_ROWS = 8
_COUNTS: dict[torch.device, torch.Tensor] = {}


def _counts(device: torch.device) -> torch.Tensor:
    """`_post_pre`'s per-row arrival counts: zero between launches (the row's last program resets its own).
    Made on the first call (the warm-up before a CUDA graph is captured), then kept."""
    if device not in _COUNTS:
        _COUNTS[device] = torch.zeros(FUSED_MAX_ROWS, dtype=torch.int32, device=device)
    return _COUNTS[device]


@torch.library.custom_op("dsv4rt::hc_post_pre", mutates_args=())
def _post_pre_op(out: torch.Tensor, res: torch.Tensor, raw: torch.Tensor, scale: torch.Tensor, base: torch.Tensor,
                 fn: torch.Tensor, nscale: torch.Tensor, nbase: torch.Tensor, nw: torch.Tensor, n: int, iters: int,
                 hc_eps: float, norm_eps: float, mix_eps: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """out [M, D], res [M, n, D], raw [M, P, (2+n)n], fn [K, n·D] -> h' [M, n, D], raw' [M, P', K], x' [M, D]."""
    (M, _, D), K, P = res.shape, fn.shape[0], raw.shape[1]
    block_d, row_d, parts = POST_CONFIG["block_d"], tm.pre_block(n, D), _parts(D)
    h, raw2, x = torch.empty_like(res), fn.new_empty(M, parts, K), res.new_empty(M, D)
    _post_pre[(M, parts)](
        out, res, raw.contiguous(), P, scale.contiguous(), base.contiguous(), fn.contiguous(), h, raw2,
        nscale.contiguous(), nbase.contiguous(), nw.contiguous(), x, _counts(out.device), out.stride(0), res.stride(0),
        res.stride(1), h.stride(0), h.stride(1), hc_eps, norm_eps, mix_eps, K=K, D=D, N=n,
        K_PAD=triton.next_power_of_2(K), BLOCK_D=block_d, ROW_D=row_d, SQ_D=min(512, row_d), ITERS=iters,
        P_PAD=triton.next_power_of_2(P), Q_PAD=triton.next_power_of_2(parts), num_warps=4, **pdl.args())
    return h, raw2, x


@_post_pre_op.register_fake
def _(out, res, raw, scale, base, fn, nscale, nbase, nw, n, iters, hc_eps, norm_eps, mix_eps):
    M, _, D = res.shape
    return torch.empty_like(res), fn.new_empty(M, _parts(D), fn.shape[0]), res.new_empty(M, D)


def _fusable(out, res, raw, fn, n: int) -> bool:
    """What `_post_pre` takes: at most FUSED_MAX_ROWS rows, n a power of two, fp32 projections (this
    sub-block's with its Sinkhorn part), unit strides along d."""
    D = res.shape[-1]
    return (res.shape[:-2].numel() <= FUSED_MAX_ROWS and not n & (n - 1) and raw.dtype == fn.dtype == torch.float32
            and raw.shape[-1] == (2 + n) * n and fn.shape[1] == n * D and res.stride(-1) == 1 and out.stride(-1) == 1)


def post_pre(out, res, raw, post, comb, scale, base, fn, nscale, nbase, nw, n: int, iters: int, hc_eps: float,
             norm_eps: float, mix_eps: float):
    """Same contract as the reference `hc_post_pre`, in one launch where `_fusable` (post and comb come from
    raw; post' and comb' are left to the next boundary: None); otherwise the next implementation (on CUDA
    the `hc_post` and `hc_pre` kernels). The kernel reads raw and res before its PDL wait, so they must
    come from a launch at least two back (pdl.py): in the model a whole sub-block runs in between."""
    if not _fusable(out, res, raw, fn, n):
        return next_impl("hc_post_pre", "triton")(out, res, raw, post, comb, scale, base, fn, nscale, nbase, nw, n,
                                                  iters, hc_eps, norm_eps, mix_eps)
    lead, D = res.shape[:-2], res.shape[-1]
    h, raw2, x = _post_pre_op(out.reshape(-1, D), res.reshape(-1, n, D), raw.reshape(-1, *raw.shape[-2:]), scale, base,
                              fn, nscale, nbase, nw, n, iters, hc_eps, norm_eps, mix_eps)
    return h.view(*lead, n, D), raw2.view(*lead, *raw2.shape[1:]), x.view(*lead, D), None, None


def post_pre_self_check(device: str = "cuda", dtype: torch.dtype = torch.bfloat16) -> float:
    """Largest relative error of h', the summed projection and x' against the reference, on 3 rows of
    D = 1000 with 5 partial projections, for a sub-block's next pre (24 outputs) and for the head's (4),
    each run twice (the second run needs the first to have reset the arrival counts)."""
    from dsv4rt.kernels.reference import hc_post_pre

    g = torch.Generator(device="cpu").manual_seed(0)
    rand = lambda *shape, s=1.0: (torch.randn(*shape, generator=g) * s).to(device)  # noqa: E731
    out, res, raw = rand(3, 1000).to(dtype), rand(3, 4, 1000, s=3.0).to(dtype), rand(3, 5, 24)
    this = [rand(3).abs() + 0.5, rand(24)]
    errs = []
    for k in (24, 4):
        nxt = [rand(k, 4000, s=0.02), rand(3).abs()[: 3 if k == 24 else 1] + 0.5, rand(k), rand(1000).abs().to(dtype)]
        args = (out, res, raw, None, None, *this, *nxt, 4, 20, 1e-6, 1e-6, 1e-6)
        want = hc_post_pre(*args)
        for _ in range(2):
            got = post_pre(*args)
            errs += [rel_err(got[0], want[0]), rel_err(got[1].sum(-2), want[1].sum(-2)), rel_err(got[2], want[2])]
    return max(errs)


if torch.cuda.is_available():
    register_checked("hc_post", post_mix, post_self_check, 2e-2, "triton", 10, "cuda")
    register_checked("hc_post_pre", post_pre, post_pre_self_check, 2e-2, "triton", 10, "cuda")
else:
    log.info("triton mHC post not registered: no CUDA device")
