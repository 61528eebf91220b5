"""Rollback of speculative cache writes: an undo log over the ring buffers a span of tokens overwrites.

A verify forward writes K consecutive positions p .. p+K-1 of each row's slot (the last token and
its drafts); only the first `keep` of them are accepted. What the rejected positions wrote must go:

- the window ring `win_kv` [S, W, hd], row q % W, and each compressor's rings `ring_kv`/`ring_sc`
  [S, C, R] (channel-major), column q % R: a rejected position q overwrote position q - W (q - R),
  which the next tokens still read. These are saved before the forward (K rows per buffer and row of
  the batch: `save`) and put back for the rejected positions only (`restore`).
- compressed entries (`entries`, and the indexer's keys, which are its compressor's entries): a
  block that ends at a rejected position wrote entry q // m. Nothing needs undoing there: an entry
  is visible only to queries at or after its block's end (the attention and the indexer mask by
  position), and the block's real end rewrites it before any query can see it.

So a rollback copies K rows of each ring back, however many blocks ended inside the span: one
fixed-shape scatter a ring, whose accepted positions are sent to a scratch slot no sequence owns
(`dump_slot`), so a rollback has no host sync, reads nothing back and can sit in a CUDA graph. The
ring indices are computed once a ring size, not once a buffer. K must not exceed any ring (W, R), or
two positions of a span would share a row.
"""

from __future__ import annotations

import torch

from dsv4rt.model import Attention, Compressor


def ring_buffers(module: torch.nn.Module) -> list[tuple[torch.Tensor, int]]:
    """(buffer, axis of its ring) for every ring under `module`: window rings on axis 1, the
    channel-major compressor rings on axis 2."""
    out = []
    for mod in module.modules():
        if isinstance(mod, Attention):
            out.append((mod.win_kv, 1))
        elif isinstance(mod, Compressor):
            out += [(mod.ring_kv, 2), (mod.ring_sc, 2)]
    return out


def _rows(buf: torch.Tensor, axis: int, slots: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """buf's ring rows idx [B, K] of slots [B] -> [B, K, C]."""
    return buf[slots[:, None], idx] if axis == 1 else buf[slots[:, None], :, idx]


def _write(buf: torch.Tensor, axis: int, slots: torch.Tensor, idx: torch.Tensor, val: torch.Tensor) -> None:
    """buf's ring rows idx [B, K] of slots [B, K] = val [B, K, C]."""
    if axis == 1:
        buf[slots, idx] = val
    else:
        buf[slots, :, idx] = val


class UndoLog:
    """Saves the ring rows a span of `span` positions will overwrite and restores the rejected ones.
    Built once the cache is allocated (it holds the buffers themselves); `dump_slot` is a scratch
    slot (the runner's, after its last) that takes the accepted positions' writes."""

    def __init__(self, module: torch.nn.Module, span: int, dump_slot: int):
        self.buffers, self.span, self.dump = ring_buffers(module), span, dump_slot
        sizes = [buf.shape[axis] for buf, axis in self.buffers]
        if sizes and span > min(sizes):
            raise ValueError(f"a speculative span of {span} tokens exceeds the smallest cache ring ({min(sizes)} rows)")
        self.saved: list[torch.Tensor] = []
        self.slots, self.idx = None, {}

    def save(self, slots: torch.Tensor, start: torch.Tensor) -> None:
        """Before a forward that writes positions start .. start+span-1 of slots [B]."""
        pos = start[:, None] + torch.arange(self.span, device=start.device)
        self.slots, self.idx = slots, {n: pos % n for n in {buf.shape[axis] for buf, axis in self.buffers}}
        self.saved = [_rows(buf, axis, slots, self.idx[buf.shape[axis]]) for buf, axis in self.buffers]

    def restore(self, keep: torch.Tensor, rows: torch.Tensor | None = None) -> None:
        """Undo the positions past the first keep [B] of the saved span (rows: which of the saved
        batch rows, all by default; the others are left alone)."""
        slots, idx, saved = self.slots, self.idx, self.saved
        if rows is not None:
            slots, idx, saved = slots[rows], {n: i[rows] for n, i in idx.items()}, [s[rows] for s in saved]
        rejected = torch.arange(self.span, device=keep.device) >= keep[:, None]
        target = torch.where(rejected, slots[:, None], self.dump)  # [B, K]: accepted positions write the scratch slot
        for (buf, axis), old in zip(self.buffers, saved):
            _write(buf, axis, target, idx[buf.shape[axis]], old)
