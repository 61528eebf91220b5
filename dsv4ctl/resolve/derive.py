"""Derived values: filled in after every explicit layer, only where no layer chose a value.

Each rule records `derived: <why>` as provenance so a reader can tell a cookbook value from an estimate."""

from __future__ import annotations

import math
from typing import Any

from dsv4ctl.resolve.layers import Layered
from dsv4ctl.schema.hardware import HardwareProfile

# SGLang's own defaults for DeepSeek-V4 (reference §4 items 1 and 4, §3 MegaMoE), used only to estimate.
ENGINE_MAX_RUNNING_REQUESTS = 256
DEEPEP_DISPATCH_DEFAULT = 128
DEEPEP_DISPATCH_MAX = 1024
MEGAMOE_TOKENS_RECOMMENDED = 8320
ENGINE_CHUNKED_PREFILL = 8192


def _pow2_at_least(n: int) -> int:
    return 1 << max(0, math.ceil(math.log2(max(n, 1))))


def derive_spec(v: Layered) -> None:
    """MTP: EAGLE with top-k 1 (the only V4 shape SGLang accepts); draft tokens = steps × topk + 1."""
    steps = v.get("spec_steps")
    if not steps:
        return
    if v.get("spec_algorithm") is None:
        v.set("spec_algorithm", "EAGLE", "derived: spec_steps set, V4 MTP runs as EAGLE")
    if v.get("spec_topk") is None:
        v.set("spec_topk", 1, "derived: V4 accepts EAGLE top-k 1 only")
    if v.get("spec_draft_tokens") is None:
        v.set("spec_draft_tokens", steps * v.get("spec_topk") + 1, "derived: spec_steps × spec_topk + 1")


def derive_parallel(v: Layered) -> None:
    """DP-attention spans the TP group; experts are parallel over it when an all-to-all backend is on."""
    tp = v.get("tp", 1)
    if v.get("attn_dp") and v.get("dp", 1) == 1 and tp > 1:
        v.set("dp", tp, "derived: DP-attention over the whole TP group (dp = tp)")
    if v.get("moe_a2a", "none") != "none" and v.get("ep") is None:
        v.set("ep", tp, "derived: expert parallel over the TP group (all-to-all backend on)")
    if v.get("prefill_cp") and v.get("cp_size") is None:
        v.set("cp_size", tp // max(1, v.get("dp", 1) if v.get("attn_dp") else 1),
              "derived: attention CP size = tp / dp")


def _per_rank_requests(v: Layered) -> int:
    mrr = v.get("max_running_requests") or ENGINE_MAX_RUNNING_REQUESTS
    dp = v.get("dp", 1) if v.get("attn_dp") else 1
    return math.ceil(mrr / max(dp, 1))


def derive_batches(v: Layered) -> None:
    """CUDA-graph max batch (per DP rank) and the captured batch-size list (plan-only estimates)."""
    if v.get("disable_cuda_graph"):
        return
    if v.get("cuda_graph_max_bs") is None:
        v.set("cuda_graph_max_bs", _per_rank_requests(v),
              "derived: max_running_requests per DP rank (engine default 256 when unset)")
    if v.get("cuda_graph_bs") is None:
        top = v.get("cuda_graph_max_bs")
        small = [b for b in (1, 2, 4, 8, 12, 16, 24) if b < top]
        ladder = list(range(32, top, 16 if top <= 256 else 32))
        v.set("cuda_graph_bs", [*small, *ladder, top], "derived: 1,2,4,8,12,16,24 then steps of 16 up to max")


def derive_moe_buffers(v: Layered) -> None:
    """DeepEP dispatch tokens per rank ≥ per-rank batch × draft tokens; MegaMoE tokens ≥ local chunk."""
    draft = v.get("spec_draft_tokens") or 1
    # The cap bounds low-latency (decode) dispatch only; a prefill role runs normal mode. Set it only
    # when the engine default (128) is too small, so cookbook cells that rely on the default stay as-is.
    decodes = v.get("disagg_mode") != "prefill"
    if v.get("moe_a2a") == "deepep" and v.get("deepep_dispatch_tokens_per_rank") is None and decodes:
        need = max(_per_rank_requests(v), v.get("cuda_graph_max_bs") or 0) * draft
        if need > DEEPEP_DISPATCH_DEFAULT:
            value = min(_pow2_at_least(need), DEEPEP_DISPATCH_MAX)
            v.set("deepep_dispatch_tokens_per_rank", value,
                  f"derived: per-rank batch × draft tokens = {need} > engine default 128 (power of 2, ≤ 1024)")
    if v.get("moe_a2a") == "megamoe" and v.get("megamoe_tokens_per_rank") is None:
        cpf = v.get("chunked_prefill_size") or ENGINE_CHUNKED_PREFILL
        tp, dp = v.get("tp", 1), (v.get("dp", 1) if v.get("attn_dp") else 1)
        align = max(tp // dp, 1)
        local = math.ceil(cpf / dp)
        required = math.ceil(local / align) * align
        v.set("megamoe_tokens_per_rank", max(required, MEGAMOE_TOKENS_RECOMMENDED),
              f"derived: max(ceil_align(cpf/dp) = {required}, recommended {MEGAMOE_TOKENS_RECOMMENDED})")


def derive_network(v: Layered, hw: HardwareProfile, nodes: int) -> None:
    """MNNVL env across GB200/GB300 nodes; the PD KV-transfer HCA from the hardware profile."""
    if v.get("mnnvl") is None and hw.mnnvl and nodes > 1:
        v.set("mnnvl", True, f"derived: hardware:{hw.name}.yaml mnnvl and {nodes} nodes")
    if v.get("transfer_backend") and v.get("ib_device") is None and hw.nics.ib_device:
        v.set("ib_device", hw.nics.ib_device, f"hardware:{hw.name}.yaml nics.ib_device")


def derive_all(v: Layered, hw: HardwareProfile, nodes: int) -> None:
    derive_spec(v)
    derive_parallel(v)
    derive_batches(v)
    derive_moe_buffers(v)
    derive_network(v, hw, nodes)


def derive_env(v: Layered, version: str) -> None:
    """Env implied by keys (per the engine version's vocabulary); explicit env entries win."""
    from dsv4ctl.vocab import env_for_keys

    for name, (value, key) in env_for_keys(v.values, version).items():
        if name not in v.env:
            v.set_env(name, value, f"{v.provenance.get(key, 'default')} (via {key})")


def ctx_of(hw: str, variant: str, quant: str, nodes: int, role: str | None) -> dict[str, Any]:
    return {"hw": hw, "variant": variant, "quant": quant, "nodes": nodes, "role": role}
