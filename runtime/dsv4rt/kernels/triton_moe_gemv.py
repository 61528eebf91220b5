"""Routed MoE experts as GEMVs for decode at 1-2 tokens: two launches, no work list.

The grouped kernel (triton_moe) first sorts the (token, expert) pairs into tiles by expert with ~15
small torch ops (moe_align); at batch 1 on an H100 those ops cost more than the two GEMMs. Here one
program owns one (token, pick) pair, or one token's output rows, and finds its expert with one scalar
load of `idx`, so nothing runs before the kernels. With M = 1 there is nothing for tensor cores to
reuse: both kernels stream contiguous weight rows with 16-byte loads and reduce with multiply + sum,
and the speed is the HBM bandwidth over the top_k experts' weights.

Launch 1: h[p] = silu(clamp(x[t]·w1[e]ᵀ)) · clamp(x[t]·w3[e]ᵀ) for every pair p = t·top_k + j.
Launch 2: y[t] = Σ_j weights[t, j] · w2[e]·h[p], the sum over picks done in registers (no atomics).
Only torch.empty runs on the host, so the path can be captured in a CUDA graph. A pair whose expert
repeats across tokens reads that expert again (from L2 when it fits): fine for the few tokens this is
meant for (MAX_TOKENS); the caller picks the grouped kernel above that.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from dsv4rt import ops
from dsv4rt.kernels import pdl
from dsv4rt.kernels.pdl import wait_prior
from dsv4rt.ops.registry import rel_err

MAX_TOKENS = 2  # the largest batch this path is meant for; the caller decides


@triton.jit
def _pick(idx_ptr, wt_ptr, t, j, shared_e, stride_it, stride_ij, stride_wtt, stride_wtj, TOPK: tl.constexpr,
          CACHE: tl.constexpr):
    """Expert and routing weight of token t's pick j: picks past TOPK are the shared expert, weight 1.
    CACHE ".cg" reads them from L2, past the SM's L1 (a read before the PDL wait, see `_down`)."""
    routed = j < TOPK
    e = tl.load(idx_ptr + t * stride_it + j * stride_ij, mask=routed, other=0, cache_modifier=CACHE)
    scale = tl.load(wt_ptr + t * stride_wtt + j * stride_wtj, mask=routed, other=0.0, cache_modifier=CACHE)
    return tl.where(routed, e, shared_e).to(tl.int64), tl.where(routed, scale, 1.0), routed


@triton.jit
def _gate_up(x_ptr, w_ptr, idx_ptr, wt_ptr, h_ptr, limit, shared_e, stride_x, stride_it, stride_ij, stride_wtt,
             stride_wtj, stride_we, stride_wn, D: tl.constexpr, I: tl.constexpr, TOPK: tl.constexpr,
             PICKS: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr, PDL: tl.constexpr):
    """h[p, tile] for pair p: BLOCK_N gate rows and the matching up rows (I further) of its expert."""
    p, tile = tl.program_id(0), tl.program_id(1)
    wait_prior(PDL)  # the expert comes from the router's output
    t = p // PICKS
    e, _, routed = _pick(idx_ptr, wt_ptr, t, p % PICKS, shared_e, stride_it, stride_ij, stride_wtt, stride_wtj, TOPK,
                         "")
    rows = tile * BLOCK_N + tl.arange(0, BLOCK_N)
    cols = tl.arange(0, BLOCK_K)
    g_ptrs = w_ptr + e * stride_we + rows[:, None].to(tl.int64) * stride_wn + cols[None, :]
    # x is read as a [BLOCK_N, BLOCK_K] tile of equal rows, in the weights' register layout: a 1-D
    # load would be relaid through shared memory with barriers that hold back each chunk's weight loads
    x_ptrs = x_ptr + t * stride_x + tl.zeros_like(rows)[:, None] + cols[None, :]
    # 2-D partial sums: one cross-thread reduction at the end instead of one per chunk
    acc_g = tl.zeros((BLOCK_N, BLOCK_K), dtype=tl.float32)
    acc_u = tl.zeros((BLOCK_N, BLOCK_K), dtype=tl.float32)
    for _ in range(0, D, BLOCK_K):
        xv = tl.load(x_ptrs).to(tl.float32)
        acc_g += tl.load(g_ptrs).to(tl.float32) * xv
        acc_u += tl.load(g_ptrs + I * stride_wn).to(tl.float32) * xv
        g_ptrs += BLOCK_K
        x_ptrs += BLOCK_K
    lim = tl.where(routed, limit, float("inf"))  # the shared expert is not clamped
    g = tl.minimum(tl.sum(acc_g, axis=1), lim)
    u = tl.minimum(tl.maximum(tl.sum(acc_u, axis=1), -lim), lim)
    h = g / (1.0 + tl.exp(-g)) * u
    tl.store(h_ptr + p * I + rows, h.to(h_ptr.dtype.element_ty))


