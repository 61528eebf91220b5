"""MTP (EAGLE / DSpark, top-k 1): a decode cycle is `steps` draft passes plus one verify pass over
`draft tokens` per request, and yields the acceptance length in tokens.

The acceptance length is a parameter: by default a chain of `steps` drafts, each accepted with
probability p given the previous one (constants.yaml accept_per_token, from the cookbook's measured
2.73-2.96 for steps 3), i.e. 1 + p + ... + p^steps: 2.84 for steps 3 / draft 4 (low-latency) and
1.78 for steps 1 / draft 2 (balanced). `--accept-length` overrides it."""

from __future__ import annotations

from dsv4ctl.predict.attention import Entries
from dsv4ctl.predict.constants import K
from dsv4ctl.predict.decode import Cost, draft_pass, verify_pass
from dsv4ctl.predict.facts import Engine


def accept_length(e: Engine, k: K, override: float | None = None) -> float:
    """Tokens one cycle emits per request: 1 without MTP, else the parameter (at most draft tokens)."""
    if not e.lay.spec:
        return 1.0
    cap = float(e.lay.draft_tokens)
    if override is not None:
        return min(max(override, 1.0), cap)
    p = k.accept_per_token
    return min(sum(p**i for i in range(e.spec_steps + 1)), cap)


def cycle(e: Engine, k: K, batch: float, span: Entries, accept: float | None = None) -> tuple[Cost, float]:
    """(cost of one decode cycle on one GPU, tokens it emits per request)."""
    if not e.lay.spec:
        return verify_pass(e, k, batch, 1, span), 1.0
    drafts = draft_pass(e, k, batch).scaled(e.spec_steps)
    return verify_pass(e, k, batch, e.lay.draft_tokens, span) + drafts, accept_length(e, k, accept)
