"""A decode token's writes to an attention layer's cache in one Triton launch (op `decode_cache`, CUDA).

Under torch.compile these writes were 3 kernels a layer in HCA and 7 in CSA (ring scatters, the
pooling's gather and softmax, the entries' norm and RoPE, the window row), each a link in batch 1's
chain of dependent launches. Here program (b, 0) writes row b's window row, and each compressor's
programs (b, 1..) own a block of its entry's channels: they push the token into the rings and, only
where row b's block ends (1 step in the ratio), pool their channels over the ring into a per-row buffer.
The norm needs all channels, so the row's last program to finish (an atomic count) reads them back
from L2 and writes the normed, rotated entry: a serial tail of one head's worth of values (hd ≤ 512
floats), against a launch saved. The reference pools on every step and sends the entries of blocks
that do not end to the entries' scratch row N, whose content is left unspecified.
"""

from __future__ import annotations

import logging

import torch
import triton
import triton.language as tl

from dsv4rt import ops
from dsv4rt.kernels import pdl
from dsv4rt.kernels.pdl import wait_prior
from dsv4rt.kernels.triton_attention import _rope
from dsv4rt.ops.cache import Compression
from dsv4rt.ops.registry import register_checked, rel_err

log = logging.getLogger(__name__)

_TILE = 1024  # ring values (channels × tokens) a program pools; HCA: 16 channels (the least), CSA: 128 (round 8's
# kernel_bench, H100, at 1 and 64 rows: CSA 3.98 and 5.89 µs against 4.85 and 6.46 at 2048, HCA the same)
POOL_ALWAYS = False  # True: pool on every step, as before (benchmarks/gpu_decode.py --cache-pool-always)
_COUNTS: dict[torch.device, list[torch.Tensor]] = {}


@triton.jit
def _norm_rope(x_ptr, w_ptr, rope_ptr, out_ptr, pos, eps, D: tl.constexpr, CG: tl.constexpr):
    """out[:D] = RoPE(RMSNorm(x[:D]) · w) at pos, each step rounded to out's dtype as the reference ops
    round (ops/rope.py). The pair partners are loaded, not permuted in registers. CG: read x from L2
    (another program wrote it)."""
    dt = out_ptr.dtype.element_ty
    d = tl.arange(0, D)[None, :]
    if CG:
        x, xp = tl.load(x_ptr + d, cache_modifier=".cg"), tl.load(x_ptr + (d ^ 1), cache_modifier=".cg")
    else:
        x, xp = tl.load(x_ptr + d), tl.load(x_ptr + (d ^ 1))
    x, xp = x.to(tl.float32), xp.to(tl.float32)
    rstd = 1.0 / tl.sqrt(tl.sum(x * x, axis=1) / D + eps)[:, None]
    y = (x * rstd * tl.load(w_ptr + d).to(tl.float32)).to(dt).to(tl.float32)
    yp = (xp * rstd * tl.load(w_ptr + (d ^ 1)).to(tl.float32)).to(dt).to(tl.float32)
    tl.store(out_ptr + d, _rope(y, yp, rope_ptr, tl.arange(0, D), pos, False).to(dt))


@triton.jit
def _push(a_ptr, z_ptr, ape_ptr, ring_kv, ring_sc, c, p, C: tl.constexpr, M: tl.constexpr, SPAN: tl.constexpr):
    """Channels c of the token at position p into ring column p % SPAN: a, and z + ape; returns both."""
    a = tl.load(a_ptr + c).to(tl.float32)
    z = tl.load(z_ptr + c).to(tl.float32) + tl.load(ape_ptr + (p % M) * C + c).to(tl.float32)
    tl.store(ring_kv + c * SPAN + p % SPAN, a)
    tl.store(ring_sc + c * SPAN + p % SPAN, z)
    return a, z


