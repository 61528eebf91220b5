"""Grouped MoE in Triton: both expert GEMMs over all experts in two launches, no Python loop over
experts and no host sync (tiles past the routed work exit at once), so decode can be graph-captured.

GEMM 1 reads x rows by pair, computes the gate and up tiles of one expert together and writes the
clamped SwiGLU `silu(g)·u` [P, I]; GEMM 2 multiplies by w2 and the routing weight into [P, D]; the
top_k rows of a token are summed by torch. At batch 1 only the top_k routed experts' weights are read.
Registered as op `moe_experts` for CUDA tensors when triton imports and a GPU is present.
"""

from __future__ import annotations

import logging

import torch
import triton
import triton.language as tl

from dsv4rt import ops
from dsv4rt.kernels import pdl
from dsv4rt.kernels import triton_moe_gemv as gemv
from dsv4rt.kernels.moe_align import align
from dsv4rt.kernels.pdl import wait_prior
from dsv4rt.ops.moe import with_shared
from dsv4rt.ops.registry import register, self_checked

log = logging.getLogger(__name__)


@triton.jit
def _moe_gemm(a_ptr, b_ptr, c_ptr, w_ptr, pairs_ptr, expert_ptr, num_pairs, N, limit, clamped,
              stride_am, stride_be, stride_bn, stride_cm, K: tl.constexpr, TOPK: tl.constexpr, GATED: tl.constexpr,
              BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr, IEEE: tl.constexpr,
              PDL: tl.constexpr):
    """C[pair, n] = A[row(pair)] · B[e, n]ᵀ (GATED: silu(clamp(gate))·clamp(up), B rows n and N+n,
    no clamp from expert `clamped` on; else × routing weight). A row = pair // TOPK for GEMM 1 (token rows), the pair itself for GEMM 2."""
    pid_m, pid_n = tl.program_id(0), tl.program_id(1)
    wait_prior(PDL)  # before the early return too: every program waits (pdl.py)
    e = tl.load(expert_ptr + pid_m).to(tl.int64)
    if e < 0:
        return
    pair = tl.load(pairs_ptr + pid_m * BLOCK_M + tl.arange(0, BLOCK_M)).to(tl.int64)
    valid = pair < num_pairs
    row = pair // TOPK if GATED else pair
    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    offs_k = tl.arange(0, BLOCK_K)
    a_ptrs = a_ptr + row[:, None] * stride_am + offs_k[None, :]
    b_ptrs = b_ptr + e * stride_be + offs_n[None, :] * stride_bn + offs_k[:, None]
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    acc_u = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    prec: tl.constexpr = "ieee" if IEEE else "tf32"
    for k0 in range(0, K, BLOCK_K):
        a = tl.load(a_ptrs, mask=valid[:, None], other=0.0)
        acc = tl.dot(a, tl.load(b_ptrs), acc, input_precision=prec)
        if GATED:
            acc_u = tl.dot(a, tl.load(b_ptrs + N * stride_bn), acc_u, input_precision=prec)
        a_ptrs += BLOCK_K
        b_ptrs += BLOCK_K
    if GATED:
        lim = tl.where(e < clamped, limit, float("inf"))
        g = tl.minimum(acc, lim)
        u = tl.minimum(tl.maximum(acc_u, -lim), lim)
        acc = g / (1.0 + tl.exp(-g)) * u
    else:
        acc = acc * tl.load(w_ptr + pair, mask=valid, other=0.0)[:, None]
    c_ptrs = c_ptr + pair[:, None] * stride_cm + offs_n[None, :]
    tl.store(c_ptrs, acc.to(c_ptr.dtype.element_ty), mask=valid[:, None])


def _divisor(n: int, choices=(256, 128, 64, 32)) -> int:
    return next(b for b in choices if n % b == 0)


def _config(num_pairs: int, n: int, k: int) -> dict:
    """Tile shapes: small batches are weight-bandwidth bound (many narrow column tiles so every SM
    streams weights); large ones are tensor-core bound (wide tiles reuse each weight tile). The
    switch is at batch 64 × (top-6 + the shared expert), where round 2 measured the narrow tiles."""
    if num_pairs <= 64 * 7:
        return dict(BLOCK_M=16, BLOCK_N=32, BLOCK_K=_divisor(k), num_warps=4, num_stages=3)
    return dict(BLOCK_M=64, BLOCK_N=_divisor(n, (128, 64, 32)), BLOCK_K=_divisor(k, (64, 32)),
                num_warps=4, num_stages=3)


