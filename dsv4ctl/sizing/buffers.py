"""Communication buffers that are allocated next to the weights (kernels-hardware.md §1.2, §1.3,
§2.1): DeepEP normal-mode NVLink/RDMA buffers, the DeepEP low-latency RDMA buffer and the DeepGEMM
MegaMoE symmetric buffer. Formulas re-implement the libraries' size hints."""

from __future__ import annotations

from dsv4ctl.sizing.arch import ArchFacts

# DeepEP default configs: nvl_recv tokens per EP size (dispatch and combine share it); rdma_recv = 128
_NVL_RECV = {2: 256, 4: 256, 8: 256, 16: 288, 24: 288, 32: 288, 48: 288, 64: 288,
             96: 480, 128: 560, 144: 720, 160: 720}
DEEPEP_EP_SIZES = tuple(sorted(_NVL_RECV))
_K, _S = 128, 128  # kNumMaxTopK, kNumMaxScales


def _align(x: float, a: int) -> int:
    return int(-(-x // a) * a)


def deepep_normal_bytes(a: ArchFacts, ranks: int, num_sms: int = 20) -> int:
    """NVL + RDMA buffers of normal (prefill) mode. SGLang dispatches FP8: hidden bytes = hidden."""
    if ranks <= 1:
        return 0
    hb, c = a.hidden, num_sms // 2
    nvl, rdma = min(ranks, 8), max(ranks // 8, 1)
    nvl_recv = _NVL_RECV.get(ranks, max(_NVL_RECV.values()))
    per_tok = hb + 8 + _K * 8 + _K * 4 + _S * 4
    nvl_bytes = _align(c * nvl * (2 * rdma + 3) * 4 + c * nvl * nvl_recv * per_tok, 128)
    if ranks <= 8:
        return nvl_bytes
    rdma_bytes = _align(c * rdma * 18 * 2 * 4 + c * rdma * 128 * 2 * (per_tok + 16), 128)
    return nvl_bytes + rdma_bytes


def deepep_low_latency_bytes(a: ArchFacts, tokens_per_rank: int) -> int:
    """`get_low_latency_rdma_size_hint`: scales with experts × tokens × hidden, not with EP size."""
    h, e, t = a.hidden, a.experts, tokens_per_rank
    ns = h // 128
    disp = 16 + max(h * 2, h + ns * 4)
    comb = ns * 4 + h * 2
    send, recv = max(t * disp, e * t * comb), max(e * t * disp, e * t * comb)
    total = 2 * send + 2 * recv + 2 * _align(e * 4, 128)
    return ((total + 128) // 128) * 128


def megamoe_bytes(a: ArchFacts, ranks: int, tokens_per_rank: int) -> int:
    """DeepGEMM `get_symm_buffer_size_for_mega_moe` @7f2a703 (token count aligned to 192)."""
    r, t = max(ranks, 1), _align(tokens_per_rank, 192)
    e, k, h, i, big_e = a.experts // r, a.topk, a.hidden, a.inter, a.experts
    p = _align(r * t * min(k, e) + e * 191, 192)
    psf = (p // 192) * 256
    ws = _align(32 + 16 * big_e + 8 * e + 4 * _align(p // 192, 2) + 8 * (p // 192)
                + 4 * big_e * r * t + 12 * p, 16)
    return int(ws + t * (h + h / 32 + 12 * k) + p * (h + i + 4) + psf * (h + i) / 32 + 2 * k * t * h)
