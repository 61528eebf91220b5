"""MoE router selection in one Triton launch after the score GEMM (op `moe_route`, CUDA tensors).

Under torch.compile the reference router is four launches per layer at batch 1 (the fp32-out GEMM,
sqrt-softplus, top-k, gather + renormalise; benchmarks/launch_count.py). Here the GEMM stays cuBLAS
(`fp32_linear`) and one program per token does the rest: sqrt-softplus, the selection (top-k of
scores + bias by k masked argmaxes, or the hash layer's picks from `tid2eid`) and the renormalised
weights. A first version also did the GEMM, one program per token: on the H100 that was ~23 µs per
layer at batch 1 (one SM streaming the 256 KiB gate), against a few µs for cuBLAS.
Only sqrtsoftplus scoring (DeepSeek-V4's) and up to MAX_TOKENS rows (the decode batches)."""

from __future__ import annotations

import logging

import torch
import triton
import triton.language as tl

from dsv4rt import ops
from dsv4rt.kernels import pdl
from dsv4rt.kernels.pdl import wait_prior
from dsv4rt.ops.registry import register_checked, rel_err

log = logging.getLogger(__name__)
MAX_TOKENS = 64  # the decode batches; above, the reference (cuBLAS GEMM + torch top-k)


@triton.jit
def _softplus_sqrt(z):
    # torch's softplus (threshold 20); log(1 + e^z) loses e^z below -15, where it is e^z itself
    sp = tl.where(z > 20.0, z, tl.where(z < -15.0, tl.exp(z), tl.log(1.0 + tl.exp(z))))
    return tl.sqrt(sp)


@triton.jit
def _route(logit_ptr, bias_ptr, table_ptr, ids_ptr, out_w_ptr, out_i_ptr, E, route_scale, s_l, s_t, s_id,
           TOPK: tl.constexpr, HASHED: tl.constexpr, TOPK_P2: tl.constexpr, BLOCK_E: tl.constexpr,
           PDL: tl.constexpr):
    t = tl.program_id(0)
    wait_prior(PDL)
    e = tl.arange(0, BLOCK_E)
    live = e < E
    scores = _softplus_sqrt(tl.load(logit_ptr + t * s_l + e, mask=live, other=0.0))
    if HASHED:
        sel = tl.zeros((BLOCK_E,), dtype=tl.float32)
    else:
        sel = tl.where(live, scores + tl.load(bias_ptr + e, mask=live, other=0.0).to(tl.float32), float("-inf"))
    slot = tl.arange(0, TOPK_P2)  # pick j lives in lane j of two register vectors
    picks = tl.zeros((TOPK_P2,), dtype=tl.int64)
    weights = tl.zeros((TOPK_P2,), dtype=tl.float32)
    for j in tl.static_range(TOPK):
        if HASHED:
            pick = tl.load(table_ptr + tl.load(ids_ptr + t * s_id).to(tl.int64) * s_t + j).to(tl.int32)
        else:
            pick = tl.argmax(sel, axis=0).to(tl.int32)  # the first of equal maxima
            sel = tl.where(e == pick, float("-inf"), sel)
        picks = tl.where(slot == j, pick.to(tl.int64), picks)
        weights = tl.where(slot == j, tl.sum(tl.where(e == pick, scores, 0.0), axis=0), weights)
    weights = weights / (tl.sum(weights, axis=0) + 1e-20) * route_scale
    tl.store(out_i_ptr + t * TOPK + slot, picks, mask=slot < TOPK)
    tl.store(out_w_ptr + t * TOPK + slot, weights, mask=slot < TOPK)


# A custom op, so torch.compile (dsv4rt/compiled.py) calls the launch as it is.
@torch.library.custom_op("dsv4rt::moe_route", mutates_args=())
def _route_op(logits: torch.Tensor, bias: torch.Tensor | None, tid2eid: torch.Tensor | None,
              ids: torch.Tensor | None, topk: int, route_scale: float) -> tuple[torch.Tensor, torch.Tensor]:
    """logits [N, E] fp32 (the router GEMM's) -> weights [N, topk] fp32, expert indices [N, topk]."""
    N, E = logits.shape
    w, idx = logits.new_empty(N, topk), logits.new_empty(N, topk, dtype=torch.long)
    hashed = bias is None  # unused pointers get a tensor of the right kind, never read
    table, ids = (tid2eid, ids) if hashed else (idx, idx)
    _route[(N,)](logits, logits if hashed else bias, table, ids, w, idx, E, route_scale, logits.stride(0),
                 table.stride(0), ids.stride(0), TOPK=topk, HASHED=hashed, TOPK_P2=triton.next_power_of_2(topk),
                 BLOCK_E=triton.next_power_of_2(E), num_warps=1, **pdl.args())
    return w, idx


@_route_op.register_fake
def _(logits, bias, tid2eid, ids, topk, route_scale):
    N = logits.shape[0]
    return logits.new_empty(N, topk), logits.new_empty(N, topk, dtype=torch.long)


def moe_route(x, weight, bias, tid2eid, ids, topk: int, route_scale: float, score_func: str):
    """Same contract as the reference `moe_route`; other scorings, more than MAX_TOKENS rows or
    non-unit strides along d go to the reference."""
    if score_func != "sqrtsoftplus" or x.shape[0] > MAX_TOKENS or x.stride(-1) != 1 or weight.stride(-1) != 1:
        return ops.moe_route.reference(x, weight, bias, tid2eid, ids, topk, route_scale, score_func)
    # the GEMM stays cuBLAS, outside the op: a GEMV in one program per token was ~23 µs (H100, mini)
    return _route_op(ops.fp32_linear(x, weight), bias, tid2eid, ids, topk, float(route_scale))


def self_check(device: str = "cuda", dtype: torch.dtype = torch.bfloat16) -> float:
    """Relative error of the weights against the reference (bias and hash routing, E = 48 not a
    power of two, repeated token ids), or 1.0 where any picked expert differs."""
    ref = ops.moe_route.reference

    g = torch.Generator(device="cpu").manual_seed(0)
    x, wg = torch.randn(5, 700, generator=g).to(device, dtype), (torch.randn(48, 700, generator=g) / 26).to(device, dtype)
    bias, table = torch.randn(48, generator=g).to(device), torch.randint(0, 48, (100, 6), generator=g).to(device)
    ids = torch.tensor([99, 3, 3, 0, 57], device=device)
    err = 0.0
    for b, t in ((bias, None), (None, table)):
        got_w, got_i = moe_route(x, wg, b, t, ids, 6, 1.5, "sqrtsoftplus")
        want_w, want_i = ref(x, wg, b, t, ids, 6, 1.5, "sqrtsoftplus")
        if not torch.equal(got_i.sort(-1).values, want_i.sort(-1).values):
            return 1.0
        order = lambda i: i.argsort(-1)  # noqa: E731 - compare weights pick by pick
        got_w, want_w = got_w.gather(1, order(got_i)), want_w.gather(1, order(want_i))
        err = max(err, rel_err(got_w, want_w))
    return err


if torch.cuda.is_available():
    register_checked(ops.moe_route, moe_route, self_check, 2e-2, "triton", 10, "cuda")
else:
    log.info("triton MoE router not registered: no CUDA device")