@triton.jit
def _walk(it, I: tl.constexpr, BLOCK_I: tl.constexpr):
    """Step `it` of the down walk over (pick j, I chunk) -> (j, the chunk's first column)."""
    return it // (I // BLOCK_I), (it % (I // BLOCK_I)) * BLOCK_I


@triton.jit
def _down_weights(w_ptr, wt_ptr, idx_ptr, t, rows, cols, it, shared_e, stride_wtt, stride_wtj, stride_it, stride_ij,
                  stride_we, stride_wd, I: tl.constexpr, TOPK: tl.constexpr, BLOCK_I: tl.constexpr,
                  CACHE: tl.constexpr):
    """Step `it` of token t's walk over (pick j, I chunk): the w2 tile and the routing weight."""
    j, i0 = _walk(it, I, BLOCK_I)
    e, scale, _ = _pick(idx_ptr, wt_ptr, t, j, shared_e, stride_it, stride_ij, stride_wtt, stride_wtj, TOPK, CACHE)
    w = tl.load(w_ptr + e * stride_we + rows[:, None].to(tl.int64) * stride_wd + i0 + cols[None, :])
    return w, scale


@triton.jit
def _down_h(h_ptr, t, rows, cols, it, I: tl.constexpr, PICKS: tl.constexpr, BLOCK_I: tl.constexpr):
    """Step `it`'s chunk of h (gate/up's output), as a tile of equal rows like x above."""
    j, i0 = _walk(it, I, BLOCK_I)
    return tl.load(h_ptr + (t * PICKS + j) * I + i0 + tl.zeros_like(rows)[:, None] + cols[None, :])


