"""FakeModel: a tiny deterministic stand-in obeying the Transformer's cache/forward interface.

Logits depend on the slot's whole token history and positions, and `forward` refuses a start_pos
that does not continue the slot (or a row past the step's `horizon`), so tests catch slot mix-ups,
lost chunks and wrong positions in milliseconds without loading a checkpoint.
"""

from __future__ import annotations

import time

import torch

_MOD = 2**31 - 1


class FakeModel(torch.nn.Module):
    def __init__(self, vocab_size: int = 64, bytes_per_token: int = 16, step_delay_s: float = 0.0):
        super().__init__()
        self.vocab_size, self.bytes_per_token = vocab_size, bytes_per_token
        self.step_delay_s = step_delay_s  # makes requests pile up in queue / disconnect tests
        self.calls: list[tuple[int, int]] = []  # (B, T) per forward, for batching assertions
        self.horizons: list[int | None] = []  # the horizon of each forward

    def cache_bytes_per_slot(self, max_seq_len: int) -> int:
        return self.bytes_per_token * max_seq_len

    def allocate_cache(self, num_slots: int, max_seq_len: int) -> None:
        self.max_seq_len = max_seq_len
        self.hist = [0] * num_slots
        self.pos = [0] * num_slots

    def _logits(self, h: int) -> torch.Tensor:
        return torch.randn(self.vocab_size, generator=torch.Generator().manual_seed(h))

    def _row(self, ids: list[int], start: int, slot: int, all_logits: bool) -> torch.Tensor:
        if start != 0 and self.pos[slot] != start:
            raise RuntimeError(f"slot {slot} holds {self.pos[slot]} tokens, asked to continue at {start}")
        if start + len(ids) > self.max_seq_len:
            raise RuntimeError(f"slot {slot} overflows max_seq_len {self.max_seq_len}")
        h, rows = (self.hist[slot] if start else 0), []
        for t, tok in enumerate(ids):
            h = (h * 1000003 + tok * 31 + start + t + 1) % _MOD
            rows.append(self._logits(h))
        self.hist[slot], self.pos[slot] = h, start + len(ids)
        return torch.stack(rows) if all_logits else rows[-1]

    def forward(self, input_ids, start_pos, slots, return_all_logits: bool = False,
                horizon: int | None = None) -> torch.Tensor:
        self.calls.append(tuple(input_ids.shape))
        self.horizons.append(horizon)
        time.sleep(self.step_delay_s)
        end = int((start_pos + input_ids.shape[1]).max())
        if horizon is not None and end > horizon:
            raise RuntimeError(f"a row reaches position {end}, past the step's horizon {horizon}")
        rows = [
            self._row(input_ids[b].tolist(), int(start_pos[b]), int(slots[b]), return_all_logits)
            for b in range(input_ids.shape[0])
        ]
        return torch.stack(rows)


def greedy_reference(model, prompt: list[int], max_tokens: int, eos: tuple[int, ...] = ()) -> list[int]:
    """Plain one-request greedy loop on slot 0: what every batched/chunked run must reproduce."""
    model.allocate_cache(1, len(prompt) + max_tokens + 1)
    slot = torch.tensor([0])
    logits = model.forward(torch.tensor([prompt]), torch.tensor([0]), slot)
    out: list[int] = []
    while True:
        out.append(int(logits[0].argmax()))
        if len(out) >= max_tokens or out[-1] in eos:
            return out
        pos = torch.tensor([len(prompt) + len(out) - 1])
        logits = model.forward(torch.tensor([[out[-1]]]), pos, slot)


class ScriptedModel(FakeModel):
    """Answers every request with a fixed token script, then `end_id` (EOS) forever.

    The script position is the number of tokens fed since the last `marker_id` (the
    `<｜Assistant｜>` token that opens the reply) minus `skip` (the `<think>` / `</think>` opener),
    so chat-path tests get exact reasoning / DSML tool-call text from the real tokenizer.
    """

    def __init__(self, script: list[int], marker_id: int, end_id: int, vocab_size: int, skip: int = 1):
        super().__init__(vocab_size)
        self.script, self.marker_id, self.end_id, self.skip = script, marker_id, end_id, skip

    def allocate_cache(self, num_slots: int, max_seq_len: int) -> None:
        super().allocate_cache(num_slots, max_seq_len)
        self.fed: list[list[int]] = [[] for _ in range(num_slots)]

    def _row(self, ids, start, slot, all_logits):
        self.fed[slot] = self.fed[slot][:start] + ids
        hist = self.fed[slot]
        k = len(hist) - 1 - max((i for i, t in enumerate(hist) if t == self.marker_id), default=0) - self.skip
        nxt = self.script[k] if 0 <= k < len(self.script) else self.end_id
        logits = torch.zeros(self.vocab_size)
        logits[nxt] = 30.0
        return logits.expand(len(ids), -1) if all_logits else logits
