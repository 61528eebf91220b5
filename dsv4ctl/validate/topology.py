"""Parallel layout versus nodes and GPUs; context parallelism; PD disaggregation networking
(recipes §4.9–§4.12, §7 #7, #8)."""

from __future__ import annotations

from dsv4ctl.sizing.layout import env_on
from dsv4ctl.sizing.placement import node_claims, slots
from dsv4ctl.validate.registry import Hit, rule


def world_size(ctx) -> int:
    return ctx.keys.tp * ctx.keys.pp


@rule("TP-NODES-MISMATCH", "error", "TP × PP ranks do not fit the nodes",
      fix="use {nodes_ok} node(s) of {gpus_per_node} GPUs for {world} ranks, or set --tp {tp_ok}")
def tp_nodes(ctx):
    """SGLang spreads tp × pp ranks evenly over --nnodes machines, so the ranks must divide by the
    nodes and each node's share must fit its GPUs: TP16 needs 2 nodes of 8 GPUs, TP8 on 4-GPU
    GB200/GB300 trays needs 2 trays. A mismatch hangs at the NCCL rendezvous."""
    gpn, nodes = ctx.plan.gpus_per_node, ctx.nodes
    world = world_size(ctx)
    if world % nodes == 0 and world // nodes <= gpn:
        return None
    return Hit(f"--tp {ctx.keys.tp} × --pp {ctx.keys.pp} = {world} ranks on {nodes} node(s) of {gpn} GPUs",
               {"tp": ctx.keys.tp, "pp": ctx.keys.pp, "world": world, "nodes": nodes, "gpus_per_node": gpn,
                "nodes_ok": max(-(-world // gpn), 1), "tp_ok": nodes * gpn // ctx.keys.pp, **ctx.where()})


@rule("GPUS-PER-NODE", "error", "more GPUs per node than the hardware has",
      fix="set gpus_per_node to {hw_gpus} or fewer and add nodes")
def gpus_per_node(ctx):
    """A node of this hardware profile has a fixed GPU count (8 on HGX, 4 on a GB200/GB300 tray)."""
    if ctx.hw is None or ctx.plan.gpus_per_node <= ctx.hw.gpus_per_node:
        return None
    return Hit(f"{ctx.plan.gpus_per_node} GPUs per node on {ctx.plan.hardware} (has {ctx.hw.gpus_per_node})",
               {"gpus_per_node": ctx.plan.gpus_per_node, "hw_gpus": ctx.hw.gpus_per_node})


@rule("NODE-GPUS-OVERCLAIM", "error", "the roles sharing a node claim more GPUs than it has",
      fix="give the roles on node {node} at most {gpus_per_node} GPUs together (smaller tp), or plan "
          "{nodes_ok} nodes so each role gets its own")
def node_gpus_overclaim(ctx):
    """Roles placed on one node (single-node PD: prefill and decode side by side) each get their own
    contiguous GPU range (`CUDA_VISIBLE_DEVICES`, docker `--gpus device=`); when their tp × pp shares
    add up to more than the node's GPUs (the hardware profile's count, or the plan's if smaller), the
    ranges overlap or name GPUs that do not exist and the second role fails to start or runs out of
    memory on the first one's GPUs."""
    gpn = min(ctx.plan.gpus_per_node, ctx.hw.gpus_per_node if ctx.hw is not None else ctx.plan.gpus_per_node)
    for node, group in sorted(node_claims(ctx.plan).items()):
        claimed = sum(s.count for s in group)
        if claimed > gpn:
            parts = " + ".join(f"{s.role} {s.count}" for s in group)
            return Hit(f"node {node} hosts {parts} = {claimed} GPUs but has {gpn}",
                       {"node": node, "claimed": claimed, "gpus_per_node": gpn, "nodes_ok": sum(1 for s in slots(ctx.plan) if s.count)})
    return None


@rule("DP-ATTN-DIVIDES-TP", "error", "DP-attention size does not divide TP",
      fix="use --dp {dp_ok} (a divisor of --tp {tp})")
def dp_divides(ctx):
    """DP-attention splits the TP group into dp attention replicas of tp/dp ranks each."""
    k = ctx.keys
    if not k.attn_dp or (k.dp <= k.tp and k.tp % k.dp == 0):
        return None
    return Hit(f"--dp {k.dp} does not divide --tp {k.tp}", {"dp": k.dp, "tp": k.tp, "dp_ok": k.tp})


@rule("SHARDING-DIVIDES", "error", "TP/EP size does not divide the model's heads, groups or experts",
      fix="use a TP/EP size that divides {what} ({count})")
def sharding(ctx):
    """Attention TP must divide the heads and the output-projection groups (Flash ≤ 8, Pro ≤ 16
    ranks), and EP must divide the routed experts; otherwise the weights cannot be split."""
    a, lay = ctx.arch, ctx.lay
    if a is None:
        return None
    for what, count, n in (("o_groups", a.o_groups, lay.attn_tp), ("attention heads", a.heads, lay.attn_tp),
                           ("routed experts", a.experts, max(lay.ep, lay.tp))):
        if count % n:
            return Hit(f"{n} ranks do not divide {count} {what}", {"what": what, "count": count, "ranks": n})
    return None


@rule("CP-MULTI-NODE", "error", "context parallelism across machines",
      fix="keep prefill context parallelism on one node (--tp ≤ 8), or drop it")
def cp_multi_node(ctx):
    """'Context parallel only supports single machine (tp_size <= 8). Cross-machine CP has
    precision issues.'"""
    k = ctx.keys
    if not k.prefill_cp or (ctx.nodes <= 1 and k.tp <= 8):
        return None
    return Hit(f"prefill CP over {ctx.nodes} node(s), --tp {k.tp}", {"nodes": ctx.nodes, "tp": k.tp})


@rule("CP-DP-ATTN", "error", "context parallelism with DP-attention",
      fix="use --dp 1 with prefill context parallelism")
def cp_dp_attn(ctx):
    """V4's CP mode asserts 'For round-robin split mode, dp attention is not supported.' (dp_size
    must be 1); interleave CP + DP-attention fails the same dp_size == 1 assert."""
    k = ctx.keys
    if not k.prefill_cp or k.dp <= 1:
        return None
    return Hit(f"prefill CP with --dp {k.dp}", {"dp": k.dp})


@rule("CP-ZIGZAG-CUDA", "error", "zigzag context parallelism on a CUDA GPU",
      fix="use --cp-strategy interleave")
def cp_zigzag(ctx):
    """'DeepSeekV4 zigzag CP requires the NPU backend'; CUDA GPUs run the interleave strategy."""
    if not ctx.keys.prefill_cp or ctx.keys.cp_strategy != "zigzag" or ctx.vendor != "nvidia":
        return None
    return Hit("zigzag CP on an NVIDIA GPU", {"cp_strategy": "zigzag"})


@rule("PD-PP", "error", "PD disaggregation with pipeline parallelism",
      fix="set --pp 1")
def pd_pp(ctx):
    """V4's hook asserts 'V4 PD disaggregation requires pp_size=1': the KV transfer between prefill
    and decode assumes one pipeline stage holding every layer's cache."""
    if not ctx.pd or ctx.keys.pp == 1:
        return None
    return Hit(f"PD with --pp {ctx.keys.pp}", {"pp": ctx.keys.pp, **ctx.where()})


@rule("PD-MOONCAKE-IB", "warning", "mooncake without an IB device may fall back to TCP",
      fix="set --disaggregation-ib-device (e.g. {ib_hint}) and run the container with --privileged "
          "--ulimit memlock=-1 (or --device /dev/infiniband --cap-add IPC_LOCK)")
def pd_mooncake_ib(ctx):
    """Mooncake picks RDMA only when it can see an active HCA; without IB exposure it 'silently
    falls back to TCP, which can lead to garbled KV transfer on large checkpoints'. MNNVL systems
    transfer over NVLink and are exempt."""
    k = ctx.keys
    if not ctx.pd or (k.transfer_backend or "mooncake") != "mooncake" or k.ib_device or ctx.hw is None:
        return None
    if ctx.hw.mnnvl or ctx.hw.nics.fabric == "none":
        return None
    return Hit(f"PD over mooncake on {ctx.plan.hardware} names no IB device",
               {"ib_hint": ctx.hw.nics.ib_device or "mlx5_0", **ctx.where()})


def _mnnvl_set(ctx) -> bool:
    return bool(ctx.keys.mnnvl) or (env_on(ctx.env, "NCCL_MNNVL_ENABLE") and env_on(ctx.env, "NCCL_CUMEM_ENABLE"))


@rule("MNNVL-FLAGS", "error", "multi-node NVLink system without the MNNVL settings",
      fix="export NCCL_MNNVL_ENABLE=1 NCCL_CUMEM_ENABLE=1")
def mnnvl(ctx):
    """GB200/GB300 trays share one NVLink domain across nodes; the multi-node cookbook cells set
    NCCL_MNNVL_ENABLE=1 NCCL_CUMEM_ENABLE=1 so NCCL and DeepEP use it instead of the NICs."""
    if ctx.hw is None or not ctx.hw.mnnvl or ctx.nodes <= 1 or _mnnvl_set(ctx):
        return None
    return Hit(f"{ctx.nodes} node(s) on {ctx.plan.hardware} without NCCL_MNNVL_ENABLE/NCCL_CUMEM_ENABLE",
               {"nodes": ctx.nodes, **ctx.where()})


@rule("PD-MNNVL", "warning", "PD on an MNNVL system without the mooncake MNNVL settings",
      fix="export MC_FORCE_MNNVL=1 NCCL_MNNVL_ENABLE=1 NCCL_CUMEM_ENABLE=1 on both roles "
          "(and SGLANG_MOONCAKE_CUSTOM_MEM_POOL=True)")
def pd_mnnvl(ctx):
    """Cross-tray KV transfer over MNNVL fails with 'nvlink_transport.cpp:497 Requested address ...
    not found!' unless mooncake is forced onto MNNVL (recipes §7 #8); single-tray PD works without."""
    if ctx.hw is None or not ctx.hw.mnnvl or not ctx.pd or ctx.plan.nodes <= 1:
        return None
    if env_on(ctx.env, "MC_FORCE_MNNVL") and _mnnvl_set(ctx):
        return None
    return Hit(f"PD across {ctx.plan.nodes} {ctx.plan.hardware} trays without MC_FORCE_MNNVL/NCCL_MNNVL_ENABLE",
               {"nodes": ctx.plan.nodes, **ctx.where()})
