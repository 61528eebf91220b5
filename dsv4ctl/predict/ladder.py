"""From step costs to what a benchmark measures at a concurrency: TTFT, TPOT, tok/s.

Closed loop with C clients (sglang bench_serving --max-concurrency). The engine runs n = min(C,
capacity) requests; capacity is max-running-requests or the requests whose KV fits the pool. One
engine interleaves prefill and decode: while one request emits OSL tokens the other n - 1 are each
prefilled once, so a request lives L = n·t_pf + D (D = OSL / accept · t_cycle(n)), the rate is
λ = n / L, TTFT = t_pf·(1 + ρ/2) with ρ = (n − 1)·t_pf / L the share of time spent on the other
requests' prompts (a prefill waits on average for half of one already running); under DP attention one rank prefills one request, so a prefill
takes g = dp times the engine's per-request time and fewer than g requests leave ranks idle.
TPOT = (L − TTFT) / (OSL − 1). Clients above capacity wait (C − n) / λ for a slot. Prefill/decode
disaggregation runs the phases on separate engines: the rate is the least of the clients', the
prefill engine's and the decode engine's; TTFT adds the KV transfer over the NICs."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from dsv4ctl.predict.constants import K
from dsv4ctl.predict.decode import decode_span
from dsv4ctl.predict.facts import Engine
from dsv4ctl.predict.mtp import cycle
from dsv4ctl.predict.prefill import prefill
from dsv4ctl.sizing.kv import bytes_per_token, entry_bytes, kv_bytes_per_seq

DEFAULT_PAGE = 256  # V4's forced page size (sglang-v4-recipes.md §4 item 4)


class Unservable(Exception):
    """The plan cannot serve the workload at all (one line says why)."""


@dataclass(frozen=True)
class Point:
    concurrency: int
    ttft_ms: float
    tpot_ms: float
    output_tok_s_per_user: float
    total_tok_s_per_gpu: float
    output_tok_s: float
    bound: str  # "<phase>:<part>" of the phase that takes more engine time
    decode_bound: str
    prefill_bound: str
    limited_by: str  # concurrency | max-running | kv-capacity | prefill-engine
    running: int
    accept_length: float
    decode_step_ms: float
    prefill_ms: float
    gpus: int

    def as_dict(self) -> dict:
        return {k: (round(v, 3) if isinstance(v, float) else v) for k, v in asdict(self).items()}


def capacity(e: Engine, isl: int, osl: int) -> tuple[int, str]:
    """Requests the engine can run at once and which limit binds.

    SGLang splits V4's KV pool into a full pool (compressed CSA/HCA entries and indexer keys, per
    token) and a window pool of `swa_ratio` times as many token rows (raw entries of every layer).
    A running request keeps all its window rows unless SGLANG_OPT_SWA_RELEASE_LEAF_LOCK_AFTER_WINDOW
    frees the ones that left the window, so the window pool usually binds first [inferred; it gives
    11-14 requests for H200 Pro FP4 TP8, where the cookbook notes "KV fits only ~15 concurrent
    requests" (BEN)]."""
    a, lay = e.arch, e.lay
    ctx = isl + osl
    per_full = bytes_per_token(a, lay.kv_dtype)
    per_window = (a.layers + (a.mtp_layers if lay.spec else 0)) * entry_bytes(a, lay.kv_dtype)
    full_rows = e.kv_pool / (per_full + e.swa_ratio * per_window)
    window_rows = e.swa_ratio * full_rows
    held = a.window + 2 * DEFAULT_PAGE if e.swa_release else ctx
    fits = int(min(full_rows / ctx, window_rows / held))
    if fits < lay.running_per_rank:
        return fits * e.attn_groups, "kv-capacity"
    return lay.running_per_rank * e.attn_groups, "max-running"


@dataclass(frozen=True)
class _Decode:
    seconds: float  # D: decode time of one request's OSL tokens at n running
    cycle_s: float
    accept: float
    bound: str


def _decode(e: Engine, k: K, n: int, isl: int, osl: int, accept: float | None) -> _Decode:
    cost, tau = cycle(e, k, max(n, 1) / e.attn_groups, decode_span(e, isl, osl), accept)
    return _Decode(osl / tau * cost.seconds, cost.seconds, tau, cost.bound)


def _running(e: Engine, c: int, isl: int, osl: int) -> tuple[int, str]:
    limit = min(e.lay.context_length or e.arch.max_pos, e.arch.max_pos)
    if isl + osl > limit:
        raise Unservable(f"ISL + OSL = {isl + osl} tokens exceeds the context length {limit}")
    cap, why = capacity(e, isl, osl)
    if cap < 1:
        pool = "the KV pool" if e.role == "single" else f"the {e.role} engine's KV pool"
        raise Unservable(f"{pool} ({e.kv_pool / 2**30:.1f} GiB/GPU) holds no request of {isl + osl} tokens")
    return (c, "concurrency") if c <= cap else (cap, why)


def single_point(e: Engine, k: K, isl: int, osl: int, c: int, accept: float | None = None) -> Point:
    n, limit = _running(e, c, isl, osl)
    pf = prefill(e, k, isl)
    t_pf, dec = pf.engine_s(n), _decode(e, k, n, isl, osl, accept)
    life = n * t_pf + dec.seconds
    rate, rho = n / life, (n - 1) * t_pf / life  # rho: the share of time spent on the others' prompts
    ttft_run = pf.latency_s * (1 + rho / 2)
    tpot = (life - ttft_run) / max(osl - 1, 1)
    phase = "prefill" if n * t_pf > dec.seconds else "decode"
    bound = f"{phase}:{pf.bound if phase == 'prefill' else dec.bound}"
    return Point(c, 1e3 * (ttft_run + (c - n) / rate), 1e3 * tpot, 1 / tpot, rate * (isl + osl) / e.gpus,
                 rate * osl, bound, dec.bound, pf.bound, limit, n, dec.accept, 1e3 * dec.cycle_s,
                 1e3 * pf.latency_s, e.gpus)


def kv_transfer_s(p: Engine, isl: int) -> float:
    """The prompt's KV from the prefill engine to the decode engine over the prefill GPUs' NICs."""
    nics = p.hw.nics
    bw = nics.count * nics.gbps / 8 * 1e9 * max(p.gpus / max(p.hw.gpus_per_node, 1), 1 / p.hw.gpus_per_node)
    seq = kv_bytes_per_seq(p.arch, isl, p.lay.kv_dtype, p.lay.spec)
    return seq / max(bw, 1e6)


def pd_point(p: Engine, d: Engine, k: K, isl: int, osl: int, c: int, accept: float | None = None) -> Point:
    n, limit = _running(d, c, isl, osl)
    pf = prefill(p, k, isl)
    t_pf, dec, xfer = pf.seconds, _decode(d, k, n, isl, osl, accept), kv_transfer_s(p, isl)
    lat = pf.latency_s
    rate = min(c / (lat + xfer + dec.seconds), 1 / t_pf, n / dec.seconds)
    rho = min(rate * t_pf, 1.0)
    ttft = max(c / rate - dec.seconds, lat * (1 + rho / 2) + xfer)
    tpot = dec.seconds / max(osl - 1, 1)
    gpus = p.gpus + d.gpus
    if rate * t_pf >= 0.999:
        bound, limit = f"prefill:{pf.bound}", "prefill-engine"
    else:
        bound = f"decode:{dec.bound}"
    return Point(c, 1e3 * ttft, 1e3 * tpot, 1 / tpot, rate * (isl + osl) / gpus, rate * osl, bound, dec.bound,
                 pf.bound, limit, n, dec.accept, 1e3 * dec.cycle_s, 1e3 * pf.latency_s, gpus)
