"""Per-row completion counts for kernels whose row ends with its last program (an atomic count).

A program counts itself in when its part of the row is stored; the one that finds every other part
done finishes the row (triton_cache's entries, triton_route's selection) and resets the count, so
the counts are zero between launches and a CUDA graph can replay them.
"""

from __future__ import annotations

import torch

_KEPT: dict[tuple[str, torch.device], list[torch.Tensor]] = {}


def counts(owner: str, device: torch.device, n: int) -> torch.Tensor:
    """At least n int32 zeros for `owner`'s kernel. Made on the first call (the warm-up before a CUDA
    graph is captured, at the largest batch first), then kept; a larger n makes a larger buffer, and
    the smaller stays alive for the graphs captured with it."""
    have = _KEPT.setdefault((owner, torch.device(device)), [])
    if not have or have[-1].numel() < n:
        have.append(torch.zeros(max(n, 512), dtype=torch.int32, device=device))
    return have[-1]
