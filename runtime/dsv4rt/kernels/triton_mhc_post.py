"""An mHC post and the next pre's projection in one Triton launch (op `hc_post`, CUDA tensors).

Under torch.compile the post (h' = post·out + Cᵀ·h) and the next sub-block's projection of h' by its
(2+n)·n mix weights were two launches per sub-block, 32 a step of the mini model: the projection reads
the whole row, so Inductor could not fuse it into the post. Here each program owns BLOCK_D columns of
all n streams: it writes them and leaves its share of the projection as one partial sum, and `hc_pre`
(triton_mhc) adds the partials when it reads them. Deterministic: no atomics.
"""

from __future__ import annotations

import logging

import torch
import triton
import triton.language as tl

from dsv4rt.kernels import pdl
from dsv4rt.kernels.pdl import wait_prior
from dsv4rt.kernels.registry import register_checked, rel_err

log = logging.getLogger(__name__)

# columns a program, and the programs to aim for before rows share one (kernel_bench, H100: at 1, 8, 64 and 128
# rows these gave 1, 1, 8 and 16 rows a program, the fastest of the 4 choices timed at each)
POST_CONFIG = {"block_d": 32, "programs": 512}
# above this many rows Inductor's post and projection (two launches) were faster: 16.2 against 18.7 µs at 128
# rows, the same (10.2) at 64, and at 8 rows 4.2 against 3.0 (kernel_bench, H100)
MAX_ROWS = 64


@triton.jit
def _post_mix(out_ptr, res_ptr, post_ptr, comb_ptr, fn_ptr, h_ptr, raw_ptr, M, K, s_om, s_rm, s_rn, s_hm, s_hn,
              D: tl.constexpr, N: tl.constexpr, K_PAD: tl.constexpr, BLOCK_D: tl.constexpr, ROWS: tl.constexpr,
              PDL: tl.constexpr):
    """Program (r, p): columns p·BLOCK_D.. of rows r·ROWS..: h' = post·out + Cᵀ·res, stored, and its
    partial projection Σ h'·fn over these columns into raw[row, p] (fn's tile is read once for the rows)."""
    r0, p, parts = tl.program_id(0) * ROWS, tl.program_id(1), tl.num_programs(1)
    d, j, k = p * BLOCK_D + tl.arange(0, BLOCK_D), tl.arange(0, N), tl.arange(0, K_PAD)
    dok = d < D
    fn = tl.load(fn_ptr + k[:, None, None] * (N * D) + j[None, :, None] * D + d[None, None, :],
                 mask=(k < K)[:, None, None] & dok[None, None, :], other=0.0)  # [K_PAD, N, BLOCK_D]
    wait_prior(PDL)  # fn is a weight: its load overlaps the previous kernel
    for i in range(0, tl.minimum(ROWS, M - r0)):
        row64 = r0.to(tl.int64) + i
        out = tl.load(out_ptr + row64 * s_om + d, mask=dok, other=0.0).to(h_ptr.dtype.element_ty).to(tl.float32)
        res = tl.load(res_ptr + row64 * s_rm + j[:, None] * s_rn + d[None, :], mask=dok[None, :], other=0.0)
        post = tl.load(post_ptr + row64 * N + j)
        comb = tl.load(comb_ptr + row64 * N * N + j[:, None] * N + j[None, :])  # [j (input), k (output)]
        h = post[:, None] * out[None, :] + tl.sum(comb[:, :, None] * res.to(tl.float32)[:, None, :], axis=0)
        h = h.to(h_ptr.dtype.element_ty)
        tl.store(h_ptr + row64 * s_hm + j[:, None] * s_hn + d[None, :], h, mask=dok[None, :])
        part = tl.sum(tl.sum(fn * h.to(tl.float32)[None], axis=2), axis=1)
        tl.store(raw_ptr + (row64 * parts + p) * K + k, part, mask=k < K)


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


if torch.cuda.is_available():
    register_checked("hc_post", post_mix, post_self_check, 2e-2, "triton", 10, "cuda")
else:
    log.info("triton mHC post not registered: no CUDA device")