def _gemm(a, b, out, weights, pairs, block_expert, num_pairs: int, gated: bool, limit: float, top_k: int,
          clamped: int) -> None:
    n = out.shape[1]
    k = a.shape[1]
    cfg = _config(num_pairs, n, k)
    if pairs.numel() != block_expert.numel() * cfg["BLOCK_M"]:
        raise ValueError("work list tiled for a different BLOCK_M")
    grid = (block_expert.numel(), triton.cdiv(n, cfg["BLOCK_N"]))
    _moe_gemm[grid](a, b, out, weights, pairs, block_expert, num_pairs, n, float(limit), clamped, a.stride(0),
                    b.stride(0), b.stride(1), out.stride(0), K=k, TOPK=top_k, GATED=gated,
                    IEEE=a.dtype == torch.float32, **cfg, **pdl.args())


# The launches are torch custom ops, so torch.compile (dsv4rt/compiled.py) calls them as they are;
# the work list (`align`, plain torch) and the top-k sum stay traceable, for Inductor to fuse.
@torch.library.custom_op("dsv4rt::moe_grouped_gemms", mutates_args=())
def _grouped_gemms(x: torch.Tensor, w13: torch.Tensor, w2: torch.Tensor, weights: torch.Tensor,
                   pairs: torch.Tensor, block_expert: torch.Tensor, limit: float, clamped: int) -> torch.Tensor:
    """Both expert GEMMs over `align`'s work list -> fp32 [N·top_k, D], one row per (token, pick)."""
    P, inter, top_k = weights.numel(), w2.shape[2], weights.shape[1]
    w = weights.float().flatten().contiguous()
    h = torch.empty(P, inter, device=x.device, dtype=x.dtype)
    _gemm(x, w13, h, w, pairs, block_expert, P, True, limit if limit > 0 else float("inf"), top_k, clamped)
    y = torch.empty(P, x.shape[1], device=x.device, dtype=torch.float32)
    _gemm(h, w2, y, w, pairs, block_expert, P, False, 0.0, top_k, clamped)
    return y


@_grouped_gemms.register_fake
def _(x, w13, w2, weights, pairs, block_expert, limit, clamped):
    return x.new_empty((weights.numel(), x.shape[1]), dtype=torch.float32)


@torch.library.custom_op("dsv4rt::moe_gemv", mutates_args=())
def _gemv(x: torch.Tensor, w13: torch.Tensor, w2: torch.Tensor, weights: torch.Tensor, idx: torch.Tensor,
          limit: float, shared: bool) -> torch.Tensor:
    return gemv.gemv_moe(x, w13, w2, weights, idx, limit, shared)


@_gemv.register_fake
def _(x, w13, w2, weights, idx, limit, shared):
    return x.new_empty(x.shape, dtype=torch.float32)


def grouped_moe(x: torch.Tensor, w13: torch.Tensor, w2: torch.Tensor, weights: torch.Tensor,
                idx: torch.Tensor, limit: float, shared: bool = False) -> torch.Tensor:
    """x [N, D]; w13 [E, 2I, D] (w1 rows then w3 rows); w2 [E, D, I]; weights/idx [N, top_k]
    -> Σ_j weights[:, j] · expert_idx[:, j](x) as fp32 [N, D] (`shared`: as in `ops.moe_experts`)."""
    N, D = x.shape
    E, inter, clamped = w13.shape[0], w2.shape[2], w13.shape[0] - int(shared)
    if shared:  # the shared expert joins the work list as one more pick per token
        weights, idx = with_shared(weights, idx, clamped)
    top_k = idx.shape[1]
    work = align(idx, E, _config(N * top_k, inter, D)["BLOCK_M"])
    y = _grouped_gemms(x.contiguous(), w13, w2, weights, work.sorted_pairs, work.block_expert, float(limit), clamped)
    return y.view(N, top_k, D).sum(1)


def _supported(x, w13, w2) -> bool:
    """Shapes the kernel tiles without masks: D and I multiples of 64."""
    D, inter = x.shape[1], w2.shape[2]
    return D % 64 == 0 and inter % 64 == 0


_GEMV_OK = False  # set at import where CUDA is present and gemv.self_check passes


def moe_experts(x, w13, w2, weights, idx, limit: float, shared: bool = False) -> torch.Tensor:
    if not _supported(x, w13, w2):
        return ops.moe_experts.reference(x, w13, w2, weights, idx, limit, shared)
    if x.shape[0] <= gemv.MAX_TOKENS and _GEMV_OK and gemv.supported(x, w13, w2):
        return _gemv(x, w13, w2, weights, idx, float(limit), shared)
    return grouped_moe(x, w13, w2, weights, idx, limit, shared)


if torch.cuda.is_available():
    _GEMV_OK = self_checked("triton MoE GEMV path (batch <= 2)", gemv.self_check, 2e-2)
    register(ops.moe_experts, backend="triton", priority=10, device="cuda")(moe_experts)
else:
    log.info("triton grouped MoE not registered: no CUDA device")
