"""Greedy generation over one cache slot (the engine does batching; this is the reference loop)."""

from __future__ import annotations

import torch

from dsv4rt.model import Transformer


@torch.no_grad()
def greedy_generate(model: Transformer, prompt_ids: list[int], max_new_tokens: int, slot: int = 0,
                    eos_id: int | None = None) -> tuple[list[int], torch.Tensor]:
    """Prefill the prompt at position 0 of `slot`, then decode one token at a time.

    Returns (new token ids, fp32 logits [V] at the last position that was fed). Stops early at
    `eos_id` (included in the output). The cache must hold len(prompt) + max_new_tokens positions.
    """
    if not prompt_ids:
        raise ValueError("prompt_ids is empty")
    need = len(prompt_ids) + max_new_tokens
    if model.num_slots <= slot or model.max_seq_len < need:
        model.allocate_cache(max(slot + 1, model.num_slots), max(need, model.max_seq_len))
    dev = model.embed.weight.device
    slots = torch.tensor([slot], device=dev)
    logits = model(torch.tensor([prompt_ids], device=dev), torch.tensor([0], device=dev), slots)[0]
    out: list[int] = []
    for step in range(max_new_tokens):
        tok = int(logits.argmax())
        out.append(tok)
        if tok == eos_id or step == max_new_tokens - 1:
            break
        pos = torch.tensor([len(prompt_ids) + step], device=dev)
        logits = model(torch.tensor([[tok]], device=dev), pos, slots)[0]
    return out, logits
