"""Decode attention in Triton (op `decode_attention`, CUDA tensors): one launch, or two at small batches.

A program owns all H query heads of a row: the layer has a single KV head (shared K=V, MQA), so the
row's keys are read from memory once and every head's scores come out of one `tl.dot`. The row's
keys are the slot's window ring, then its selected (or, without a mask, its visible) compressed
entries, in BLOCK_S key chunks folded with an online softmax (fp32, base 2). With few rows one
program a row left most SMs idle (13 µs a layer at batch 1 on the H100), so the chunks are dealt to
several programs a row and `_combine` merges their partial max, sum and accumulator with the per-head
sink (7 µs). Masked keys are never loaded: unwritten ring rows may hold anything, and a top-k entry
mask skips most of the entry buffer. No host syncs and no torch ops but `torch.empty`: it runs inside
the engine's CUDA graphs, and as a torch custom op Inductor calls it as it is."""

from __future__ import annotations

import logging
import math

import torch
import triton
import triton.language as tl

from dsv4rt import ops
from dsv4rt.kernels import pdl
from dsv4rt.kernels.pdl import wait_prior
from dsv4rt.ops.registry import register_checked, rel_err

log = logging.getLogger(__name__)

_MAX_ACC = 8192  # fp32 accumulator elements (BLOCK_H × D) one program keeps in registers
_TILE_BYTES = 32768  # one key chunk: room for the default 3 pipeline stages in shared memory (not yet measured)
_PROGRAMS = 128  # rows × splits to aim for: about one program per SM of an H100 (132)


@triton.jit
def _dot(a, b, IEEE: tl.constexpr):
    # fp32 callers (and the CPU interpreter tests) need true fp32 products, not tf32
    if IEEE:
        return tl.dot(a, b, input_precision="ieee")
    else:
        return tl.dot(a, b)


@triton.jit
def _rope(x, partner, freq_ptr, d, pos, INVERSE: tl.constexpr):
    """x [R, D] (fp32 values of the model's dtype) turned by RoPE at position pos, as ops/rope.py
    does it: channel d with its pair partner d ^ 1 by pos·freq[d] (frequency 0 leaves a channel as is)."""
    angle = pos.to(tl.float32) * tl.load(freq_ptr + d)
    sign = (d % 2) * 2 - 1  # even: -sin, odd: +sin
    if INVERSE:
        sign = -sign
    return x * tl.cos(angle)[None, :] + partner * (tl.sin(angle) * sign)[None, :]


