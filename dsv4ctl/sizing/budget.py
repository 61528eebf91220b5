"""The per-GPU memory budget of a plan and the KV capacity it leaves.

SGLang's model: `--mem-fraction-static` × HBM is the static pool that must hold the weights, the
communication buffers and the KV cache; the remaining (1 − fraction) × HBM holds activations and
CUDA graphs. So the KV pool is `HBM·mfs − weights − buffers`, and the smallest usable fraction is
`(weights + buffers) / HBM`."""

from __future__ import annotations

from dataclasses import dataclass

from dsv4ctl.sizing.arch import ArchFacts
from dsv4ctl.sizing.buffers import deepep_low_latency_bytes, deepep_normal_bytes, megamoe_bytes
from dsv4ctl.sizing.kv import kv_bytes_per_seq
from dsv4ctl.sizing.layout import DEFAULT_CHUNKED_PREFILL, GIB, Layout
from dsv4ctl.sizing.weights import inventory

CUDA_GRAPH_BASE_GIB = 0.5  # private pool + per-graph workspaces seen in SGLang capture logs
REFERENCE_CONTEXT = 8192 + 1024  # the cookbook's 8k/1k benchmark shape, for the capacity line


def usable_gib(profile_hbm: float) -> float:
    """GiB the static pool is a fraction of. Profiles carry the vendor's figure (H200: 141, the GB
    number); counting it as GB (× 1e9 / 2^30, about 7% less) folds in the CUDA context, NCCL/NVSHMEM
    heaps and allocator slack, and reproduces the measured H200 Pro-FP8 DPA16 minimum fraction
    (0.9113, InferenceX#2128; recipes §7 #4) where raw GiB would predict 0.85."""
    return profile_hbm * 1e9 / GIB


@dataclass(frozen=True)
class MemoryBudget:
    hbm_gib: float
    mem_fraction: float
    mem_fraction_is_default: bool  # unset in the plan: SGLang picks it, the model assumes 0.874
    weights_gib: float
    buffers_gib: float
    kv_pool_gib: float
    activations_gib: float
    cuda_graphs_gib: float
    free_gib: float
    min_mem_fraction: float
    seq_gib_at_context: float  # KV + state of one request at `context`
    context: int
    max_requests_at_context: int
    max_context_at_running: int  # per request, with the plan's running requests per rank
    running_per_rank: int

    def rows(self) -> list[tuple[str, float]]:
        return [("weights", self.weights_gib), ("KV pool", self.kv_pool_gib),
                ("activations", self.activations_gib), ("CUDA graphs", self.cuda_graphs_gib),
                ("buffers (DeepEP/MegaMoE)", self.buffers_gib), ("free", self.free_gib)]


def weights_bytes(a: ArchFacts, lay: Layout) -> float:
    per = inventory(a, lay.expert_format, with_mtp=lay.spec).per_gpu(ep=max(lay.tp, lay.ep), attn_tp=lay.attn_tp)
    return sum(per.values())


def buffer_bytes(a: ArchFacts, lay: Layout) -> float:
    ranks = max(lay.ep, lay.tp)
    if lay.a2a == "deepep":  # `auto` mode allocates both the normal and the low-latency buffers
        return deepep_normal_bytes(a, ranks, lay.deepep_sms) + deepep_low_latency_bytes(a, lay.dispatch_tokens)
    if lay.a2a == "megamoe":
        return megamoe_bytes(a, ranks, lay.megamoe_tokens)
    return 0.0


def _per_token_activation(a: ArchFacts, lay: Layout) -> float:
    """Bytes live per token at the peak of a layer: the hc_mult BF16 residual streams (in, out, mix
    copies), the local query/output heads, and the routed tokens' SwiGLU intermediates."""
    streams = 4 * a.hc * a.hidden * 2
    heads = 3 * (a.heads // lay.attn_tp) * a.head_dim * 2
    moe = a.topk * 2 * a.inter * 2
    return streams + heads + moe


def activation_bytes(a: ArchFacts, lay: Layout) -> float:
    chunk = lay.chunked_prefill if lay.chunked_prefill and lay.chunked_prefill > 0 else DEFAULT_CHUNKED_PREFILL
    return chunk / lay.attn_dp_size * _per_token_activation(a, lay)


def cuda_graph_bytes(a: ArchFacts, lay: Layout) -> float:
    bs = lay.cuda_graph_max_bs if lay.cuda_graph_max_bs is not None else min(lay.running_per_rank, 256)
    return CUDA_GRAPH_BASE_GIB * GIB + bs * lay.draft_tokens * _per_token_activation(a, lay)


def max_context_for(a: ArchFacts, lay: Layout, pool: float, requests: int) -> int:
    """Longest context each of `requests` sequences can have in `pool` bytes."""
    fixed = kv_bytes_per_seq(a, 0, lay.kv_dtype, lay.spec)
    slope = kv_bytes_per_seq(a, 1, lay.kv_dtype, lay.spec) - fixed
    per_seq = pool / max(requests, 1)
    return max(int((per_seq - fixed) / slope), 0) if per_seq > fixed else 0


def memory_budget(a: ArchFacts, lay: Layout, hbm_gib: float) -> MemoryBudget:
    hbm = hbm_gib * GIB
    weights, buffers = weights_bytes(a, lay), buffer_bytes(a, lay)
    pool = hbm * lay.mem_fraction - weights - buffers
    acts, graphs = activation_bytes(a, lay), cuda_graph_bytes(a, lay)
    context = min(lay.context_length or REFERENCE_CONTEXT, a.max_pos)
    seq = kv_bytes_per_seq(a, context, lay.kv_dtype, lay.spec)
    return MemoryBudget(
        hbm_gib=hbm_gib, mem_fraction=lay.mem_fraction, mem_fraction_is_default=not lay.mem_fraction_set,
        weights_gib=weights / GIB, buffers_gib=buffers / GIB, kv_pool_gib=pool / GIB,
        activations_gib=acts / GIB, cuda_graphs_gib=graphs / GIB,
        free_gib=(hbm * (1 - lay.mem_fraction) - acts - graphs) / GIB,
        min_mem_fraction=(weights + buffers) / hbm,
        seq_gib_at_context=seq / GIB, context=context,
        max_requests_at_context=max(int(pool // seq), 0),
        max_context_at_running=min(max_context_for(a, lay, pool, lay.running_per_rank), a.max_pos),
        running_per_rank=lay.running_per_rank,
    )
