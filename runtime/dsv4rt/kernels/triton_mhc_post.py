"""An mHC post and the next pre's projection in one Triton launch (op `hc_post`, CUDA tensors).

Under torch.compile the post (h' = post·out + Cᵀ·h) and the next sub-block's projection of h' by its
(2+n)·n mix weights were two launches per sub-block, 32 a step of the mini model: the projection reads
the whole row, so Inductor could not fuse it into the post. Here each program owns BLOCK_D columns of
all n streams: it writes them and leaves its share of the projection as one partial sum, and `hc_pre`
(triton_mhc) adds the partials when it reads them. Deterministic: no atomics.
At one row the sub-block's output projection (`wo_b`) can come in too (op `hc_post_linear`): each
program computes its own columns of the output from their rows of the weight, requested before the
PDL wait as a GEMV's are, so the GEMV's launch is saved without a serial tail or repeated work.
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

# columns a program, and the programs to aim for before rows share one (kernel_bench, H100: at 1, 8, 64 and 128
# rows these gave 1, 1, 8 and 16 rows a program, the fastest of the 4 choices timed at each)
POST_CONFIG = {"block_d": 32, "programs": 512}
LINEAR_IN_POST = True  # False: the output projection as a GEMV launch of its own (gpu_decode --post-unfused)
LINEAR_ELEMS = 32768  # output-projection weights a program keeps in registers (8 warps), all requested before the wait
# above this many rows Inductor's post and projection (two launches) were faster: 16.2 against 18.7 µs at 128
# rows, the same (10.2) at 64, and at 8 rows 4.2 against 3.0 (kernel_bench, H100)
MAX_ROWS = 64


@triton.jit
def _post_mix(out_ptr, res_ptr, post_ptr, comb_ptr, fn_ptr, h_ptr, raw_ptr, wo_ptr, M, K, KO, s_om, s_rm, s_rn, s_hm,
              s_hn, s_wo, D: tl.constexpr, N: tl.constexpr, K_PAD: tl.constexpr, BLOCK_D: tl.constexpr,
              ROWS: tl.constexpr, LINEAR: tl.constexpr, BLOCK_KO: tl.constexpr, PDL: tl.constexpr):
    """Program (r, p): columns p·BLOCK_D.. of rows r·ROWS..: h' = post·out + Cᵀ·res, stored, and its
    partial projection Σ h'·fn over these columns into raw[row, p] (fn's tile is read once for the rows).
    LINEAR: out is x·woᵀ (x [M, KO] at out_ptr), these columns' rows of wo requested before the wait."""
    r0, p, parts = tl.program_id(0) * ROWS, tl.program_id(1), tl.num_programs(1)
    d, j, k = p * BLOCK_D + tl.arange(0, BLOCK_D), tl.arange(0, N), tl.arange(0, K_PAD)
    dok = d < D
    fn = tl.load(fn_ptr + k[:, None, None] * (N * D) + j[None, :, None] * D + d[None, None, :],
                 mask=(k < K)[:, None, None] & dok[None, None, :], other=0.0)  # [K_PAD, N, BLOCK_D]
    if LINEAR:
        ko = tl.arange(0, BLOCK_KO)
        wo = tl.load(wo_ptr + d[:, None].to(tl.int64) * s_wo + ko[None, :], mask=dok[:, None] & (ko < KO)[None, :],
                     other=0.0)  # [BLOCK_D, BLOCK_KO]
    wait_prior(PDL)  # fn (and wo) are weights: their loads overlap the previous kernel
    for i in range(0, tl.minimum(ROWS, M - r0)):
        row64 = r0.to(tl.int64) + i
        if LINEAR:  # rounded to x's dtype, as the linear op's output would be
            x = tl.load(out_ptr + row64 * s_om + ko, mask=ko < KO, other=0.0)
            out = tl.sum(wo.to(tl.float32) * x.to(tl.float32)[None, :], axis=1).to(x.dtype)
        else:
            out = tl.load(out_ptr + row64 * s_om + d, mask=dok, other=0.0)
        out = out.to(h_ptr.dtype.element_ty).to(tl.float32)
        res = tl.load(res_ptr + row64 * s_rm + j[:, None] * s_rn + d[None, :], mask=dok[None, :], other=0.0)
        post = tl.load(post_ptr + row64 * N + j)
        comb = tl.load(comb_ptr + row64 * N * N + j[:, None] * N + j[None, :])  # [j (input), k (output)]
        h = post[:, None] * out[None, :] + tl.sum(comb[:, :, None] * res.to(tl.float32)[:, None, :], axis=0)
        h = h.to(h_ptr.dtype.element_ty)
        tl.store(h_ptr + row64 * s_hm + j[:, None] * s_hn + d[None, :], h, mask=dok[None, :])
        part = tl.sum(tl.sum(fn * h.to(tl.float32)[None], axis=2), axis=1)
        tl.store(raw_ptr + (row64 * parts + p) * K + k, part, mask=k < K)


