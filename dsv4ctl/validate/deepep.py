"""DeepEP all-to-all: the low-latency dispatch budget and DeepEP's hard limits (kernels-hardware.md
§1.4, recipes §4.1, §7 #1)."""

from __future__ import annotations

from dsv4ctl.sizing.buffers import DEEPEP_EP_SIZES
from dsv4ctl.sizing.layout import DISPATCH_ENV, env_int
from dsv4ctl.validate.registry import Hit, rule

LL_MAX_DISPATCH = 1024  # SGLang: "num-tokens-sent-from-one-rank-to-another-rank less than" FINISHED_SUM_TAG
QP_DEPTH_DEFAULT = 1024


def dispatch_demand(ctx) -> int:
    """Tokens one rank may dispatch in one decode step: its share of the running requests, or the
    largest CUDA-graph batch captured at warmup when that is larger, times the MTP draft tokens."""
    lay = ctx.lay
    batch = max(lay.running_per_rank, lay.cuda_graph_max_bs or 0)
    return batch * lay.draft_tokens


@rule("DEEPEP-DISPATCH-OVERFLOW", "error", "DeepEP dispatch buffer too small for the decode batch",
      fix="raise " + DISPATCH_ENV + " to ≥ {need}, or lower --max-running-requests to {max_running_ok} "
          "(and --cuda-graph-max-bs to {max_batch_ok})")
def dispatch_overflow(ctx):
    """DeepEP's low-latency dispatch asserts `x.size(0) <= num_max_dispatch_tokens_per_rank`
    (deep_ep.cpp:1105/1233) when one rank sends more tokens than its buffer holds. A rank sends its
    share of `--max-running-requests` (divided by the DP-attention size), or the largest CUDA-graph
    batch during capture, times the MTP draft tokens. The plan loads fine and crashes at the first
    full batch, so the budget is checked here."""
    lay = ctx.lay
    if lay.a2a != "deepep":
        return None
    need = dispatch_demand(ctx)
    if need <= lay.dispatch_tokens:
        return None
    per_rank_ok = max(lay.dispatch_tokens // lay.draft_tokens, 1)
    return Hit(
        f"each rank dispatches up to {need} tokens per step ({max(lay.running_per_rank, lay.cuda_graph_max_bs or 0)} "
        f"requests × {lay.draft_tokens} draft tokens) but the DeepEP buffer holds {lay.dispatch_tokens}",
        {"need": need, "dispatch_tokens_per_rank": lay.dispatch_tokens, "draft_tokens": lay.draft_tokens,
         "max_running_requests": lay.max_running, "attn_dp_size": lay.attn_dp_size,
         "cuda_graph_max_bs": lay.cuda_graph_max_bs, "max_running_ok": per_rank_ok * lay.attn_dp_size,
         "max_batch_ok": per_rank_ok, **ctx.where()},
    )


@rule("DEEPEP-LL-LIMIT", "error", "DeepEP low-latency dispatch tokens above 1024",
      fix="set " + DISPATCH_ENV + " to 1024 or less")
def ll_limit(ctx):
    """SGLang asserts `num_max_dispatch_tokens_per_rank <= 1024` for DeepEP low-latency mode: the
    dispatch counters use FINISHED_SUM_TAG = 1024, so larger buffers would corrupt the count."""
    lay = ctx.lay
    if lay.a2a != "deepep" or lay.dispatch_tokens <= LL_MAX_DISPATCH:
        return None
    return Hit(f"dispatch tokens per rank {lay.dispatch_tokens} > {LL_MAX_DISPATCH}",
               {"dispatch_tokens_per_rank": lay.dispatch_tokens, **ctx.where()})


@rule("DEEPEP-QP-DEPTH", "warning", "NVSHMEM queue pairs too shallow for the dispatch buffer",
      fix="export NVSHMEM_QP_DEPTH={need} (≥ 2 × (dispatch tokens + 1))")
def qp_depth(ctx):
    """DeepEP asserts `nvshmem_qp_depth >= (num_max_dispatch_tokens_per_rank + 1) * 2` in
    low-latency dispatch over RDMA; NVSHMEM_QP_DEPTH defaults to 1024, so more than 511 tokens per
    rank across nodes need a deeper queue."""
    lay = ctx.lay
    depth = env_int(ctx.env, "NVSHMEM_QP_DEPTH") or QP_DEPTH_DEFAULT
    need = 2 * (lay.dispatch_tokens + 1)
    if lay.a2a != "deepep" or ctx.nodes <= 1 or depth >= need:
        return None
    return Hit(f"NVSHMEM_QP_DEPTH {depth} < 2 × ({lay.dispatch_tokens} + 1)",
               {"need": need, "qp_depth": depth, "dispatch_tokens_per_rank": lay.dispatch_tokens})


@rule("DEEPEP-EP-SIZE", "error", "EP size DeepEP has no buffer config for",
      fix="use an EP size of {supported}")
def ep_size(ctx):
    """DeepEP's normal mode only ships dispatch/combine configs for some rank counts; any other EP
    size fails with 'Unsupported number of EP ranks' unless a custom --deepep-config is given."""
    lay = ctx.lay
    ranks = max(lay.ep, lay.tp)
    if lay.a2a != "deepep" or ranks in DEEPEP_EP_SIZES or ranks == 1:
        return None
    return Hit(f"DeepEP over {ranks} ranks is not a supported EP size",
               {"ep": ranks, "supported": ", ".join(map(str, DEEPEP_EP_SIZES))})