@triton.jit
def _down(h_ptr, w_ptr, wt_ptr, idx_ptr, y_ptr, shared_e, stride_wtt, stride_wtj, stride_it, stride_ij, stride_we,
          stride_wd, stride_y, I: tl.constexpr, TOPK: tl.constexpr, PICKS: tl.constexpr, BLOCK_D: tl.constexpr,
          BLOCK_I: tl.constexpr, VEC: tl.constexpr, PDL: tl.constexpr):
    """y[t, tile] = Σ_j weights[t, j] · w2[e_j, tile rows] · h[t·TOPK + j]."""
    t, tile = tl.program_id(0), tl.program_id(1)
    rows = tile * BLOCK_D + tl.arange(0, BLOCK_D)
    cols = tl.arange(0, BLOCK_I)
    # partial sums folded over each thread's VEC contiguous columns (no shuffles): an [BLOCK_D, BLOCK_I]
    # accumulator costs so many registers that ptxas spreads a step's weight loads over several round trips
    acc = tl.zeros((BLOCK_D, BLOCK_I // VEC), dtype=tl.float32)
    STEPS: tl.constexpr = PICKS * (I // BLOCK_I)
    # the first w2 tile goes out before the PDL wait: the picks are the router's, two kernels back, and
    # that kernel has finished once gate/up (which waited for it) let this one launch; read from L2
    w, scale = _down_weights(w_ptr, wt_ptr, idx_ptr, t, rows, cols, 0, shared_e, stride_wtt, stride_wtj, stride_it,
                             stride_ij, stride_we, stride_wd, I, TOPK, BLOCK_I, ".cg")
    wait_prior(PDL)
    h = _down_h(h_ptr, t, rows, cols, 0, I, PICKS, BLOCK_I)
    for it in range(1, STEPS + 1):
        # the next step's loads are issued before this step's sum, so HBM latency overlaps the math;
        # the last step reloads itself (min) rather than branching
        step = tl.minimum(it, STEPS - 1)
        w_n, scale_n = _down_weights(w_ptr, wt_ptr, idx_ptr, t, rows, cols, step, shared_e, stride_wtt, stride_wtj,
                                     stride_it, stride_ij, stride_we, stride_wd, I, TOPK, BLOCK_I, "")
        h_n = _down_h(h_ptr, t, rows, cols, step, I, PICKS, BLOCK_I)
        part = w.to(tl.float32) * (h.to(tl.float32) * scale.to(tl.float32))
        acc += tl.sum(tl.reshape(part, (BLOCK_D, BLOCK_I // VEC, VEC)), axis=2)
        w, h, scale = w_n, h_n, scale_n
    tl.store(y_ptr + t * stride_y + rows, tl.sum(acc, axis=1))


def _divisor(n: int, choices: tuple[int, ...]) -> int:
    return next(b for b in choices if n % b == 0)


# rows per program of gate/up and of down. kernel_bench.py times the alternatives at mini's shapes: on
# the H100, 4 gate/up rows (1,792 programs) took 34.9 µs a layer against 36.4 µs with 16 (448 programs
# in one quantised wave on 132 SMs); 4, 8 or 16 down rows were within 1 µs of each other
GEMV_CONFIG = {"up_rows": 4, "down_rows": 8}


def _config(D: int, inter: int) -> tuple[dict, dict]:
    """Block sizes for (gate/up, down). A warp reads a row chunk as 32 lanes × 16 bytes (8 bf16), and
    the speed is set by the weight bytes in flight and by how evenly the programs spread over the SMs:
    at N=1, D=2048, I=1024, top_k=6 (+1 shared) gate/up has 7 × 1024/4 = 1,792 programs of 4 rows and
    down 256 programs of 8 rows (229 registers a thread, two a SM, all resident at once)."""
    up = dict(BLOCK_N=GEMV_CONFIG["up_rows"], BLOCK_K=_divisor(D, (256, 128, 64)), num_warps=4)
    down = dict(BLOCK_D=GEMV_CONFIG["down_rows"], BLOCK_I=_divisor(inter, (1024, 512, 256, 128, 64)), num_warps=4)
    return up, down


def supported(x, w13, w2) -> bool:
    """Shapes the kernels tile without masks (D and I multiples of 64), rows contiguous."""
    D, inter = x.shape[1], w2.shape[2]
    rows_contiguous = x.stride(1) == 1 and w13.stride(2) == 1 and w2.stride(2) == 1
    return D % 64 == 0 and inter % 64 == 0 and rows_contiguous


def gemv_moe(x: torch.Tensor, w13: torch.Tensor, w2: torch.Tensor, weights: torch.Tensor,
             idx: torch.Tensor, limit: float, shared: bool = False) -> torch.Tensor:
    """x [N, D]; w13 [E, 2I, D] (w1 rows then w3 rows); w2 [E, D, I]; weights/idx [N, top_k]
    -> Σ_j weights[:, j] · expert_idx[:, j](x) as fp32 [N, D]; `shared`: as in `ops.moe_experts`,
    a pick of its own (the kernels read it as pick top_k, so nothing is concatenated on the host).
    Requires supported(x, w13, w2)."""
    N, D = x.shape
    top_k, inter = idx.shape[1], w2.shape[2]
    picks, shared_e = top_k + int(shared), w13.shape[0] - 1
    up, down = _config(D, inter)
    h = torch.empty(N * picks, inter, device=x.device, dtype=x.dtype)
    y = torch.empty(N, D, device=x.device, dtype=torch.float32)
    _gate_up[(N * picks, inter // up["BLOCK_N"])](
        x, w13, idx, weights, h, float(limit) if limit > 0 else float("inf"), shared_e, x.stride(0), *idx.stride(),
        *weights.stride(), w13.stride(0), w13.stride(1), D=D, I=inter, TOPK=top_k, PICKS=picks, **up,
        **pdl.args())
    _down[(N, D // down["BLOCK_D"])](
        h, w2, weights, idx, y, shared_e, *weights.stride(), *idx.stride(), w2.stride(0), w2.stride(1), y.stride(0),
        I=inter, TOPK=top_k, PICKS=picks, VEC=16 // w2.element_size(), **down, **pdl.args())
    return y


def self_check(device: str = "cuda", dtype: torch.dtype = torch.bfloat16) -> float:
    """Relative error against the reference on a small case (2 tokens sharing an expert, clamped,
    and the last expert as the shared one): the gate before the grouped MoE op may route small
    batches here."""
    ref = ops.moe_experts.reference

    g = torch.Generator(device="cpu").manual_seed(0)
    E, D, inter, k = 8, 256, 128, 3
    x = torch.randn(2, D, generator=g).to(device, dtype)
    w13 = (torch.randn(E, 2 * inter, D, generator=g) * D ** -0.5).to(device, dtype)
    w2 = (torch.randn(E, D, inter, generator=g) * inter ** -0.5).to(device, dtype)
    idx, w = torch.tensor([[1, 5, 2], [2, 6, 0]], device=device), torch.rand(2, k, generator=g).to(device)
    want = ref(x, w13, w2, w, idx, 1.0, shared=True)
    return rel_err(gemv_moe(x, w13, w2, w, idx, 1.0, shared=True), want)
