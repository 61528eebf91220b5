"""The DeepSeek-V4 model: SWA / CSA / HCA attention, mHC residual streams, MoE, MTP head.

Layout follows the official `inference/model.py`; module and parameter names equal the checkpoint's
tensor names, so `state_dict()` keys are the official ones (`layers.3.attn.compressor.ape`, ...).
Facts and notation: shared/reference/v4-architecture.md §2. Decoding state lives in static per-slot
buffers (`allocate_cache`), so rows at different positions batch together and prefill, chunked
prefill and decode share one code path with no host syncs in attention.

Cache per attention layer, per slot (W = window, m = ratio, N = max_seq_len // m):
    win_kv      [W, D]        ring: row p % W holds the window entry of position p
    ring_kv/sc  [c·hd, c·m]   compressor: projected kv / gate scores of the last c·m tokens (c = 2 if overlap),
                              channel-major so that pooling reduces along contiguous memory (`Compressor.rings`)
    entries     [N + 1, hd]   compressed entries; entry j at row j, row N is a scratch row for no-ops
"""

from __future__ import annotations

import torch
from torch import nn

from dsv4rt import ops
from dsv4rt.config import ModelArgs
from dsv4rt.layers.fused import FusedLinears
from dsv4rt.layers.mhc import HyperConnection, NextPre
from dsv4rt.layers.moe import MoE
from dsv4rt.ops.attention import with_entries
from dsv4rt.ops.cache import Compression, pool, write_cols, write_rows
from dsv4rt.ops.rope import apply_rope, channel_freqs, inv_freq


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float = 1e-6):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return ops.rmsnorm(x, self.weight, self.eps)


