"""What the model knows about one serving engine: the plan's facts for one role (parallelism, the
format and compute precision of each weight family, MTP, CUDA graphs, all-to-all backend) joined
with its hardware profile, the variant's architecture and the memory budget. Pure, no torch."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from dsv4ctl.sizing import ArchFacts, Layout
from dsv4ctl.sizing.layout import env_on
from dsv4ctl.sizing.weights import inventory


SWA_RATIO_DEFAULT = 0.1  # V4's hook default for --swa-full-tokens-ratio (sglang-v4-recipes.md §4 item 4)


@dataclass(frozen=True)
class Engine:
    role: str  # single | prefill | decode
    arch: ArchFacts
    index_topk: int
    lay: Layout
    hw: Any  # HardwareProfile
    gpus: int  # GPUs of this engine (the TP group; pipeline stages multiply)
    nodes: int
    weights: dict[str, float]  # bytes per GPU by sharding group, main model only
    mtp_bytes: float  # bytes per GPU of the MTP layer(s) without their routed experts
    mtp_expert_bytes: float  # bytes per GPU of the MTP layer's routed experts
    kv_pool: float  # bytes per GPU the KV cache may use
    expert_prec: str  # fp4 | fp8 | bf16: the precision the expert GEMMs run at
    dense_prec: str
    spec_steps: int
    megamoe: bool
    graphs: bool
    graph_max_bs: int
    swa_ratio: float  # --swa-full-tokens-ratio: the window pool's size as a fraction of the full pool's
    swa_release: bool  # SGLANG_OPT_SWA_RELEASE_LEAF_LOCK_AFTER_WINDOW: out-of-window rows are freed

    @property
    def attn_groups(self) -> int:
        return self.lay.attn_dp_size

    @property
    def attn_tp(self) -> int:
        return self.lay.attn_tp

    @property
    def expert_shard(self) -> int:
        return max(self.lay.tp, self.lay.ep)

    @property
    def a2a(self) -> str:
        return self.lay.a2a


def peak_flops(hw: Any, prec: str) -> float:
    """Dense FLOP/s at a precision, falling back to the next wider one a GPU lacks (Hopper FP4 runs
    the FP4 experts at FP8 or BF16: W4A8 / W4A16)."""
    order = {"fp4": ("tflops_fp4", "tflops_fp8", "tflops_bf16"), "fp8": ("tflops_fp8", "tflops_bf16"),
             "bf16": ("tflops_bf16",)}[prec]
    for name in order:
        v = float(getattr(hw, name, 0) or 0)
        if v > 0:
            return v * 1e12
    return 0.0


def expert_precision(lay: Layout, keys: Any, hw: Any) -> str:
    """The rate the expert GEMMs are charged at: FP4 for the FP4-activation kernels (MegaMoE W4A4,
    NVFP4 via TRTLLM routed) on GPUs with FP4 tensor cores, else the dense (FP8 or BF16) rate. The
    W4A16 runners (Marlin, FlashInfer MXFP4) are not charged BF16: the calibration rows show the
    H200 FP4 path no slower than the FP8 one (max-throughput 4473 vs 3958 tok/s/GPU, BEN)."""
    fp4_acts = getattr(keys, "megamoe", "off") == "w4a4" or lay.expert_format == "nvfp4"
    if fp4_acts and peak_flops(hw, "fp4") > peak_flops(hw, "fp8"):
        return "fp4"
    return dense_precision(hw)


def dense_precision(hw: Any) -> str:
    """FP8 GEMMs (V4's attention and dense weights are FP8) where the GPU has an FP8 rate."""
    return "fp8" if peak_flops(hw, "fp8") > peak_flops(hw, "bf16") else "bf16"


@lru_cache(maxsize=256)
def _weights(a: ArchFacts, fmt: str, shard: int, attn_tp: int) -> tuple[dict[str, float], float, float]:
    main = inventory(a, fmt, with_mtp=False).per_gpu(ep=shard, attn_tp=attn_tp)
    full = inventory(a, fmt, with_mtp=True).per_gpu(ep=shard, attn_tp=attn_tp)
    mtp_experts = full["experts"] - main["experts"]
    mtp_rest = sum(full.values()) - sum(main.values()) - mtp_experts
    return main, mtp_rest, mtp_experts


def engine_of(ctx: Any) -> Engine:
    """The Engine of one validate-context view (a whole plan, or one PD role of it)."""
    lay, keys, hw, a = ctx.lay, ctx.keys, ctx.hw, ctx.arch
    main, mtp_rest, mtp_experts = _weights(a, lay.expert_format, max(lay.tp, lay.ep), lay.attn_tp)
    from dsv4ctl.variants import get_variant

    budget = ctx.budget
    graph_bs = lay.cuda_graph_max_bs if lay.cuda_graph_max_bs is not None else min(lay.running_per_rank, 256)
    return Engine(
        role=ctx.role or "single", arch=a, index_topk=get_variant(ctx.plan.variant).index_topk, lay=lay, hw=hw,
        gpus=lay.tp * max(getattr(keys, "pp", 1), 1), nodes=ctx.nodes, weights=main,
        mtp_bytes=mtp_rest if lay.spec else 0.0, mtp_expert_bytes=mtp_experts if lay.spec else 0.0,
        kv_pool=max(budget.kv_pool_gib * 2**30, 0.0), expert_prec=expert_precision(lay, keys, hw),
        dense_prec=dense_precision(hw),
        spec_steps=int(getattr(keys, "spec_steps", None) or 0) if lay.spec else 0,
        megamoe=lay.a2a == "megamoe", graphs=not bool(getattr(keys, "disable_cuda_graph", False)),
        graph_max_bs=graph_bs, swa_ratio=float(getattr(keys, "swa_full_tokens_ratio", None) or SWA_RATIO_DEFAULT),
        swa_release=env_on(ctx.env, "SGLANG_OPT_SWA_RELEASE_LEAF_LOCK_AFTER_WINDOW"),
    )
