"""Memory rules on top of the sizing model (v4-architecture.md §4, recipes §4.13, §7 #2–#4)."""

from __future__ import annotations

import math

from dsv4ctl.sizing.kv import kv_bytes_per_seq
from dsv4ctl.sizing.layout import GIB
from dsv4ctl.validate.registry import Hit, rule

MIN_KV_TOKENS = 4096  # a pool that cannot hold one 4K request is no pool


@rule("HARDWARE-UNKNOWN", "error", "no hardware profile with this name",
      fix="use one of the profiles under hardware_profiles/ (dsv4ctl profiles list)")
def hardware_unknown(ctx):
    """Every hardware-dependent rule and the memory model need the profile (HBM, compute
    capability, GPUs per node)."""
    return None if ctx.hw is not None else Hit(f"unknown hardware '{ctx.plan.hardware}'", {"hardware": ctx.plan.hardware})


@rule("VARIANT-UNKNOWN", "error", "no model variant with this name",
      fix="use flash or pro (or the runtime's tiny / mini)")
def variant_unknown(ctx):
    """The sizing model derives every number from the variant's config.json facts."""
    return None if ctx.arch is not None else Hit(f"unknown variant '{ctx.plan.variant}'", {"variant": ctx.plan.variant})


@rule("WEIGHTS-EXCEED-HBM", "error", "weights per GPU larger than the GPU",
      fix="shard wider (--tp/--ep {tp_ok} over more nodes) or use a smaller checkpoint format")
def weights_exceed(ctx):
    """Weights per GPU from the tensor inventory (routed experts / EP, attention and vocab / attention
    TP, the rest replicated) plus the DeepEP/MegaMoE buffers must fit in HBM before any KV cache."""
    b = ctx.budget
    if b is None or b.weights_gib + b.buffers_gib < b.hbm_gib:
        return None
    ratio = (b.weights_gib + b.buffers_gib) / b.hbm_gib
    tp_ok = ctx.keys.tp * 2 ** max(math.ceil(math.log2(ratio / 0.85)), 1)
    return Hit(f"weights {b.weights_gib:.1f} GiB + buffers {b.buffers_gib:.1f} GiB per GPU exceed "
               f"{b.hbm_gib:.0f} GiB HBM", {"weights_gib": round(b.weights_gib, 2),
               "buffers_gib": round(b.buffers_gib, 2), "hbm_gib": b.hbm_gib, "tp_ok": tp_ok})


@rule("KV-NO-ROOM", "error", "no room for the KV cache at this --mem-fraction-static",
      fix="raise --mem-fraction-static to ≥ {min_fraction}, or shard wider")
def kv_no_room(ctx):
    """SGLang's static pool is mem-fraction × HBM; after the weights and the communication buffers
    the rest is the KV cache. When it cannot hold one 4K-token request the server refuses to start
    ('Loaded weights leave no GPU memory for the KV cache under --mem-fraction-static=0.88', the
    H200 Pro-FP8 case, which needs ≈ 0.91)."""
    b, a = ctx.budget, ctx.arch
    if b is None or b.weights_gib + b.buffers_gib >= b.hbm_gib:
        return None
    one = kv_bytes_per_seq(a, MIN_KV_TOKENS, ctx.lay.kv_dtype, ctx.lay.spec) / GIB
    if b.kv_pool_gib >= one:
        return None
    need = math.ceil((b.weights_gib + b.buffers_gib + one) / b.hbm_gib * 1000) / 1000
    return Hit(f"KV pool {b.kv_pool_gib:.2f} GiB at --mem-fraction-static {b.mem_fraction} "
               f"(weights {b.weights_gib:.1f} + buffers {b.buffers_gib:.1f} of {b.hbm_gib:.0f} GiB)",
               {"kv_pool_gib": round(b.kv_pool_gib, 2), "mem_fraction": b.mem_fraction,
                "min_fraction": need, "weights_gib": round(b.weights_gib, 2), **ctx.where()})


