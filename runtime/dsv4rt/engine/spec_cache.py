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

So a rollback copies K rows of each ring back, however many blocks ended inside the span; the
scatters are fixed-shape (a `where` over the K rows), so a rollback has no host sync and can sit in a
CUDA graph. K must not exceed any ring (W, R), or two positions of a span would share a row.
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
    if axis == 1:
        buf[slots[:, None], idx] = val
    else:
        buf[slots[:, None], :, idx] = val


class UndoLog:
    """Saves the ring rows a span of `span` positions will overwrite and restores the rejected ones.
    Built once the cache is allocated (it holds the buffers themselves)."""

    def __init__(self, module: torch.nn.Module, span: int):
        self.buffers, self.span = ring_buffers(module), span
        sizes = [buf.shape[axis] for buf, axis in self.buffers]
        if sizes and span > min(sizes):
            raise ValueError(f"a speculative span of {span} tokens exceeds the smallest cache ring ({min(sizes)} rows)")
        self.saved: list[torch.Tensor] = []
        self.slots = self.start = None

    def _index(self, start: torch.Tensor, size: int) -> torch.Tensor:
        return (start[:, None] + torch.arange(self.span, device=start.device)) % size

    def save(self, slots: torch.Tensor, start: torch.Tensor) -> None:
        """Before a forward that writes positions start .. start+span-1 of slots [B]."""
        self.slots, self.start = slots, start
        self.saved = [_rows(buf, axis, slots, self._index(start, buf.shape[axis])) for buf, axis in self.buffers]

    def restore(self, keep: torch.Tensor, rows: torch.Tensor | None = None) -> None:
        """Undo the positions past the first keep [B] of the saved span (rows: which of the saved
        batch rows, all by default; the others are left alone)."""
        slots, start, saved = self.slots, self.start, self.saved
        if rows is not None:
            slots, start, saved = slots[rows], start[rows], [s[rows] for s in saved]
        rejected = (torch.arange(self.span, device=keep.device) >= keep[:, None])[..., None]
        for (buf, axis), old in zip(self.buffers, saved):
            idx = self._index(start, buf.shape[axis])
            _write(buf, axis, slots, idx, torch.where(rejected, old, _rows(buf, axis, slots, idx)))
