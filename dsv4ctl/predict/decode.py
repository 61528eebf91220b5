"""One decode forward on one GPU: bytes read and FLOPs at calibrated efficiencies (the slower of the
two), collectives over the link, and a fixed overhead. `Cost` keeps the four parts so the bound is
the largest of them."""

from __future__ import annotations

from dataclasses import dataclass

from dsv4ctl.predict.attention import Entries, attn_flops, dense_params, entries, expert_params, kv_read_bytes
from dsv4ctl.predict.comms import all_reduce_s, all_to_all_s, link_bytes_per_s
from dsv4ctl.predict.constants import K
from dsv4ctl.predict.facts import Engine, peak_flops
from dsv4ctl.sizing.kv import entry_bytes

PARTS = ("memory", "compute", "communication", "overhead")


@dataclass(frozen=True)
class Cost:
    memory: float = 0.0
    compute: float = 0.0
    communication: float = 0.0
    overhead: float = 0.0

    @property
    def seconds(self) -> float:
        return max(self.memory, self.compute) + self.communication + self.overhead

    @property
    def bound(self) -> str:
        return max(PARTS, key=lambda p: getattr(self, p))

    def __add__(self, other: "Cost") -> "Cost":
        return Cost(*(getattr(self, p) + getattr(other, p) for p in PARTS))

    def scaled(self, factor: float) -> "Cost":
        return Cost(*(getattr(self, p) * factor for p in PARTS))


def touched(e: Engine, tokens: float) -> float:
    """Expected fraction of the routed experts a step touches: each of `tokens` tokens picks top-k
    of E experts, so an expert stays idle with probability (1 - k/E)^tokens."""
    a = e.arch
    return 1.0 - (1.0 - a.topk / a.experts) ** max(tokens, 0.0)


def layer_comm(e: Engine, k: K, group_tokens: float, engine_tokens: float) -> float:
    """Collectives of one layer: the MoE all-to-all (+ an attention all-reduce inside a TP attention
    group), or, without all-to-all, the TP all-reduces after attention and after the MoE."""
    a, lay = e.arch, e.lay
    if lay.tp <= 1:
        return 0.0
    bw = link_bytes_per_s(e.hw, lay.tp, e.nodes, k)
    if e.a2a in ("deepep", "megamoe"):
        local = group_tokens / e.attn_tp
        reduce = all_reduce_s(group_tokens, a.hidden, e.attn_tp, bw, k)
        return reduce + all_to_all_s(local, a.hidden, a.topk, e.expert_shard, bw, k, overlapped=e.megamoe)
    return 2 * all_reduce_s(engine_tokens, a.hidden, lay.tp, bw, k)


def _compute(e: Engine, k: K, dense_flops: float, expert_flops: float, attention_flops: float) -> float:
    g = peak_flops(e.hw, e.dense_prec) * k.gemm_eff
    x = peak_flops(e.hw, e.expert_prec) * k.gemm_eff
    at = peak_flops(e.hw, "bf16") * k.attn_eff
    return dense_flops / g + expert_flops / x + attention_flops / at


def overhead(e: Engine, k: K, layers: float, batch: float, step: bool) -> float:
    eager = not e.graphs or batch > e.graph_max_bs
    per_layer = k.layer_us * (k.eager_factor if eager else 1.0)
    return ((k.step_us if step else 0.0) + per_layer * layers) * 1e-6


def verify_pass(e: Engine, k: K, batch: float, q: int, span: Entries) -> Cost:
    """The main model's forward over `batch` requests of one attention group, `q` tokens each (1, or
    MTP's draft tokens when verifying)."""
    a, w = e.arch, e.weights
    group_tokens = batch * q
    engine_tokens = group_tokens * e.attn_groups
    weight_bytes = (w["attn_tp"] + w["vocab"] / 2 + w["replicated"] + w["shared"]
                    + w["experts"] * touched(e, engine_tokens))
    kv = batch * kv_read_bytes(a, span, e.lay.kv_dtype)
    dense, head = dense_params(a)
    flops = _compute(e, k, 2 * group_tokens * (dense + head) / e.attn_tp,
                     2 * expert_params(a) * a.topk * a.layers * engine_tokens / e.expert_shard,
                     group_tokens * attn_flops(a, span, 1.0 / e.attn_tp))
    return Cost(memory=(weight_bytes + kv) / (e.hw.hbm_tbps * 1e12 * k.hbm_eff), compute=flops,
                communication=a.layers * layer_comm(e, k, group_tokens, engine_tokens),
                overhead=overhead(e, k, a.layers, batch, step=True))


def draft_pass(e: Engine, k: K, batch: float) -> Cost:
    """One MTP draft step: the MTP layer (SWA attention over its window, its MoE) and the head."""
    a = e.arch
    layers = max(a.mtp_layers, 1)
    engine_tokens = batch * e.attn_groups
    weight_bytes = e.mtp_bytes + e.mtp_expert_bytes * touched(e, engine_tokens) + e.weights["vocab"] / 2
    kv = batch * layers * a.window * entry_bytes(a, e.lay.kv_dtype)
    dense, head = dense_params(a)
    flops = _compute(e, k, 2 * batch * (dense / a.layers * layers + head) / e.attn_tp,
                     2 * expert_params(a) * a.topk * layers * engine_tokens / e.expert_shard,
                     batch * layers * 4 * a.heads * a.head_dim * a.window / e.attn_tp)
    return Cost(memory=(weight_bytes + kv) / (e.hw.hbm_tbps * 1e12 * k.hbm_eff), compute=flops,
                communication=layers * layer_comm(e, k, batch, engine_tokens),
                overhead=overhead(e, k, layers + 1, batch, step=False))


def decode_span(e: Engine, isl: int, osl: int) -> Entries:
    """Mean entries of a decode token: positions run from ISL to ISL + OSL."""
    return entries(e.arch, e.index_topk, float(isl), float(isl + osl))