@rule("KV-CAPACITY", "warning", "running requests × context length beyond the KV capacity",
      fix="lower --max-running-requests to {fits} or --context-length to {max_context}, or raise "
          "--mem-fraction-static")
def kv_capacity(ctx):
    """With --context-length set, every running request may grow to it; the KV pool holds only
    `pool / per-request KV` of them, and SGLang then queues or retracts requests instead of running
    --max-running-requests at once. Requests are counted per DP-attention rank (each rank owns its
    pool)."""
    b = ctx.budget
    if b is None or ctx.lay.context_length is None or b.kv_pool_gib <= 0:
        return None
    if b.max_requests_at_context >= b.running_per_rank:
        return None
    return Hit(f"KV pool holds {b.max_requests_at_context} requests of {b.context} tokens per rank, "
               f"plan runs {b.running_per_rank}", {"fits": b.max_requests_at_context * ctx.lay.attn_dp_size,
               "max_context": b.max_context_at_running, "context_length": b.context,
               "kv_pool_gib": round(b.kv_pool_gib, 2), "running_per_rank": b.running_per_rank})


@rule("CONTEXT-EXCEEDS-MODEL", "error", "context length above the model maximum",
      fix="set --context-length {max_pos} or less")
def context_exceeds(ctx):
    """V4's positions stop at max_position_embeddings (1M = 65536 × YaRN factor 16); longer
    contexts are rejected by the engine."""
    cl, a = ctx.lay.context_length, ctx.arch
    if cl is None or a is None or cl <= a.max_pos:
        return None
    return Hit(f"--context-length {cl} > {a.max_pos}", {"context_length": cl, "max_pos": a.max_pos})


@rule("GRAPH-MEMORY", "warning", "activations and CUDA graphs exceed the memory outside the static pool",
      fix="lower --mem-fraction-static to ≤ {mfs_ok}, --cuda-graph-max-bs or --chunked-prefill-size")
def graph_memory(ctx):
    """(1 − mem-fraction) × HBM must hold the prefill activations of one chunk and the CUDA graphs;
    otherwise the server OOMs while capturing graphs (the GB300 Pro PD decode failure with cg 512)."""
    b = ctx.budget
    if b is None or b.free_gib >= 0:
        return None
    mfs_ok = math.floor((1 - (b.activations_gib + b.cuda_graphs_gib) / b.hbm_gib) * 1000) / 1000
    return Hit(f"activations {b.activations_gib:.1f} + graphs {b.cuda_graphs_gib:.1f} GiB > "
               f"{(1 - b.mem_fraction) * b.hbm_gib:.1f} GiB left by --mem-fraction-static {b.mem_fraction}",
               {"mfs_ok": mfs_ok, "activations_gib": round(b.activations_gib, 2), **ctx.where()})


@rule("KV-CONCURRENCY-LOW", "info", "fewer 8k/1k requests fit than the plan runs",
      fix="expect at most {fits} concurrent 9K-token requests; raise --mem-fraction-static or shard wider for more")
def kv_concurrency(ctx):
    """Without --context-length the engine admits requests until the pool is full; at the
    cookbook's 8k-in/1k-out benchmark shape the pool may hold fewer requests than
    --max-running-requests (the H200 Pro FP4 TP8 cell 'fits only ~15 concurrent requests'), so the
    batch never reaches the configured size."""
    b = ctx.budget
    if b is None or ctx.lay.context_length is not None or b.kv_pool_gib <= 0:
        return None
    if b.max_requests_at_context >= b.running_per_rank:
        return None
    return Hit(f"{b.max_requests_at_context} requests of {b.context} tokens fit per rank, plan runs "
               f"{b.running_per_rank}", {"fits": b.max_requests_at_context * ctx.lay.attn_dp_size,
               "running_per_rank": b.running_per_rank, **ctx.where()})