def _parts(d: int, block_d: int) -> int:
    """Column blocks of a row: one partial projection each."""
    return triton.cdiv(d, block_d)


def _block_d(ko: int) -> int:
    """Columns a program: POST_CONFIG's, or with a linear of ko inputs as many whole rows of its weight
    as LINEAR_ELEMS allows (mini: 16 rows of 2,048, 128 programs)."""
    return POST_CONFIG["block_d"] if not ko else max(1, min(POST_CONFIG["block_d"], LINEAR_ELEMS // _pow2(ko)))


def _pow2(n: int) -> int:
    return triton.next_power_of_2(n)


def _post_rows(m: int, parts: int) -> int:
    """Rows per program: one until rows × column blocks fill the GPU, then enough rows that the fn tile
    each program loads is reused (it is read from L2 once per program, not once per row)."""
    return max(1, min(16, (m * parts) // POST_CONFIG["programs"]))


def _launch(out, res, post, comb, fn, wo=None):
    """h' [M, n, D] and raw [M, P, K] (see `_post_op`); with wo, out is the linear's input x [M, KO]."""
    (M, n, D), K = res.shape, fn.shape[0]
    ko = 0 if wo is None else wo.shape[1]
    block_d = _block_d(ko)
    parts = _parts(D, block_d)
    h, raw = torch.empty_like(res), fn.new_empty(M, parts, K)
    rows = _post_rows(M, parts)
    _post_mix[(triton.cdiv(M, rows), parts)](
        out, res, post.contiguous(), comb.contiguous(), fn.contiguous(), h, raw, res if wo is None else wo, M, K, ko,
        out.stride(0), res.stride(0), res.stride(1), h.stride(0), h.stride(1), 0 if wo is None else wo.stride(0),
        D=D, N=n, K_PAD=_pow2(K), BLOCK_D=block_d, ROWS=rows, LINEAR=wo is not None, BLOCK_KO=_pow2(max(ko, 1)),
        num_warps=8 if ko else 4, **pdl.args())
    return h, raw


# an opaque custom op, as in triton_mhc: Inductor calls the launch as it is
@torch.library.custom_op("dsv4rt::hc_post", mutates_args=())
def _post_op(out: torch.Tensor, res: torch.Tensor, post: torch.Tensor, comb: torch.Tensor,
             fn: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """out [M, D], res [M, n, D], post [M, n], comb [M, n, n] fp32, fn [K, n·D] fp32 -> h' [M, n, D]
    (res's dtype), raw [M, P, K] fp32."""
    return _launch(out, res, post, comb, fn)


@_post_op.register_fake
def _(out, res, post, comb, fn):
    return torch.empty_like(res), fn.new_empty(res.shape[0], _parts(res.shape[2], _block_d(0)), fn.shape[0])


@torch.library.custom_op("dsv4rt::hc_post_linear", mutates_args=())
def _post_linear_op(x: torch.Tensor, wo: torch.Tensor, res: torch.Tensor, post: torch.Tensor, comb: torch.Tensor,
                    fn: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """`_post_op` of out = x [M, KO] · wo [D, KO]ᵀ."""
    return _launch(x, res, post, comb, fn, wo)


@_post_linear_op.register_fake
def _(x, wo, res, post, comb, fn):
    return torch.empty_like(res), fn.new_empty(res.shape[0], _parts(res.shape[2], _block_d(wo.shape[1])), fn.shape[0])


def _tiled(res, post, fn, out) -> bool:
    """What the kernel tiles: n a power of two, fp32 weights, unit strides along d, at most MAX_ROWS rows."""
    n, D = res.shape[-2], res.shape[-1]
    return not (n & (n - 1) or fn.dtype != torch.float32 or post.dtype != torch.float32 or res.stride(-1) != 1
                or out.stride(-1) != 1 or fn.shape[1] != n * D or res.shape[:-2].numel() > MAX_ROWS)


def post_mix(out, res, post, comb, fn):
    """Same contract as the reference `hc_post`; what `_tiled` rejects goes to the reference."""
    if not _tiled(res, post, fn, out):
        return ops.hc_post.reference(out, res, post, comb, fn)
    n, D, lead = res.shape[-2], res.shape[-1], res.shape[:-2]
    h, raw = _post_op(out.reshape(-1, D), res.reshape(-1, n, D), post.reshape(-1, n), comb.reshape(-1, n, n), fn)
    return h.view(*lead, n, D), raw.view(*lead, *raw.shape[1:])


def post_linear(x, wo, res, post, comb, fn):
    """Same contract as the reference `hc_post_linear`: in one launch at one row (where the GEMV kernel
    would run the linear, triton_gemv.MAX_ROWS), else the linear and then the post."""
    n, D, lead = res.shape[-2], res.shape[-1], res.shape[:-2]
    if not (LINEAR_IN_POST and lead.numel() == 1 and _tiled(res, post, fn, x) and wo.dtype == x.dtype
            and wo.shape == (D, x.shape[-1]) and wo.stride(1) == 1 and _pow2(x.shape[-1]) <= LINEAR_ELEMS):
        return next_impl(ops.hc_post_linear, "triton")(x, wo, res, post, comb, fn)
    h, raw = _post_linear_op(x.reshape(1, -1), wo, res.reshape(1, n, D), post.reshape(1, n), comb.reshape(1, n, n),
                             fn)
    return h.view(*lead, n, D), raw.view(*lead, *raw.shape[1:])


def post_self_check(device: str = "cuda", dtype: torch.dtype = torch.bfloat16) -> float:
    """Largest relative error of h' and of the summed projection against the reference, on 3 rows of
    D = 1000 (a partial last column block) and 24 outputs, and on the first row with the output's
    linear (700 inputs) inside: the registry's gate."""
    hc_post = ops.hc_post.reference

    g = torch.Generator(device="cpu").manual_seed(0)
    out, res = torch.randn(3, 1000, generator=g), torch.randn(3, 4, 1000, generator=g)
    post, comb, fn = torch.rand(3, 4, generator=g) * 2, torch.rand(3, 4, 4, generator=g), torch.randn(24, 4000, generator=g)
    x, wo = torch.randn(1, 700, generator=g), torch.randn(1000, 700, generator=g) / 26
    out, res, x, wo = (t.to(device, dtype) for t in (out, res, x, wo))
    post, comb, fn = post.to(device), comb.to(device), fn.to(device)
    errs = []
    for got, want in ((post_mix(out, res, post, comb, fn), hc_post(out, res, post, comb, fn)),
                      (post_linear(x, wo, res[:1], post[:1], comb[:1], fn), hc_post(x @ wo.t(), res[:1], post[:1],
                                                                                    comb[:1], fn))):
        errs += [rel_err(got[0], want[0]), rel_err(got[1].sum(-2), want[1].sum(-2))]
    return max(errs)


if torch.cuda.is_available():
    if register_checked(ops.hc_post, post_mix, post_self_check, 2e-2, "triton", 10, "cuda"):  # checks both
        register(ops.hc_post_linear, "triton", 10, "cuda")(post_linear)
else:
    log.info("triton mHC post not registered: no CUDA device")