@triton.jit
def _push_block(a_ptr, z_ptr, ape_ptr, ring_kv, ring_sc, j, p, HD: tl.constexpr, M: tl.constexpr, SPAN: tl.constexpr):
    """Entry channels j of the token at p into the rings (with overlap, SPAN = 2M, at j and HD + j);
    returns the newer half's a and z, which the pool takes from registers."""
    C: tl.constexpr = HD * (SPAN // M)
    if SPAN > M:
        _push(a_ptr, z_ptr, ape_ptr, ring_kv, ring_sc, j, p, C, M, SPAN)
    return _push(a_ptr, z_ptr, ape_ptr, ring_kv, ring_sc, j + (SPAN // M - 1) * HD, p, C, M, SPAN)


@triton.jit
def _pool_block(a_now, z_now, ring_kv, ring_sc, pooled_ptr, j, p, HD: tl.constexpr, M: tl.constexpr,
                SPAN: tl.constexpr):
    """Entry channels j: a softmax over the window's SPAN tokens of the gate, weighting kv (tokens
    before position 0 weigh 0). With overlap the older M tokens are read at channel j, the newer at
    HD + j. The token at p comes from registers: its ring column is never read back."""
    r = tl.arange(0, SPAN)
    now = (r == SPAN - 1)[None, :]
    offs = (j[:, None] + (r // M)[None, :] * HD) * SPAN + ((p + 1 + r) % SPAN)[None, :]  # token p - SPAN + 1 + r
    kv = tl.where(now, a_now[:, None], tl.load(ring_kv + offs, mask=~now, other=0.0))
    sc = tl.where(now, z_now[:, None], tl.load(ring_sc + offs, mask=~now, other=0.0))
    seen = (p + 1 + r >= SPAN)[None, :]
    sc = tl.where(seen, sc, float("-inf"))
    e = tl.exp(sc - tl.max(sc, axis=1)[:, None])
    tl.store(pooled_ptr + j, tl.sum(tl.where(seen, kv, 0.0) * e, axis=1) / tl.sum(e, axis=1))


@triton.jit
def _compress(a_ptr, z_ptr, ape_ptr, rkv_ptr, rsc_ptr, ent_ptr, nw_ptr, rope_ptr, pooled_ptr, count_ptr, q, slot, p,
              s_es, s_er, scratch, eps, HD: tl.constexpr, M: tl.constexpr, SPAN: tl.constexpr, BLOCK: tl.constexpr,
              ALWAYS: tl.constexpr):
    """Program q of a compressor's HD // BLOCK for one row: push its channels of the token; where the
    row's block ends at p, pool them, and the row's last program writes entry p // M and resets the
    count for the next launch. Elsewhere nothing is pooled, the ring is not read (ALWAYS: pooled all the
    same, into the scratch row, as before). One program a row needs no count: a barrier orders its stores."""
    ring = slot * (HD * (SPAN // M) * SPAN)
    j, end = q * BLOCK + tl.arange(0, BLOCK), (p + 1) % M == 0
    a_now, z_now = _push_block(a_ptr, z_ptr, ape_ptr, rkv_ptr + ring, rsc_ptr + ring, j, p, HD, M, SPAN)
    if ALWAYS or end:
        _pool_block(a_now, z_now, rkv_ptr + ring, rsc_ptr + ring, pooled_ptr, j, p, HD, M, SPAN)
        tl.debug_barrier()  # every thread's pooled channels stored before the count (release: visible on the GPU)
        if HD == BLOCK:
            last = True
        else:
            last = tl.atomic_add(count_ptr, 1, sem="acq_rel") == HD // BLOCK - 1
        if last:
            row = tl.where(end, p // M, scratch)
            _norm_rope(pooled_ptr, nw_ptr, rope_ptr, ent_ptr + slot * s_es + row * s_er, p - M + 1, eps, HD, True)
            if HD != BLOCK:
                tl.store(count_ptr, 0)


@triton.jit
def _cache_step(kv_ptr, kvw_ptr, kvrope_ptr, win_ptr, pos_ptr, slot_ptr, pooled_ptr, count_ptr,
                a0, z0, ape0, rkv0, rsc0, ent0, nw0, rope0, a1, z1, ape1, rkv1, rsc1, ent1, nw1, rope1,
                s_pos, s_slot, s_kv, s_ws, s_wr, W, s_pool, s_a0, s_z0, s_es0, s_er0, n0, s_a1, s_z1, s_es1, s_er1, n1,
                eps,
                D: tl.constexpr, NCOMP: tl.constexpr, HD0: tl.constexpr, M0: tl.constexpr, SPAN0: tl.constexpr,
                BLOCK0: tl.constexpr, HD1: tl.constexpr, M1: tl.constexpr, SPAN1: tl.constexpr, BLOCK1: tl.constexpr,
                ALWAYS: tl.constexpr, PDL: tl.constexpr):
    """Program (b, 0): row b's window row; (b, 1 .. P0): compressor 0's blocks; then compressor 1's."""
    b, t = tl.program_id(0), tl.program_id(1)
    wait_prior(PDL)
    slot = tl.load(slot_ptr + b * s_slot).to(tl.int64)
    p = tl.load(pos_ptr + b * s_pos).to(tl.int64)
    pooled, P0 = pooled_ptr + b * s_pool, HD0 // BLOCK0
    if t == 0:
        _norm_rope(kv_ptr + b * s_kv, kvw_ptr, kvrope_ptr, win_ptr + slot * s_ws + (p % W) * s_wr, p, eps, D, False)
    elif NCOMP > 0:
        if t <= P0:
            _compress(a0 + b * s_a0, z0 + b * s_z0, ape0, rkv0, rsc0, ent0, nw0, rope0, pooled, count_ptr + 2 * b,
                      t - 1, slot, p, s_es0, s_er0, n0, eps, HD0, M0, SPAN0, BLOCK0, ALWAYS)
        elif NCOMP > 1:
            _compress(a1 + b * s_a1, z1 + b * s_z1, ape1, rkv1, rsc1, ent1, nw1, rope1, pooled + HD0,
                      count_ptr + 2 * b + 1, t - 1 - P0, slot, p, s_es1, s_er1, n1, eps, HD1, M1, SPAN1, BLOCK1, ALWAYS)


def _counts(device: torch.device, rows: int) -> torch.Tensor:
    """Per row and compressor, the programs that have finished: zero between launches (each row's last
    program resets its own). Made on the first call (the warm-up before a CUDA graph is captured, at the
    largest batch first), then kept; a larger batch makes a larger one, and the smaller stays alive for
    the graphs captured with it."""
    have = _COUNTS.setdefault(device, [])
    if not have or have[-1].numel() < 2 * rows:
        have.append(torch.zeros(2 * max(rows, 256), dtype=torch.int32, device=device))
    return have[-1]


def _block(hd: int, span: int) -> int:
    return min(hd, max(16, _TILE // span))


def _comp_args(comps: list[tuple]) -> tuple[list, list, dict]:
    """The kernel's pointer, stride and constexpr arguments for two compressors; a missing one repeats
    the first's pointers, or the window's (its branch is never compiled), under fixed placeholder sizes."""
    ptrs, strides, consts = [], [], {}
    for i in range(2):
        a, z, ape, rkv, rsc, ent, nw, rope = comps[min(i, len(comps) - 1)]
        ptrs += [a, z, ape, rkv, rsc, ent, nw, rope]
        strides += [a.stride(0), z.stride(0), ent.stride(0), ent.stride(1), ent.shape[1] - 1]
        hd, span, m = (ent.shape[-1], rkv.shape[-1], ape.shape[0]) if i < len(comps) else (16, 1, 1)
        consts.update({f"HD{i}": hd, f"M{i}": m, f"SPAN{i}": span, f"BLOCK{i}": _block(hd, span)})
    return ptrs, strides, consts


@torch.library.custom_op("dsv4rt::decode_cache", mutates_args=("win_kv", "rings_kv", "rings_sc", "entries"))
def _cache_op(kv: torch.Tensor, kv_weight: torch.Tensor, win_kv: torch.Tensor, rope: torch.Tensor, pos: torch.Tensor,
              slots: torch.Tensor, eps: float, a: list[torch.Tensor], z: list[torch.Tensor], ape: list[torch.Tensor],
              rings_kv: list[torch.Tensor], rings_sc: list[torch.Tensor], entries: list[torch.Tensor],
              norm_weights: list[torch.Tensor], ropes: list[torch.Tensor]) -> None:
    """kv [B, D], pos [B], slots [B]; per compressor a, z [B, C] and its state (`Compression`)."""
    B, D = kv.shape
    comps = list(zip(a, z, ape, rings_kv, rings_sc, entries, norm_weights, ropes))
    if B == 0:
        return
    ptrs, strides, consts = _comp_args(comps or [(kv, kv, kv, kv, kv, win_kv, kv_weight, rope)])
    hds = [c[5].shape[-1] for c in comps]
    programs = 1 + sum(hd // consts[f"BLOCK{i}"] for i, hd in enumerate(hds))
    pooled = kv.new_empty((B, max(1, sum(hds))), dtype=torch.float32)
    _cache_step[(B, programs)](kv, kv_weight, rope, win_kv, pos, slots, pooled, _counts(kv.device, B), *ptrs,
                               pos.stride(0), slots.stride(0), kv.stride(0), win_kv.stride(0), win_kv.stride(1),
                               win_kv.shape[1], pooled.stride(0),
                               *strides, eps, D=D, NCOMP=len(comps), **consts, ALWAYS=POOL_ALWAYS, num_warps=4,
                               **pdl.args())


@_cache_op.register_fake
def _(kv, kv_weight, win_kv, rope, pos, slots, eps, a, z, ape, rings_kv, rings_sc, entries, norm_weights, ropes):
    return None


def _pow2(n: int) -> bool:
    return n >= 16 and n & (n - 1) == 0


def _supported(kv, win_kv, rope, comps: list[Compression]) -> bool:
    """What the kernel takes: head dims powers of two ≥ 16, at most two compressors (CSA), contiguous
    fp32 rings whose span is the ratio or twice it, unit strides along channels, fp32 RoPE tables."""
    ok = (len(comps) <= 2 and _pow2(kv.shape[-1]) and kv.stride(-1) == 1 and win_kv.stride(-1) == 1
          and rope.dtype == torch.float32 and rope.is_contiguous())
    for c in comps:
        hd, span = c.entries.shape[-1], c.ring_kv.shape[-1]
        ok = ok and (_pow2(hd) and span in (c.ratio, 2 * c.ratio) and c.ring_kv.shape[1] == hd * span // c.ratio
                     and all(r.dtype == torch.float32 and r.is_contiguous() for r in (c.ring_kv, c.ring_sc))
                     and c.a.stride(-1) == 1 and c.z.stride(-1) == 1 and c.entries.stride(-1) == 1
                     and c.ape.is_contiguous() and c.rope.dtype == torch.float32 and c.rope.is_contiguous())
    return ok


def decode_cache(kv, kv_weight, win_kv, rope, pos, slots, eps: float, comps: list[Compression]) -> None:
    """Same contract as the reference `decode_cache`; what `_supported` rejects goes to the reference."""
    if not _supported(kv, win_kv, rope, comps):
        return ops.decode_cache.reference(kv, kv_weight, win_kv, rope, pos, slots, eps, comps)
    B = kv.shape[0]
    flat = lambda t: t.reshape(B, t.shape[-1])  # noqa: E731 - [B, 1, C] views -> [B, C]
    _cache_op(flat(kv), kv_weight, win_kv, rope, pos.reshape(B), slots, float(eps), [flat(c.a) for c in comps],
              [flat(c.z) for c in comps], [c.ape for c in comps], [c.ring_kv for c in comps],
              [c.ring_sc for c in comps], [c.entries for c in comps], [c.norm_weight for c in comps],
              [c.rope for c in comps])
    return None


def _case(device, dtype, g, ratio: int, hd: int, overlap: bool, rows: int = 3, slots: int = 4,
          n: int = 9) -> Compression:
    """A compressor's random inputs and state (the self-check's, and the tests')."""
    c = 2 if overlap else 1
    rand = lambda *shape, dt=dtype: torch.randn(*shape, generator=g).to(device, dt)  # noqa: E731
    ring = lambda: rand(slots, c * hd, c * ratio, dt=torch.float32)  # noqa: E731
    return Compression(rand(rows, 1, c * hd), rand(rows, 1, c * hd), rand(ratio, c * hd, dt=torch.float32), ring(),
                       ring(), rand(slots, n, hd), rand(hd), torch.rand(hd, generator=g).to(device))


def _fresh(c: Compression) -> Compression:
    return c._replace(ring_kv=c.ring_kv.clone(), ring_sc=c.ring_sc.clone(), entries=c.entries.clone())


def _state(comps: list[Compression]) -> list[torch.Tensor]:
    """What `decode_cache` writes that anyone reads: the rings and the entries, less the scratch row."""
    return [t for c in comps for t in (c.ring_kv, c.ring_sc, c.entries[:, :-1])]


def check_steps(comps: list[Compression], kv, kv_weight, rope, win_kv, slots, pos, steps: int) -> float:
    """Largest relative error of every buffer `decode_cache` writes against the reference, over `steps`
    consecutive tokens from pos (each needs the one before to have reset its counts); the inputs'
    buffers are left as the reference wrote them, the kernel writes copies."""
    ref = ops.decode_cache.reference

    mine, win_mine = [_fresh(c) for c in comps], win_kv.clone()
    for step in range(steps):
        decode_cache(kv, kv_weight, win_mine, rope, pos + step, slots, 1e-6, mine)
        ref(kv, kv_weight, win_kv, rope, pos + step, slots, 1e-6, comps)
    return max([rel_err(win_mine, win_kv)] + [rel_err(x, y) for x, y in zip(_state(mine), _state(comps))])


def self_check(device: str = "cuda", dtype: torch.dtype = torch.bfloat16) -> float:
    """`check_steps` over two tokens for a CSA layer (two overlapping compressors) and an HCA one, at
    positions with a young ring, a block's end and neither, slots out of order."""
    g = torch.Generator(device="cpu").manual_seed(0)
    slots, pos = torch.tensor([2, 0, 3], device=device), torch.tensor([[2], [7], [30]], device=device)
    err = 0.0
    for comps in ([_case(device, dtype, g, 4, 64, True), _case(device, dtype, g, 4, 32, True)],
                  [_case(device, dtype, g, 16, 64, False)]):
        kv, w = torch.randn(3, 1, 128, generator=g).to(device, dtype), torch.randn(128, generator=g).to(device, dtype)
        rope, win = torch.rand(128, generator=g).to(device), torch.randn(4, 16, 128, generator=g).to(device, dtype)
        err = max(err, check_steps(comps, kv, w, rope, win, slots, pos, 2))
    return err


if torch.cuda.is_available():
    register_checked(ops.decode_cache, decode_cache, self_check, 2e-2, "triton", 10, "cuda")
else:
    log.info("triton decode cache not registered: no CUDA device")