@triton.jit
def _partner(x, D: tl.constexpr):
    """x [R, D] with each pair of channels (2i, 2i+1) swapped."""
    xe, xo = tl.split(tl.reshape(x, (x.shape[0], D // 2, 2)))
    return tl.reshape(tl.join(xo, xe), (x.shape[0], D))


@triton.jit
def _query(q_ptr, s_qh, heads, d, live, rope_ptr, pos, eps, ROPE: tl.constexpr, D: tl.constexpr):
    """A row's queries [BLOCK_H, D]; with ROPE the raw projection, per-head RMS-normalised and rotated
    here (each rounded to q's dtype, as the separate ops did). The pair partners are loaded, not
    permuted in registers: a permutation of the whole tile spilled."""
    ptrs = q_ptr + heads[:, None] * s_qh + d[None, :]
    q = tl.load(ptrs, mask=live[:, None], other=0.0)
    if ROPE:
        qf = q.to(tl.float32)
        pf = tl.load(ptrs + (d ^ 1)[None, :] - d[None, :], mask=live[:, None], other=0.0).to(tl.float32)
        rstd = (1.0 / tl.sqrt(tl.sum(qf * qf, axis=1) / D + eps))[:, None]
        qf, pf = (qf * rstd).to(q.dtype).to(tl.float32), (pf * rstd).to(q.dtype).to(tl.float32)
        q = _rope(qf, pf, rope_ptr, d, pos, False).to(q.dtype)
    return q


@triton.jit
def _chunk(q, kv_ptrs, ok, m, l, acc, qk_scale, IEEE: tl.constexpr):
    """Fold one chunk of keys (rows where `ok`) into the running max m, sum l and acc (log2 units)."""
    kv = tl.load(kv_ptrs, mask=ok[:, None], other=0.0)  # masked rows may be NaN garbage: never touch them
    s = _dot(q, tl.trans(kv), IEEE) * qk_scale
    s = tl.where(ok[None, :], s, float("-inf"))
    m_new = tl.maximum(m, tl.max(s, axis=1))
    # a head with no valid key so far would compute (-inf) - (-inf) = NaN; shift by 0 instead
    m_use = tl.where(m_new == float("-inf"), 0.0, m_new)
    alpha = tl.exp2(m - m_use)
    p = tl.exp2(s - m_use[:, None])
    l = l * alpha + tl.sum(p, axis=1)
    acc = acc * alpha[:, None] + _dot(p.to(kv.dtype), kv, IEEE)
    return m_new, l, acc


@triton.jit
def _entry_ok(emask_ptr, b, rows, N, n_vis, s_mb, s_mn, HAS_MASK: tl.constexpr):
    """Which entry rows a row attends: its mask's, or (no mask) those compressed so far."""
    if HAS_MASK:
        ok = tl.load(emask_ptr + b * s_mb + rows * s_mn, mask=rows < N, other=0) != 0
    else:
        ok = rows < n_vis
    return ok


@triton.jit
def _chunk_keys(c, CW, CE, win, ent, old, emask_ptr, b, last, W, N, n_vis, s_wr, s_er, s_mb, s_mn, s_or, d,
                BLOCK_S: tl.constexpr, HAS_MASK: tl.constexpr, SPAN: tl.constexpr):
    """Key pointers and valid rows of chunk c of a row's keys: the window's CW chunks, then the entries'
    up to chunk CE, then (a verify, SPAN > 1) the one chunk of the ring rows the span overwrote. A
    verify picks a base pointer and row offsets per source and builds one pointer tile (three tiles
    in the branches spilled registers on sm_90)."""
    r = tl.arange(0, BLOCK_S)
    if SPAN == 1:
        if c < CW:
            rows = c * BLOCK_S + r
            ptrs = win + rows[:, None] * s_wr + d[None, :]
            ok = (rows < W) & (rows <= last)  # a young ring's empty rows are masked, not skipped: rare, and cheap
        else:
            rows = (c - CW) * BLOCK_S + r
            ptrs = ent + rows[:, None] * s_er + d[None, :]
            ok = _entry_ok(emask_ptr, b, rows, N, n_vis, s_mb, s_mn, HAS_MASK)
    else:
        t = b % SPAN  # this row's token in its span; the ring's newest position is last - t + SPAN - 1
        if c < CW:
            rows = c * BLOCK_S + r
            base, off = win, rows * s_wr
            newest = last - t + SPAN - 1  # >= -1
            head = (newest + W) % W  # the ring row of `newest`: row r holds newest - head + r, less W past head
            held = newest - head + rows - tl.where(rows > head, W, 0)
            ok = (rows < W) & (held >= 0) & (held <= last)
        elif c >= CE:
            base, off = old, r * s_or
            ok = (r < SPAN) & (r > t) & (last - t + r - W >= 0)
        else:
            rows = (c - CW) * BLOCK_S + r
            base, off = ent, rows * s_er
            ok = _entry_ok(emask_ptr, b, rows, N, n_vis, s_mb, s_mn, HAS_MASK)
        ptrs = base + off[:, None] + d[None, :]
    return ptrs, ok


@triton.jit
def _decode_attn(q_ptr, win_ptr, slot_ptr, pos_ptr, ent_ptr, emask_ptr, sink_ptr, rope_ptr, out_ptr, part_ptr, ml_ptr,
                 old_ptr, H, W, N, ratio, qk_scale, eps, s_slot, s_pos, s_qb, s_qh, s_ws, s_wr, s_es, s_er, s_mb, s_mn,
                 s_ob, s_oh, s_os, s_or, D: tl.constexpr, BLOCK_H: tl.constexpr, BLOCK_S: tl.constexpr,
                 HAS_ENTRIES: tl.constexpr, HAS_MASK: tl.constexpr, SPLIT: tl.constexpr, ROPE: tl.constexpr,
                 IEEE: tl.constexpr, SPAN: tl.constexpr, PDL: tl.constexpr):
    """Program (b, s) folds row b's key chunks s, s+S, ... (S: grid dim 1): its output, or (SPLIT) partials."""
    b, s, splits = tl.program_id(0), tl.program_id(1), tl.num_programs(1)
    wait_prior(PDL)
    slot = tl.load(slot_ptr + b * s_slot).to(tl.int64)  # int64: slot × slot stride can pass 2^31 elements
    last = tl.load(pos_ptr + b * s_pos).to(tl.int64)
    heads, d = tl.arange(0, BLOCK_H), tl.arange(0, D)
    live = heads < H  # tl.dot needs M >= 16: heads are padded, the padding is never stored
    q = _query(q_ptr + b * s_qb, s_qh, heads, d, live, rope_ptr, last, eps, ROPE, D)
    m, l = tl.full([BLOCK_H], float("-inf"), tl.float32), tl.zeros([BLOCK_H], tl.float32)
    acc = tl.zeros([BLOCK_H, D], tl.float32)
    n_vis = tl.minimum(N, (last + 1) // ratio).to(tl.int32)  # without a mask: the entries compressed so far
    CW = tl.cdiv(W, BLOCK_S)
    chunks = CW
    if HAS_ENTRIES:  # without a mask the loop ends at the last visible entry, not at the buffer's end
        if HAS_MASK:
            chunks += tl.cdiv(N, BLOCK_S)
        else:
            chunks += tl.cdiv(n_vis, BLOCK_S)
    CE = chunks
    if SPAN > 1:
        chunks += 1
    old = old_ptr + (b // SPAN).to(tl.int64) * s_os
    for c in range(s, chunks, splits):
        ptrs, ok = _chunk_keys(c, CW, CE, win_ptr + slot * s_ws, ent_ptr + slot * s_es, old, emask_ptr, b, last, W, N,
                               n_vis, s_wr, s_er, s_mb, s_mn, s_or, d, BLOCK_S, HAS_MASK, SPAN)
        m, l, acc = _chunk(q, ptrs, ok, m, l, acc, qk_scale, IEEE)
    if SPLIT:
        part = (b * splits + s) * H + heads
        tl.store(ml_ptr + part, m, mask=live)
        tl.store(ml_ptr + tl.num_programs(0) * splits * H + part, l, mask=live)
        if s < chunks:  # a split with no chunk leaves acc unwritten; its weight in `_combine` is 0
            tl.store(part_ptr + part[:, None].to(tl.int64) * D + d[None, :], acc, mask=live[:, None])
    else:
        _finish(acc, m, l, sink_ptr, heads, live, out_ptr + b * s_ob + heads[:, None] * s_oh + d[None, :], rope_ptr,
                last, ROPE, D)


@triton.jit
def _finish(acc, m, l, sink_ptr, heads, live, ptrs, rope_ptr, pos, ROPE: tl.constexpr, D: tl.constexpr):
    """A row's output from its running max m, sum l and acc (log2 units) and the per-head sink, stored."""
    sink = tl.load(sink_ptr + heads, mask=live, other=0.0).to(tl.float32) * 1.4426950408889634
    m_f = tl.maximum(m, sink)  # finite, so exp2(m - m_f) is 0 (not NaN) for a head that saw no key
    keep = tl.exp2(m - m_f)
    out = acc * (keep / (l * keep + tl.exp2(sink - m_f)))[:, None]
    _store_out(ptrs, out, live[:, None], rope_ptr, pos, ROPE, D)


@triton.jit
def _store_out(ptrs, out, ok, rope_ptr, pos, ROPE: tl.constexpr, D: tl.constexpr):
    """Store out [R, D] in the output's dtype; with ROPE rotated back by pos first (V carries RoPE)."""
    dt = ptrs.dtype.element_ty
    if ROPE:
        out = out.to(dt).to(tl.float32)
        out = _rope(out, _partner(out, D), rope_ptr, tl.arange(0, D), pos, True)
    tl.store(ptrs, out.to(dt), mask=ok)


@triton.jit
def _combine(part_ptr, ml_ptr, sink_ptr, rope_ptr, pos_ptr, out_ptr, H, SPLITS, s_pos, s_ob, s_oh, D: tl.constexpr,
             BLOCK_P: tl.constexpr, ROWS: tl.constexpr, ROPE: tl.constexpr, PDL: tl.constexpr):
    """out[b, h] from the SPLITS partials of row b, head h, and the head's sink (all in log2 units)."""
    b, h = tl.program_id(0), tl.program_id(1)
    wait_prior(PDL)
    first = b * SPLITS * H + h  # partial (b, s, h) is at first + s·H
    p = tl.arange(0, BLOCK_P)
    m = tl.load(ml_ptr + first + p * H, mask=p < SPLITS, other=float("-inf"))
    sink = tl.load(sink_ptr + h).to(tl.float32) * 1.4426950408889634
    top = tl.maximum(tl.max(m, axis=0), sink)  # finite: a split that saw no key has weight exp2(-inf) = 0
    lsum = tl.load(ml_ptr + tl.num_programs(0) * SPLITS * H + first + p * H, mask=p < SPLITS, other=0.0)
    denom = tl.sum(tl.exp2(m - top) * lsum, axis=0) + tl.exp2(sink - top)
    d, r = tl.arange(0, D), tl.arange(0, ROWS)
    acc = tl.zeros([D], tl.float32)
    for s0 in range(0, SPLITS, ROWS):
        s = s0 + r
        w = tl.exp2(tl.load(ml_ptr + first + s * H, mask=s < SPLITS, other=float("-inf")) - top)
        rows = tl.load(part_ptr + (first + s[:, None] * H).to(tl.int64) * D + d[None, :], mask=(w > 0)[:, None],
                       other=0.0)  # unwritten partials (w = 0) are never read
        acc += tl.sum(rows * w[:, None], axis=0)
    _store_out(out_ptr + b * s_ob + h * s_oh + d[None, :], (acc / denom)[None, :], d[None, :] < D, rope_ptr,
               tl.load(pos_ptr + b * s_pos), ROPE, D)


def _block_h(h: int) -> int:
    return max(16, triton.next_power_of_2(h))


def _splits(B: int, chunks: int) -> int:
    """Programs per row: enough rows × splits to fill the GPU (one program per row left ~all SMs idle at
    batch 1: 13 µs a layer on the H100), never more than the row has key chunks."""
    return max(1, min(chunks, _PROGRAMS // B))


def _launch(q, win_kv, slots, pos, entries, entry_mask, sink, scale: float, ratio: int = 0, rope=None,
            eps: float = 0.0, block_s: int | None = None, splits: int | None = None, old_kv=None):
    """The kernel call itself (no shape checks; `decode_attention` does those). `block_s` overrides
    the key chunk and `splits` the programs per row (tests cover several chunks and splits on short inputs)."""
    B, H, D = q.shape
    out = torch.empty((B, H, D), dtype=q.dtype, device=q.device)
    if B == 0:
        return out
    has, has_mask = entries is not None, entry_mask is not None
    ent = entries if has else win_kv  # never read without entries
    emask = entry_mask if has_mask else slots  # never read without a mask
    freqs = rope if rope is not None else sink  # never read without RoPE
    old = old_kv if old_kv is not None else win_kv  # never read outside a verify
    span = old_kv.shape[1] if old_kv is not None else 1
    n = entry_mask.shape[1] if has_mask else (entries.shape[1] - 1 if has else 0)
    block_s = block_s or max(16, min(64, _TILE_BYTES // (D * q.element_size())))
    splits = splits or _splits(B, triton.cdiv(win_kv.shape[1], block_s) + triton.cdiv(n, block_s) + int(span > 1))
    part = torch.empty((B, splits, H, D) if splits > 1 else (0,), dtype=torch.float32, device=q.device)
    ml = torch.empty((2, B, splits, H) if splits > 1 else (0,), dtype=torch.float32, device=q.device)
    _decode_attn[(B, splits)](q, win_kv, slots, pos, ent, emask, sink, freqs, out, part, ml, old, H, win_kv.shape[1], n,
                              max(ratio, 1), float(scale) * math.log2(math.e), eps, slots.stride(0), pos.stride(0),
                              q.stride(0), q.stride(1), win_kv.stride(0), win_kv.stride(1), ent.stride(0),
                              ent.stride(1), emask.stride(0), emask.stride(-1), out.stride(0), out.stride(1),
                              old.stride(0), old.stride(1), D=D, BLOCK_H=_block_h(H), BLOCK_S=block_s, HAS_ENTRIES=has,
                              HAS_MASK=has_mask, SPLIT=splits > 1, ROPE=rope is not None, IEEE=q.dtype == torch.float32,
                              SPAN=span,
                              num_warps=8 if D >= 512 else 4, **pdl.args())
    if splits > 1:
        _combine[(B, H)](part, ml, sink, freqs, pos, out, H, splits, pos.stride(0), out.stride(0), out.stride(1), D=D,
                         BLOCK_P=triton.next_power_of_2(splits), ROWS=max(1, min(8, 4096 // D)), ROPE=rope is not None,
                         num_warps=4, **pdl.args())
    return out


# A custom op so that torch.compile (dsv4rt/compiled.py) keeps the launch opaque rather than tracing
# the user kernel, as with `dsv4rt::hc_split_sinkhorn` in triton_mhc.py.
@torch.library.custom_op("dsv4rt::decode_attention", mutates_args=())
def _attention_op(q: torch.Tensor, win_kv: torch.Tensor, slots: torch.Tensor, pos: torch.Tensor,
                  entries: torch.Tensor | None, entry_mask: torch.Tensor | None, sink: torch.Tensor,
                  scale: float, ratio: int, rope: torch.Tensor | None, eps: float,
                  old_kv: torch.Tensor | None) -> torch.Tensor:
    return _launch(q, win_kv, slots, pos, entries, entry_mask, sink, scale, ratio, rope, eps, old_kv=old_kv)


@_attention_op.register_fake
def _(q, win_kv, slots, pos, entries, entry_mask, sink, scale, ratio, rope, eps, old_kv):
    return torch.empty(q.shape, dtype=q.dtype, device=q.device)


def _supported(q, win_kv, entries, entry_mask, ratio: int, rope, old_kv=None) -> bool:
    """What the kernel tiles: D a power of two in [16, 512], BLOCK_H·D ≤ 8192 (H ≤ 16 at D=512,
    ≤ 64 at D=128), one float dtype for q and keys, unit stride along D, entries with a mask or a ratio,
    fp32 RoPE frequencies for every channel."""
    H, D = q.shape[1], q.shape[2]
    keys = [win_kv] if entries is None else [win_kv, entries]
    return (D & (D - 1) == 0 and 16 <= D <= 512 and _block_h(H) * D <= _MAX_ACC
            and (entries is not None or entry_mask is None) and (entry_mask is not None or ratio > 0 or entries is None)
            and q.dtype in (torch.float32, torch.bfloat16, torch.float16) and q.stride(-1) == 1
            and all(k.dtype == q.dtype and k.stride(-1) == 1 for k in keys)
            and (rope is None or (rope.dtype == torch.float32 and rope.shape == (D,) and rope.stride(0) == 1))
            and (old_kv is None or (old_kv.dtype == q.dtype and old_kv.stride(-1) == 1 and old_kv.shape[1] <= 16
                                    and old_kv.shape[0] * old_kv.shape[1] == q.shape[0])))


def decode_attention(q, win_kv, slots, pos, entries, entry_mask, sink, scale: float, ratio: int = 0, rope=None,
                     eps: float = 0.0, old_kv=None) -> torch.Tensor:
    """Same contract as the reference `decode_attention`. Shapes `_supported` rejects (D not a power
    of two or outside [16, 512], more heads than the accumulator holds, mixed dtypes, a non-unit
    stride along D, a mask without entries, entries with neither mask nor ratio) go to the reference."""
    if not _supported(q, win_kv, entries, entry_mask, ratio, rope, old_kv):
        return ops.decode_attention.reference(q, win_kv, slots, pos, entries, entry_mask, sink, scale, ratio, rope, eps,
                                              old_kv)
    return _attention_op(q, win_kv, slots, pos, entries, entry_mask, sink, scale, int(ratio), rope, float(eps), old_kv)


def self_check(device: str = "cuda", dtype: torch.dtype = torch.bfloat16) -> float:
    """Relative error against the reference on a small bf16 case (a young ring, a partial entry mask
    or the entries compressed so far, slots out of order; the query's norm and RoPE in the kernel or
    not): the registry's gate before this kernel may decode anything."""
    ref = ops.decode_attention.reference

    g = torch.Generator(device="cpu").manual_seed(0)
    rand = lambda *shape: torch.randn(*shape, generator=g).to(device, dtype)  # noqa: E731
    q, win, ent = rand(3, 16, 128), rand(4, 32, 128), rand(4, 41, 128)
    slots, pos = torch.tensor([2, 0, 3], device=device), torch.tensor([5, 77, 40], device=device)
    mask = (torch.rand(3, 40, generator=g) < 0.5).to(device)
    sink = torch.randn(16, generator=g).to(device)
    freqs = torch.cat([torch.zeros(64), torch.rand(32, generator=g).repeat_interleave(2)]).to(device)
    cases = ((mask, 0, None), (None, 4, freqs))  # selected entries; all entries compressed so far, with RoPE
    return max(rel_err(decode_attention(q, win, slots, pos, ent, m, sink, 0.1, ratio, rope, 1e-6),
                       ref(q, win, slots, pos, ent, m, sink, 0.1, ratio, rope, 1e-6)) for m, ratio, rope in cases)


if torch.cuda.is_available():
    register_checked(ops.decode_attention, decode_attention, self_check, 2e-2, "triton", 10, "cuda")
else:
    log.info("triton decode attention not registered: no CUDA device")
