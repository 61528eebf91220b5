"""Which drafted tokens a verify step keeps: greedy matching, or speculative (rejection) sampling.

The drafts are the MTP head's top-1 picks, so the draft distribution q is one-hot at each draft d.
Rejection sampling with a one-hot q (Leviathan et al. 2023, Chen et al. 2023) then reads: accept d
with probability p(d), where p is the target's distribution at that position after the request's
temperature / top-k / top-p; on rejection draw from the residual max(p - q, 0), i.e. p without d,
renormalised; after k accepted drafts draw the bonus token from p at the last position. Every
emitted token is thereby distributed exactly as the target's own sampling would draw it.
"""

from __future__ import annotations

import torch

from dsv4rt.engine.sampler import _filter, _logprobs
from dsv4rt.engine.sequence import SamplingParams


def _uniform(gen: torch.Generator | None, device) -> float:
    return float(torch.rand(1, generator=gen, device=device).item())


def _draw(probs: torch.Tensor, gen: torch.Generator | None) -> int:
    return int(torch.multinomial(probs, 1, generator=gen).item())


def sample_span(logits: torch.Tensor, drafts: list[int], params: SamplingParams,
                gen: torch.Generator | None) -> list[int]:
    """logits [k+1, V] of the target at the last token and its k drafts -> the emitted tokens: the
    accepted drafts then one token drawn by the target (1 .. k+1 tokens)."""
    probs = torch.softmax(torch.stack([_filter(row, params) for row in logits.float()]), -1)
    out: list[int] = []
    for i, d in enumerate(drafts):
        if _uniform(gen, probs.device) < float(probs[i, d]):
            out.append(d)
            continue
        residual = probs[i].clone()
        residual[d] = 0.0
        return out + [_draw(residual / residual.sum(), gen)]
    return out + [_draw(probs[len(drafts)], gen)]


def greedy_span(targets: list[int], drafts: list[int]) -> list[int]:
    """targets: the target's argmax at the last token and each draft (k+1) -> the drafts that match,
    then the target's token after them."""
    n = 0
    while n < len(drafts) and drafts[n] == targets[n]:
        n += 1
    return targets[: n + 1]


def accept(logits: torch.Tensor, drafts: torch.Tensor, params: list[SamplingParams], gens: list) -> list[list[int]]:
    """logits [B, k+1, V], drafts [B, k] -> each row's emitted tokens. One host copy for the greedy rows."""
    targets, drafted = logits.argmax(-1).tolist(), drafts.tolist()
    return [greedy_span(targets[b], drafted[b]) if p.greedy else sample_span(logits[b], drafted[b], p, gens[b])
            for b, p in enumerate(params)]


def span_logprobs(logits: torch.Tensor, tokens: list[int], params: SamplingParams) -> list:
    """The sampler's logprob entries of each emitted token, from the target's logits at its position."""
    if not params.logprobs:
        return [None] * len(tokens)
    return [_logprobs(logits[i].float(), t, params.top_logprobs) for i, t in enumerate(tokens)]
