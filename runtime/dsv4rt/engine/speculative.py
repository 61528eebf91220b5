"""Speculative decoding with the checkpoint's MTP layer: EAGLE-style chain drafts, one verify forward.

One round for a batch of decoding rows, each at position p with its last sampled token x:
    draft   d_1 is ready (the MTP's pick from the round before, or from the prompt's last chunk);
            d_2 .. d_k chain through the MTP layer, each step feeding the MTP's own output streams as
            the hidden of the next position (top-1, k = spec_steps);
    verify  the target runs once over [x, d_1 .. d_k] at p .. p+k (T = k+1), decode-shaped: B·(k+1)
            rows of a decode step through the decode kernels, each row over the cache plus the span's
            earlier tokens (model.py `Transformer.forward(verify=True)`), and keeps the longest
            matching prefix plus its own next token (spec_sampling.accept), 1 .. k+1 tokens a row;
    rollback the cache rows the rejected positions wrote go back (spec_cache.UndoLog), per row;
    extend  the MTP runs over the accepted positions with the target's real hidden states (T = k+1,
            decode-shaped too, rows padded past their acceptance, then rolled back) and gives the
            next round's d_1.
The MTP's cache at position q holds (hidden of q, token of q+1), so prefill chunks feed it too
(`prefill`). Rows with different acceptance share every call: only the host-side token lists differ.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from dsv4rt.engine.cuda_graphs import horizon_for
from dsv4rt.engine.spec_cache import UndoLog
from dsv4rt.engine.spec_sampling import accept, span_logprobs


@dataclass
class SpecStats:
    """Acceptance counters over all verify steps (read by /metrics and the tests)."""

    steps: int
    verify_steps: int = 0
    emitted: int = 0  # tokens the verify steps produced, before any request-end cut
    accepted: list[int] = field(default_factory=list)  # accepted[i]: steps whose draft i+1 was accepted

    def __post_init__(self) -> None:
        self.accepted = [0] * self.steps

    def record(self, n_tokens: int) -> None:
        self.verify_steps += 1
        self.emitted += n_tokens
        for i in range(n_tokens - 1):
            self.accepted[i] += 1

    @property
    def accept_length(self) -> float:
        """Mean tokens per verify step (1 .. steps + 1)."""
        return self.emitted / self.verify_steps if self.verify_steps else 0.0

    def acceptance_rates(self) -> list[float]:
        """Per draft position: the share of verify steps that accepted it."""
        return [a / self.verify_steps if self.verify_steps else 0.0 for a in self.accepted]


class SpecDecoder:
    """Draft / verify / rollback / extend over the model's per-slot cache (see the module docstring).
    The cache must be allocated with k+1 positions of headroom past the context length: a verify
    near the end writes up to k positions that are never emitted. `propose` and `settle` are the
    device-only halves of a round (no host sync: CUDA graphs capture them, engine/spec_graphs.py);
    `decode` runs a round with the host's acceptance between them."""

    def __init__(self, model, steps: int, dump_slot: int):
        if not len(model.mtp):
            raise ValueError("speculative decoding needs the checkpoint's MTP layer; this one has none")
        self.model, self.steps, self.span, self.dump_slot = model, steps, steps + 1, dump_slot
        w = model.embed.weight
        self.draft = torch.zeros(model.num_slots, dtype=torch.long, device=w.device)  # next round's d_1
        self.hidden = torch.zeros(model.num_slots, model.args.hc_mult, model.args.dim, dtype=w.dtype, device=w.device)
        self.undo = self.undo_logs()
        self.stats = SpecStats(steps)
        self.graphs = None  # SpecGraphs on CUDA (engine/spec_graphs.py), set by the runner
        self._last: tuple[tuple[UndoLog, UndoLog], dict[int, int]] | None = None  # for `truncate`

    def undo_logs(self) -> tuple[UndoLog, UndoLog]:
        """(target's, MTP's) undo logs over the cache as allocated now."""
        return UndoLog(self.model.layers, self.span, self.dump_slot), UndoLog(self.model.mtp, self.span, self.dump_slot)

    def prefill(self, ids: torch.Tensor, nxt: torch.Tensor, hidden: torch.Tensor, start: torch.Tensor,
                slots: torch.Tensor) -> None:
        """The MTP over a prompt chunk: ids [B,T] at start [B], nxt [B] the token after the chunk (the
        prompt's next, or the sampled one after the last chunk), hidden [B,T,n,d] the target's. Stores
        each row's first draft and the MTP's streams (used when the row's prompt is done)."""
        shifted = torch.cat([ids[:, 1:], nxt[:, None]], 1)
        logits, h = self.model.mtp_forward(shifted, hidden, start, slots, return_hidden=True)
        self.draft[slots], self.hidden[slots] = logits.argmax(-1), h[:, -1]

    def propose(self, last, start, slots, undo, horizon: int | None = None):
        """Draft the chain and verify it -> ([x, d_1 .. d_k] [B,k+1], target logits [B,k+1,V], its
        streams). d_1 from the last round; d_2.. through the MTP at p .. p+k-2. horizon: the verify's
        (`Transformer.forward`), > every start + k."""
        main, mtp = undo
        mtp.save(slots, start)
        ids = self._chain(last, start, slots)
        main.save(slots, start)
        logits, hidden = self.model(ids, start, slots, return_all_logits=True, return_hidden=True, horizon=horizon,
                                    verify=True)
        return ids, logits, hidden

    def _chain(self, last, start, slots) -> torch.Tensor:
        tokens, h = [last, self.draft[slots]], self.hidden[slots][:, None]
        for i in range(self.steps - 1):
            logits, h = self.model.mtp_forward(tokens[-1][:, None], h, start + i, slots, return_hidden=True)
            tokens.append(logits.argmax(-1))
        return torch.stack(tokens, 1)

    def settle(self, ext, hidden, start, slots, keep, undo) -> None:
        """Roll back past keep [B] and run the MTP over the kept positions with the target's hidden:
        ext [B,k+1] the kept tokens after each position, padded; gives the next round's d_1."""
        main, mtp = undo
        main.restore(keep)
        logits, h = self.model.mtp_forward(ext, hidden, start, slots, return_all_logits=True, return_hidden=True,
                                           verify=True)
        row = torch.arange(ext.shape[0], device=slots.device)
        self.draft[slots], self.hidden[slots] = logits[row, keep - 1].argmax(-1), h[row, keep - 1]
        mtp.restore(keep)

    def decode(self, seqs, gens: list, device) -> list[list[tuple[int, object]]]:
        """One round for decoding `seqs` -> each row's emitted (token, logprob entry) pairs, in order."""
        as_tensor = lambda xs: torch.tensor(xs, dtype=torch.long, device=device)  # noqa: E731
        slots, start = as_tensor([s.slot for s in seqs]), as_tensor([s.num_computed for s in seqs])
        last = as_tensor([s.output_ids[-1] for s in seqs])
        horizon = horizon_for(max(s.num_computed for s in seqs) + self.span, self.model.max_seq_len)
        graphs = self.graphs if self.graphs is not None and self.graphs.size_for(len(seqs)) else None
        if graphs is not None:
            (ids, logits, hidden), undo = graphs.propose(last, start, slots, horizon)
        else:
            (ids, logits, hidden), undo = self.propose(last, start, slots, self.undo, horizon), self.undo
        spans = accept(logits, ids[:, 1:], [s.params for s in seqs], gens)
        keep = as_tensor([len(s) for s in spans])
        ext = as_tensor([s + s[-1:] * (self.span - len(s)) for s in spans])
        if graphs is not None:
            graphs.settle(ext, keep)
        else:
            self.settle(ext, hidden, start, slots, keep, undo)
        self._last = (undo, {s.seq_id: i for i, s in enumerate(seqs)})
        for s, span in zip(seqs, spans):
            s.spec_verify_ct += 1
            self.stats.record(len(span))
        return [list(zip(span, span_logprobs(logits[b], span, s.params)))
                for b, (s, span) in enumerate(zip(seqs, spans))]

    def truncate(self, seq_id: int, keep: int) -> None:
        """The request ended after `keep` tokens of its last round's span: undo the positions after them,
        so the slot's state is exactly its kept tokens (prefix reuse continues from there)."""
        undo, rows = self._last or ((), {})
        if seq_id not in rows:
            return
        dev = self.draft.device
        for log_ in undo:
            log_.restore(torch.tensor([keep], device=dev), torch.tensor([rows[seq_id]], device=dev))
