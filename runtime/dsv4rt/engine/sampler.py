"""Sampler: greedy / temperature / top-k / top-p with per-request seeds, plus chosen-token logprobs.

Registered as the PyTorch reference of the kernel registry's `sampling` op (DESIGN.md §6); a faster
backend can register with a higher priority and the runner picks it up through `registry.get`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from dsv4rt.engine.sequence import SamplingParams
from dsv4rt.ops.registry import register


@dataclass
class SampleResult:
    token_ids: list[int]
    logprobs: list[tuple[float, list[tuple[int, float]]] | None]  # (chosen, [(id, lp)] top-n)


def _filter(logits: torch.Tensor, p: SamplingParams) -> torch.Tensor:
    """Temperature, then top-k, then top-p (nucleus) on one row [V]."""
    logits = logits / p.temperature
    if p.top_k > 0 and p.top_k < logits.numel():
        kth = torch.topk(logits, p.top_k).values[-1]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if p.top_p < 1.0:
        sorted_logits, idx = torch.sort(logits, descending=True)
        probs = torch.softmax(sorted_logits, -1)
        # drop a token when the mass before it already reaches top_p (the first token always stays)
        drop = (torch.cumsum(probs, -1) - probs) >= p.top_p
        logits = logits.scatter(0, idx, sorted_logits.masked_fill(drop, float("-inf")))
    return logits


def _draw(logits: torch.Tensor, p: SamplingParams, gen: torch.Generator | None) -> int:
    probs = torch.softmax(_filter(logits, p), -1)
    return int(torch.multinomial(probs, 1, generator=gen).item())


def _logprobs(row: torch.Tensor, token: int, n: int) -> tuple[float, list[tuple[int, float]]]:
    lp = torch.log_softmax(row, -1)
    top = torch.topk(lp, n) if n else None
    pairs = list(zip(top.indices.tolist(), top.values.tolist())) if top is not None else []
    return float(lp[token]), pairs


@register("sampling", backend="reference", priority=0)
def sample(logits: torch.Tensor, params: list[SamplingParams], generators: list) -> SampleResult:
    """logits: [B, V] float; one SamplingParams and one torch.Generator (or None) per row."""
    logits = logits.float()
    tokens = logits.argmax(-1).tolist()  # greedy rows keep this
    for i, p in enumerate(params):
        if not p.greedy:
            tokens[i] = _draw(logits[i], p, generators[i])
    lps = [_logprobs(logits[i], tokens[i], p.top_logprobs) if p.logprobs else None for i, p in enumerate(params)]
    return SampleResult(tokens, lps)


def make_generator(seed: int | None, device: str | torch.device = "cpu") -> torch.Generator | None:
    """A private RNG per seeded request so its samples do not depend on the batch it lands in."""
    if seed is None:
        return None
    gen = torch.Generator(device=device)
    gen.manual_seed(seed)
    return gen