class Linear(nn.Linear):
    """Bias-free nn.Linear through the `linear` op (a GEMV kernel for batch-1 decode on CUDA)."""

    def __init__(self, in_features: int, out_features: int):
        super().__init__(in_features, out_features, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return ops.linear(x, self.weight)


class Rope:
    """Frequencies of one layer's RoPE, built lazily per device (not a buffer, so models built on the
    meta device need no re-init). SWA: plain rope_theta; compressed layers: YaRN on compress_rope_theta."""

    def __init__(self, args: ModelArgs, ratio: int):
        if ratio == 0:
            self.params = (args.rope_head_dim, args.rope_theta)
        else:
            self.params = (args.rope_head_dim, args.compress_rope_theta, args.rope_factor,
                           args.original_seq_len, args.beta_fast, args.beta_slow)
        self._cache: dict[tuple[torch.device, int], torch.Tensor] = {}  # (device, head dim) -> channel_freqs

    def table(self, device: torch.device, dim: int) -> torch.Tensor:
        """channel_freqs for heads of `dim` on `device` (built on first use)."""
        if (device, dim) not in self._cache:
            self._cache[device, dim] = channel_freqs(inv_freq(*self.params), dim).to(device)
        return self._cache[device, dim]

    def __call__(self, x: torch.Tensor, pos: torch.Tensor, inverse: bool = False) -> torch.Tensor:
        return apply_rope(x, pos, self.table(x.device, x.shape[-1]), inverse)


def _arange(n: int, like: torch.Tensor) -> torch.Tensor:
    return torch.arange(n, device=like.device)


class CachedModule(nn.Module):
    """A module with per-slot decode state: `cache_shapes` is the single source of buffer sizes."""

    def cache_shapes(self, max_seq_len: int) -> dict[str, tuple[tuple[int, ...], torch.dtype | None]]:
        raise NotImplementedError

    def allocate(self, num_slots: int, max_seq_len: int, device, dtype) -> None:
        for name, (shape, dt) in self.cache_shapes(max_seq_len).items():
            buf = torch.zeros(num_slots, *shape, device=device, dtype=dt or dtype)
            self.register_buffer(name, buf, persistent=False)


class Compressor(CachedModule):
    """Gated-pooling compressor: one entry of `head_dim` per `ratio` tokens (v4-architecture.md §2.5).

    With overlap (CSA, ratio 4) each entry pools 2·ratio tokens: channels [:hd] of the previous block
    and [hd:] of its own block. The entry gets RoPE at its block's first position.
    """

    def __init__(self, args: ModelArgs, ratio: int, head_dim: int, rope: Rope):
        super().__init__()
        self.ratio, self.head_dim, self.overlap, self.rope = ratio, head_dim, ratio == 4, rope
        c = 2 if self.overlap else 1
        self.span = c * ratio  # tokens one entry looks at
        self.wkv = Linear(args.dim, c * head_dim)
        self.wgate = Linear(args.dim, c * head_dim)
        self.ape = nn.Parameter(torch.zeros(ratio, c * head_dim))
        self.norm = RMSNorm(head_dim, args.norm_eps)

    def cache_shapes(self, max_seq_len: int):
        width = self.wkv.out_features
        return {
            "ring_kv": ((width, self.span), torch.float32),
            "ring_sc": ((width, self.span), torch.float32),
            "entries": ((max_seq_len // self.ratio + 1, self.head_dim), None),
        }

    def forward(self, a: torch.Tensor, z: torch.Tensor, pos: torch.Tensor, slots: torch.Tensor) -> None:
        """a, z = wkv(x), wgate(x) [B,T,c·hd] at positions pos [B,T] of a prefill chunk (the caller
        projects x, see `Attention.project`); write every entry whose block ends in this chunk. A
        decode token goes through `step` and the `decode_cache` op instead."""
        start, R, m = pos[:, 0], self.span, self.ratio
        a, z = a.float(), z.float() + self.ape[pos % m]
        ring_kv, ring_sc = self.rings()
        # history = the ring's last R tokens (positions start-R .. start-1), then this chunk
        hpos = start[:, None] - R + _arange(R, pos)
        seq_pos = torch.cat([hpos, pos], 1)
        seq_a = torch.cat([ring_kv[slots[:, None], hpos % R], a], 1)
        seq_z = torch.cat([ring_sc[slots[:, None], hpos % R], z], 1)
        ends = start[:, None] + (-(start[:, None] + 1)) % m + m * _arange(pos.shape[1] // m + 1, pos)  # [B,E]
        valid = ends <= pos[:, -1:]
        end_off = (ends - hpos[:, :1]).clamp(max=seq_pos.shape[1] - 1)
        win = (end_off[..., None] - R + 1 + _arange(R, pos)).flatten(1)  # [B, E·R] token offsets
        entry = pool(self._take(seq_a, win).mT, self._take(seq_z, win).mT, self._take(seq_pos, win), m, self.overlap)
        entry = self.rope(self.norm(entry).to(self.entries.dtype), ends - m + 1)
        rows = torch.where(valid, ends // m, self.entries.shape[1] - 1)
        keep = seq_pos[:, -R:] % R
        write_rows(slots, (self.entries, rows, entry))
        write_cols(slots, (self.ring_kv, keep, seq_a[:, -R:]), (self.ring_sc, keep, seq_z[:, -R:]))

    def step(self, a: torch.Tensor, z: torch.Tensor) -> Compression:
        """This compressor's part of a decode token's `decode_cache` (a, z: its projections [B,1,c·hd])."""
        return Compression(a, z, self.ape, self.ring_kv, self.ring_sc, self.entries, self.norm.weight,
                           self.rope.table(a.device, self.head_dim))

    def rings(self) -> tuple[torch.Tensor, torch.Tensor]:
        """ring_kv, ring_sc as [S, span, width] views (token rows) of their channel-major storage."""
        return self.ring_kv.mT, self.ring_sc.mT

    def _take(self, seq: torch.Tensor, win: torch.Tensor) -> torch.Tensor:
        """Gather rows win [B, E·R] of seq [B, L(, C)] -> [B, E, R(, C)]."""
        idx = win if seq.dim() == 2 else win[..., None].expand(-1, -1, seq.shape[-1])
        return seq.gather(1, idx).unflatten(1, (-1, self.span))


class Indexer(nn.Module):
    """Lightning indexer (CSA): scores compressed entries per query, keeps the top `index_topk`.

    The official code rotates q and k by the same Hadamard matrix and simulates FP4; both cancel or
    vanish in float, so this reference (like transformers) skips them.
    """

    def __init__(self, args: ModelArgs, ratio: int, rope: Rope):
        super().__init__()
        self.n_heads, self.head_dim, self.topk = args.index_n_heads, args.index_head_dim, args.index_topk
        self.wq_b = Linear(args.q_lora_rank, self.n_heads * self.head_dim)
        self.weights_proj = Linear(args.dim, self.n_heads)
        self.compressor = Compressor(args, ratio, self.head_dim, rope)
        self.scale = self.head_dim ** -0.5 * self.n_heads ** -0.5

    def selects_all(self, n_entries: int) -> bool:
        """The top-k of at most k entries is all of them, so scoring can be skipped (exactly)."""
        return n_entries <= self.topk

    def forward(self, xw, qr, pos, slots, visible: torch.Tensor) -> torch.Tensor | None:
        """xw: weights_proj(x) (`Attention.project`), once the attention has fed this chunk to the
        compressor (`Attention._cache`). -> bool [B,T,N]: the entries each query attends to (a subset
        of `visible`), or None where that is all of `visible` (`selects_all`)."""
        if self.selects_all(visible.shape[-1]):
            return None
        qi = self.compressor.rope(self.wq_b(qr).unflatten(-1, (self.n_heads, self.head_dim)), pos)
        keys = self.compressor.entries[slots, : visible.shape[-1]]
        w = xw.float() * self.scale
        return ops.indexer_topk(qi, keys, w, visible, self.topk)


class Attention(CachedModule):
    """Shared K=V MQA over [sliding window | compressed entries] with a per-head sink (§2.4).

    ratio 0: window only (SWA); ratio 4: + indexer-selected CSA entries; ratio 128: + all HCA entries.
    V carries RoPE too, so the output's rope part is rotated back by the query position.
    """

    def __init__(self, layer_id: int, args: ModelArgs):
        super().__init__()
        self.n_heads, self.head_dim, self.window = args.n_heads, args.head_dim, args.window_size
        self.o_groups, self.o_lora_rank, self.eps = args.o_groups, args.o_lora_rank, args.norm_eps
        self.ratio = args.compress_ratios[layer_id]
        self.scale = self.head_dim ** -0.5  # no YaRN mscale (§2.4)
        self.wq_a = Linear(args.dim, args.q_lora_rank)
        self.q_norm = RMSNorm(args.q_lora_rank, args.norm_eps)
        self.wq_b = Linear(args.q_lora_rank, self.n_heads * self.head_dim)
        self.wkv = Linear(args.dim, self.head_dim)
        self.kv_norm = RMSNorm(self.head_dim, args.norm_eps)
        self.wo_a = Linear(self.n_heads * self.head_dim // self.o_groups, self.o_groups * self.o_lora_rank)
        self.wo_b = Linear(self.o_groups * self.o_lora_rank, args.dim)
        self.attn_sink = nn.Parameter(torch.zeros(self.n_heads))
        self.rope = Rope(args, self.ratio)
        self.compressor = Compressor(args, self.ratio, self.head_dim, self.rope) if self.ratio else None
        self.indexer = Indexer(args, self.ratio, self.rope) if self.ratio == 4 else None
        self.project = FusedLinears(*self._input_linears())

    def _input_linears(self) -> list[nn.Linear]:
        """Every linear of x, in `forward`'s order: q, kv, compressor kv/gate, indexer w/kv/gate."""
        lins = [self.wq_a, self.wkv]
        if self.compressor is not None:
            lins += [self.compressor.wkv, self.compressor.wgate]
        if self.indexer is not None:
            c = self.indexer.compressor
            lins += [self.indexer.weights_proj, c.wkv, c.wgate]
        return lins

    def cache_shapes(self, max_seq_len: int):
        return {"win_kv": ((self.window, self.head_dim), None)}

    def allocate(self, num_slots: int, max_seq_len: int, device, dtype) -> None:
        super().allocate(num_slots, max_seq_len, device, dtype)
        # the RoPE tables too: built inside a compiled decode step, they would be traced into it
        for dim in [self.head_dim] + ([self.indexer.head_dim] if self.indexer else []):
            self.rope.table(torch.device(device), dim)

    def forward(self, x: torch.Tensor, pos: torch.Tensor, slots: torch.Tensor,
                horizon: int | None = None, verify: bool = False) -> torch.Tensor:
        """-> the output before `wo_b`, which the block applies inside its mHC post (one launch at batch 1).
        horizon: a bound on every position of this step + 1 (None: the cache's capacity); the indexer,
        the entry masks and the attention read only the entries below it (`Transformer.forward`).
        verify: a T > 1 input is a speculative span, B·T decode rows (`_span_cache`, `_decode`)."""
        qa, kv, *rest = self.project(x)
        q = ops.norm_linear(qa, self.q_norm.weight, self.q_norm.eps, self.wq_b.weight)
        q = q.unflatten(-1, (self.n_heads, self.head_dim))  # before its per-head norm and RoPE
        span = verify and x.shape[1] > 1
        old = self._span_cache(kv, rest, pos, slots) if span else None
        kv = None if span else self._cache(kv, rest, pos, slots)
        entries = visible = selected = None  # selected None: every visible entry
        if self.compressor is not None:
            entries = self.compressor.entries
            n = entries.shape[1] - 1 if horizon is None else min(entries.shape[1] - 1, horizon // self.ratio)
            visible = _arange(n, x) < ((pos + 1) // self.ratio)[..., None]  # entry j covers [j·m, (j+1)·m)
            if self.indexer is not None:
                selected = self.indexer(rest[2], self.q_norm(qa), pos, slots, visible)
        if x.shape[1] == 1 or span:
            o = self._decode(q, pos, slots, entries, selected, old)
        else:
            q = self.rope(ops.rmsnorm(q, None, self.eps), pos)
            keys, mask = self._window(kv, pos, slots)
            if entries is not None:
                keys, mask = with_entries(keys, mask, entries, slots, visible if selected is None else selected)
            o = self.rope(ops.sink_attention(q, keys, mask, self.attn_sink, self.scale), pos, inverse=True)
        # group g of wo_a reads heads' slice g; wo_b is the block's to apply, inside its mHC post (`Block`)
        return ops.linear(o.flatten(2), self.wo_a.weight, self.o_groups)

    def _cache(self, kv, rest, pos, slots) -> torch.Tensor | None:
        """Feed this chunk's projections (rest: `_input_linears` after q and kv) to the compressors. A
        decode token also goes to the window ring, all in one `decode_cache` op (None returned); a
        chunk's kv is returned normed and rotated (`_window` writes the ring)."""
        comps = [(self.compressor, rest[0:2])] if self.compressor is not None else []
        if self.indexer is not None:
            comps.append((self.indexer.compressor, rest[3:5]))
        if pos.shape[1] > 1:
            for comp, (a, z) in comps:
                comp(a, z, pos, slots)
            return self.rope(self.kv_norm(kv), pos)
        ops.decode_cache(kv, self.kv_norm.weight, self.win_kv, self.rope.table(kv.device, self.head_dim), pos,
                            slots, self.kv_norm.eps, [comp.step(a, z) for comp, (a, z) in comps])
        return None

    def _span_cache(self, kv, rest, pos, slots) -> torch.Tensor:
        """A verify's T tokens into the cache as T decode tokens, in order (each block that ends in the
        span pools what it must; a window-only layer's T tokens go in one call, as B·T rows, since they
        only write distinct ring rows); -> the window rows they overwrote [B, T, hd] (`_decode`'s old)."""
        old = self.win_kv[slots[:, None], pos % self.window]
        comps = [(self.compressor, rest[0:2])] if self.compressor is not None else []
        if self.indexer is not None:
            comps.append((self.indexer.compressor, rest[3:5]))
        if not comps:
            B, T = pos.shape
            ops.decode_cache(kv.flatten(0, 1)[:, None], self.kv_norm.weight, self.win_kv,
                             self.rope.table(kv.device, self.head_dim), pos.reshape(-1, 1),
                             slots[:, None].expand(B, T).flatten(), self.kv_norm.eps, [])
            return old
        for t in range(pos.shape[1]):
            one = slice(t, t + 1)
            ops.decode_cache(kv[:, one], self.kv_norm.weight, self.win_kv, self.rope.table(kv.device, self.head_dim),
                             pos[:, one], slots, self.kv_norm.eps, [comp.step(a[:, one], z[:, one]) for comp, (a, z) in comps])
        return old

    def _decode(self, q, pos, slots, entries, selected, old=None):
        """Once `decode_cache` has written the tokens: T=1, the ring then holds exactly the window
        (pos-W, pos]; a verify's T tokens are B·T decode rows, with the overwritten rows `old`
        (ops/attention.py). Without a selection the attention finds the visible entries from the
        position and ratio (no mask to build). The op also takes q's per-head norm and RoPE, and the
        output's inverse RoPE (no launches of their own)."""
        B, T = q.shape[:2]
        rows = slots if T == 1 else slots[:, None].expand(B, T).flatten()
        mask = None if selected is None else selected.flatten(0, 1)
        o = ops.decode_attention(q.flatten(0, 1), self.win_kv, rows, pos.flatten(), entries, mask, self.attn_sink,
                                 self.scale, self.ratio, self.rope.table(q.device, self.head_dim), self.eps, old)
        return o.unflatten(0, (B, T))

    def _window(self, kv: torch.Tensor, pos: torch.Tensor, slots: torch.Tensor):
        """Keys = ring (positions < start) + this chunk; query t sees positions (t-W, t]."""
        W, T = self.window, kv.shape[1]
        last = pos[:, :1] - 1
        ring_pos = last - (last - _arange(W, kv)) % W  # position each ring row holds (< 0: empty)
        keys = torch.cat([self.win_kv[slots], kv], 1)
        kpos = torch.cat([ring_pos, pos], 1)[:, None, :]
        mask = (kpos >= 0) & (kpos <= pos[..., None]) & (kpos > pos[..., None] - W)
        n = min(T, W)
        write_rows(slots, (self.win_kv, pos[:, -n:] % W, kv[:, -n:]))
        return keys, mask


class Block(nn.Module):
    """Attention + MoE, each wrapped by mHC (§2.2); h is [B, T, hc_mult, dim]."""

    def __init__(self, layer_id: int, args: ModelArgs):
        super().__init__()
        self.attn = Attention(layer_id, args)
        self.ffn = MoE(args, layer_id)
        self.attn_norm = RMSNorm(args.dim, args.norm_eps)
        self.ffn_norm = RMSNorm(args.dim, args.norm_eps)
        n, mix = args.hc_mult, (2 + args.hc_mult) * args.hc_mult
        self.hc = HyperConnection(n, args.hc_sinkhorn_iters, args.hc_eps, args.norm_eps)
        for part in ("attn", "ffn"):
            setattr(self, f"hc_{part}_fn", nn.Parameter(torch.zeros(mix, n * args.dim)))
            setattr(self, f"hc_{part}_base", nn.Parameter(torch.zeros(mix)))
            setattr(self, f"hc_{part}_scale", nn.Parameter(torch.ones(3)))

    def stack_weights(self) -> None:
        """Build the stacked weights now (expert stacks, fused projections): they check data
        pointers, which torch.compile cannot trace, so dsv4rt/compiled.py calls this first."""
        self.ffn.stacked_weights()
        self.attn.project.stack()

    def attn_pre(self) -> NextPre:
        return NextPre(self.hc_attn_fn, self.hc_attn_scale, self.hc_attn_base, self.attn_norm)

    def forward(self, h, ids, pos, slots, carry, nxt: NextPre, horizon: int | None = None, verify: bool = False):
        """h [B,T,n,d] -> (h', x', post', comb'). carry is the same from the block before: the attention's
        input, its post and its comb; None in the first block (computed here from h's projection). The
        outputs are those of the pre that reads h' next, whose weights are nxt (`layers/mhc.py`); horizon
        and verify as in `Attention.forward`."""
        if carry is None:
            carry = self.hc.pre(self.hc.project(h, self.hc_attn_fn), h, self.hc_attn_scale, self.hc_attn_base,
                                self.attn_norm)
        x, post, comb = carry
        ffn = NextPre(self.hc_ffn_fn, self.hc_ffn_scale, self.hc_ffn_base, self.ffn_norm)
        attn = self.attn(x, pos, slots, horizon, verify)
        h, x, post, comb = self.hc.post_pre(attn, h, post, comb, ffn, self.attn.wo_b.weight)
        return self.hc.post_pre(self.ffn(x, ids), h, post, comb, nxt)


class HeadMixin:
    """hc_head + final norm + vocab projection, shared by the model and each MTP block."""

    def _hc_head_params(self, args: ModelArgs) -> None:
        n = args.hc_mult
        self.hc_head_fn = nn.Parameter(torch.zeros(n, n * args.dim))
        self.hc_head_base = nn.Parameter(torch.zeros(n))
        self.hc_head_scale = nn.Parameter(torch.ones(1))

    def head_pre(self, norm: RMSNorm) -> NextPre:
        """The final collapse of the streams (no post, no Sinkhorn) and the last norm, as the last
        block's next pre: its post computes the head's input."""
        return NextPre(self.hc_head_fn, self.hc_head_scale, self.hc_head_base, norm)

    @staticmethod
    def _logits(y, head: nn.Linear, all_positions: bool) -> torch.Tensor:
        """y [B,T,d]: the collapsed, normed streams (the last block's `post_pre` made it)."""
        logits = ops.fp32_linear(y if all_positions else y[:, -1:], head.weight)
        return logits if all_positions else logits[:, 0]


class MTPBlock(HeadMixin, Block):
    """NextN draft layer (§2.8): mixes the next token's embedding with the main model's final
    streams, runs one SWA Block, and predicts the token after next through the shared head."""

    def __init__(self, layer_id: int, args: ModelArgs):
        super().__init__(layer_id, args)
        self.e_proj, self.h_proj = Linear(args.dim, args.dim), Linear(args.dim, args.dim)
        self.enorm, self.hnorm = RMSNorm(args.dim, args.norm_eps), RMSNorm(args.dim, args.norm_eps)
        self.norm = RMSNorm(args.dim, args.norm_eps)
        self._hc_head_params(args)

    def forward(self, emb, h_main, ids, pos, slots, verify: bool = False):
        x = self.e_proj(self.enorm(emb)).unsqueeze(2) + self.h_proj(self.hnorm(h_main))
        return super().forward(x, ids, pos, slots, None, self.head_pre(self.norm), None, verify)


class Transformer(HeadMixin, nn.Module):
    """V4 causal LM over per-slot decoding state (see the module docstring for the cache layout)."""

    def __init__(self, args: ModelArgs):
        super().__init__()
        self.args = args
        self.embed = nn.Embedding(args.vocab_size, args.dim)
        self.layers = nn.ModuleList(Block(i, args) for i in range(args.n_layers))
        self.norm = RMSNorm(args.dim, args.norm_eps)
        self.head = Linear(args.dim, args.vocab_size)
        self._hc_head_params(args)
        self.mtp = nn.ModuleList(MTPBlock(args.n_layers + i, args) for i in range(args.n_mtp_layers))
        self.num_slots = self.max_seq_len = 0
        self.compiled_decode = None  # compiled Block.forward and _logits for T=1 steps: dsv4rt/compiled.py

    def _cached(self):
        return [m for m in self.modules() if isinstance(m, CachedModule)]

    def cache_bytes_per_slot(self, max_seq_len: int) -> int:
        """Bytes of decoding state per slot (window rings, entries, indexer keys, compressor state)."""
        size = self.embed.weight.element_size()
        total = 0
        for mod in self._cached():
            for shape, dt in mod.cache_shapes(max_seq_len).values():
                total += torch.Size(shape).numel() * (torch.empty(0, dtype=dt).element_size() if dt else size)
        return total

    def allocate_cache(self, num_slots: int, max_seq_len: int) -> None:
        """(Re)allocate static per-slot buffers; all state is zero, i.e. every slot is empty.
        Positions fed to `forward` must stay below max_seq_len (not checked: that would be a host sync)."""
        w = self.embed.weight
        for mod in self._cached():
            mod.allocate(num_slots, max_seq_len, w.device, w.dtype)
        self.num_slots, self.max_seq_len = num_slots, max_seq_len

    def _positions(self, input_ids, start_pos):
        if self.num_slots == 0:
            raise RuntimeError("call allocate_cache(num_slots, max_seq_len) before forward")
        start = start_pos.to(input_ids.device)[:, None]
        if input_ids.shape[1] == 1:  # decode: a view, not two launches (arange and add) per step
            return start
        return start + _arange(input_ids.shape[1], input_ids)

    @torch.no_grad()
    def forward(self, input_ids: torch.Tensor, start_pos: torch.Tensor, slots: torch.Tensor,
                return_all_logits: bool = False, return_hidden: bool = False, horizon: int | None = None,
                verify: bool = False):
        """input_ids [B,T] continuing each slot at start_pos [B] (0 resets the slot).

        horizon: a bound the caller guarantees, start_pos + T <= horizon for every row (not checked: a
        host sync); the compressed-entry reads (indexer scores, masks, attention) then cover only the
        first horizon // ratio entries, so a step's work follows the live sequences, not the capacity.
        None: the capacity (max_seq_len). The engine passes buckets (`engine/cuda_graphs.horizon_for`).

        Returns fp32 logits [B,V] for the last position ([B,T,V] with return_all_logits); with
        return_hidden also the final residual streams [B,T,hc_mult,dim] that `mtp_forward` takes.
        verify: the T tokens are a speculative span (T ≤ the window and compressor rings), run as
        B·T decode rows over the decode kernels instead of the prefill path (`Attention.forward`).
        """
        pos = self._positions(input_ids, start_pos)
        # the n streams start equal: a stride-0 view (the first block's post writes h' anew), not a copy
        h = self.embed(input_ids).unsqueeze(2).expand(-1, -1, self.args.hc_mult, -1)
        compiled = self.compiled_decode if input_ids.shape[1] == 1 else None  # prefill stays eager: shapes vary
        block = compiled.block if compiled else Block.forward
        carry, nexts = None, [layer.attn_pre() for layer in self.layers[1:]] + [self.head_pre(self.norm)]
        for layer, nxt in zip(self.layers, nexts):
            out = block(layer, h, input_ids, pos, slots, carry, nxt, horizon, verify)
            h, carry = out[0], out[1:]  # (x', post', comb') of the next pre
        logits_fn = compiled.logits if compiled else HeadMixin._logits
        logits = logits_fn(carry[0], self.head, return_all_logits)
        return (logits, h) if return_hidden else logits

    @torch.no_grad()
    def mtp_forward(self, input_ids: torch.Tensor, hidden: torch.Tensor, start_pos: torch.Tensor,
                    slots: torch.Tensor, return_all_logits: bool = False, depth: int = 0,
                    return_hidden: bool = False, verify: bool = False):
        """MTP draft head.

        input_ids [B,T]: the tokens at positions start_pos+1 .. start_pos+T (shifted by one);
        hidden [B,T,hc_mult,dim]: the main model's final streams at positions start_pos .. +T-1
        (`forward(..., return_hidden=True)`); start_pos [B], slots [B] as in `forward` (the MTP layer
        keeps its own window cache per slot). Returns logits for the token after each input token;
        with return_hidden also the block's output streams [B,T,hc_mult,dim], which stand in for the
        main model's hidden at the next position when drafting a chain (engine/speculative.py).
        verify: as in `forward`.
        """
        logits, h = self.mtp_step(input_ids, hidden, start_pos, slots, return_all_logits, depth, verify)
        return (logits, h) if return_hidden else logits

    def mtp_step(self, input_ids, hidden, start_pos, slots, return_all_logits: bool = False, depth: int = 0,
                 verify: bool = False):
        """`mtp_forward` with autograd (distilling the draft head: dsv4rt/train_draft.py) -> (logits, streams)."""
        if not self.mtp:
            raise RuntimeError("this checkpoint has no MTP layer (num_nextn_predict_layers = 0)")
        pos = self._positions(input_ids, start_pos)
        block = self.mtp[depth]
        h, y, _, _ = block(self.embed(input_ids), hidden, input_ids, pos, slots, verify)
        return block._logits(y, self.head, return_all_logits), h
