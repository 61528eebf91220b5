"""Prefill of one request, as engine time: the prompt's FLOPs by attention type plus the weight reads
of every chunk, collectives and per-chunk overhead.

The prompt is cut into chunks of `--chunked-prefill-size` tokens (split over the DP-attention ranks,
sglang-v4-recipes.md §4 item 6). DP-attention ranks prefill different requests side by side and a TP
group shares one request, so in both cases the engine's GPUs split the work evenly; the time below
is the engine's busy time per request (its inverse is the prefill rate)."""

from __future__ import annotations

import math

from dataclasses import dataclass

from dsv4ctl.predict.attention import attn_flops, dense_params, entries, expert_params
from dsv4ctl.predict.constants import K
from dsv4ctl.predict.decode import Cost, _compute, layer_comm, overhead
from dsv4ctl.predict.facts import Engine


def chunk_tokens(e: Engine, k: K) -> float:
    """Tokens of one chunk on one attention group."""
    cpf = e.lay.chunked_prefill
    total = float(cpf) if cpf and cpf > 0 else k.default_chunk
    return max(total / e.attn_groups, 1.0)


@dataclass(frozen=True)
class Prefill:
    gpu: Cost  # engine time per request while every attention group is busy
    groups: int  # attention groups: each prefills its own requests
    expert_s: float  # the routed experts' share of gpu: spread over all EP ranks even for one prompt

    @property
    def seconds(self) -> float:
        """Engine time per request when all groups are busy (the inverse of the prefill rate)."""
        return self.gpu.seconds

    def engine_s(self, running: float) -> float:
        """Engine time per request when `running` requests share the groups (fewer leave some idle)."""
        return self.gpu.seconds * self.groups / max(min(running, self.groups), 1)

    @property
    def latency_s(self) -> float:
        """Wall time of one prompt: its own group does its attention and dense work, the experts run
        on every EP rank."""
        own = max(self.gpu.seconds - self.expert_s, 0.0)
        return own * self.groups + self.expert_s

    @property
    def bound(self) -> str:
        return self.gpu.bound


def prefill(e: Engine, k: K, isl: int) -> Prefill:
    experts = _compute(e, k, 0.0, 2 * expert_params(e.arch) * e.arch.topk * e.arch.layers * isl / e.gpus, 0.0)
    return Prefill(prefill_cost(e, k, isl), e.attn_groups, experts)


def prefill_cost(e: Engine, k: K, isl: int) -> Cost:
    a, g = e.arch, e.gpus
    chunk = min(chunk_tokens(e, k), float(isl))
    chunks = math.ceil(isl / chunk)
    span = entries(a, e.index_topk, 0.0, float(isl))
    dense, head = dense_params(a)
    bw = e.hw.hbm_tbps * 1e12 * k.hbm_eff
    compute = _compute(e, k, 2 * (isl * dense + head) / g, 2 * expert_params(a) * a.topk * a.layers * isl / g,
                       isl * attn_flops(a, span) / g)
    weights = sum(e.weights.values()) * chunks / e.attn_groups
    comm = chunks * a.layers * layer_comm(e, k, chunk, chunk * e.attn_groups) / e.attn_groups
    return Cost(memory=weights / bw, compute=compute, communication=comm,
                overhead=chunks * overhead(e, k, a.layers, math.inf, step=True) / e.attn_groups)
