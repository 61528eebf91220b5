"""The runtime's Triton kernels compile for an H100 (sm_90) at the mini model's decode shapes, without
register spills: checked on a CPU machine with Triton's own ptxas (tests/sm90_compile.py)."""

from __future__ import annotations

import pytest
from sm90_compile import compile_sm90, signature, sm90_ptx

pytest.importorskip("triton")
C, BF16, F32 = "constexpr", "*bf16", "*fp32"
PRE_TYPES = dict(mix_ptr=F32, scale_ptr=F32, base_ptr=F32, h_ptr=BF16, w_ptr=BF16, x_ptr=BF16, post_ptr=F32,
                 comb_ptr=F32, hc_eps="fp32", norm_eps="fp32", mix_eps="fp32", D=C, ITERS=C, N=C, BLOCK_D=C, P_PAD=C,
                 W=C, FIRST_PART=C)


def _attention_cases():
    from dsv4rt.kernels import triton_attention as ta

    types = {p: BF16 for p in ("q_ptr", "win_ptr", "ent_ptr", "out_ptr", "old_ptr")}
    types.update(slot_ptr="*i64", pos_ptr="*i64", emask_ptr="*i1", sink_ptr=F32, rope_ptr=F32, part_ptr=F32,
                 ml_ptr=F32, qk_scale="fp32", eps="fp32",
                 **{k: C for k in ("D", "BLOCK_H", "BLOCK_S", "HAS_ENTRIES", "HAS_MASK", "SPLIT", "ROPE", "IEEE",
                                   "SPAN")})
    # SPAN 4: a speculative verify's rows (steps 3), with the window rows its span overwrote
    for has, mask, split, span in ((False, False, True, 1), (True, False, True, 1), (True, True, True, 1),
                                   (True, True, False, 1), (False, False, True, 4), (True, False, True, 4),
                                   (True, True, True, 4)):
        yield ("attention", has, mask, split, span), ta._decode_attn, signature(ta._decode_attn, types), dict(
            D=512, BLOCK_H=16, BLOCK_S=32, HAS_ENTRIES=has, HAS_MASK=mask, SPLIT=split, ROPE=True, IEEE=False,
            SPAN=span), 8
    types = dict(part_ptr=F32, ml_ptr=F32, sink_ptr=F32, rope_ptr=F32, pos_ptr="*i64", out_ptr=BF16, D=C, BLOCK_P=C,
                 ROWS=C, ROPE=C)
    yield "combine", ta._combine, signature(ta._combine, types), dict(D=512, BLOCK_P=8, ROWS=8, ROPE=True), 4


def _gemv_cases():
    from dsv4rt.kernels import triton_gemv as tg

    for n, k, groups, out, norm in ((8192, 512, 1, BF16, True), (2048, 2048, 4, BF16, False),
                                    (64, 2048, 1, F32, False), (32000, 2048, 1, F32, False)):
        block_n, block_k = tg._blocks(n, n // groups, k)
        types = dict(x_ptr=BF16, w_ptr=BF16, y_ptr=out, nw_ptr=BF16, eps="fp32", M_PAD=C, BLOCK_N=C, BLOCK_K=C, VEC=C,
                     HAS_NORM=C, EARLY=C)
        yield ("gemv", n, k), tg._gemv, signature(tg._gemv, types), dict(
            M_PAD=1, BLOCK_N=block_n, BLOCK_K=block_k, VEC=8, HAS_NORM=norm, EARLY=min(tg.EARLY_TILES, k // block_k)), 4


def _mhc_and_moe_cases():
    from dsv4rt.kernels import triton_mhc as tm, triton_mhc_post as tp, triton_moe_gemv as mg

    config = tm._pre_config(4, 2048)
    # hc_pre (after the attention's post, with wo_b inside, 128 partial sums), and the head's input alone
    for first_part, w, parts in ((0, 24, 64), (0, 24, 128), (1, 4, 64)):
        consts = dict(D=2048, ITERS=20, N=4, BLOCK_D=config["BLOCK_D"], P_PAD=parts, W=w, FIRST_PART=first_part)
        warps = config["num_warps"]
        yield ("hc_pre", first_part, parts), tm._pre_apply, signature(tm._pre_apply, PRE_TYPES), consts, warps
    types = dict(out_ptr=F32, res_ptr=BF16, post_ptr=F32, comb_ptr=F32, fn_ptr=F32, h_ptr=BF16, raw_ptr=F32,
                 wo_ptr=BF16, D=C, N=C, K_PAD=C, BLOCK_D=C, ROWS=C, LINEAR=C, BLOCK_KO=C)
    for rows in (1, 16):
        yield ("hc_post", rows), tp._post_mix, signature(tp._post_mix, types), dict(
            D=2048, N=4, K_PAD=32, BLOCK_D=tp.POST_CONFIG["block_d"], ROWS=rows, LINEAR=False, BLOCK_KO=1), 4
    # with wo_b inside (mini: 2,048 inputs; x in bf16)
    yield ("hc_post", "linear"), tp._post_mix, signature(tp._post_mix, {**types, "out_ptr": BF16}), dict(
        D=2048, N=4, K_PAD=32, BLOCK_D=tp._block_d(2048), ROWS=1, LINEAR=True, BLOCK_KO=2048), 8
    up, down = mg._config(2048, 1024)
    types = dict(x_ptr=BF16, w_ptr=BF16, idx_ptr="*i64", wt_ptr=F32, h_ptr=BF16, limit="fp32", D=C, I=C, TOPK=C,
                 PICKS=C, BLOCK_N=C, BLOCK_K=C)
    yield "gate_up", mg._gate_up, signature(mg._gate_up, types), dict(
        D=2048, I=1024, TOPK=6, PICKS=7, BLOCK_N=up["BLOCK_N"], BLOCK_K=up["BLOCK_K"]), up["num_warps"]
    types = dict(h_ptr=BF16, w_ptr=BF16, idx_ptr="*i64", wt_ptr=F32, y_ptr=F32, I=C, TOPK=C, PICKS=C, BLOCK_D=C,
                 BLOCK_I=C, VEC=C)
    yield "down", mg._down, signature(mg._down, types), dict(
        I=1024, TOPK=6, PICKS=7, BLOCK_D=down["BLOCK_D"], BLOCK_I=down["BLOCK_I"], VEC=8), down["num_warps"]


def _cache_cases():
    from dsv4rt.kernels import triton_cache as tc

    types = dict(kv_ptr=BF16, kvw_ptr=BF16, kvrope_ptr=F32, win_ptr=BF16, pos_ptr="*i64", slot_ptr="*i64",
                 pooled_ptr=F32, count_ptr="*i32", eps="fp32", D=C, NCOMP=C, ALWAYS=C,
                 **{f"{k}{i}": C for k in ("HD", "M", "SPAN", "BLOCK") for i in range(2)},
                 **{f"{k}{i}": t for k, t in (("a", BF16), ("z", BF16), ("ape", F32), ("rkv", F32), ("rsc", F32),
                                              ("ent", BF16), ("nw", BF16), ("rope", F32)) for i in range(2)})
    # mini's CSA layer (the attention's and the indexer's compressors) and HCA layer (one, ratio 128)
    for name, comps in (("CSA", ((512, 4, 8), (128, 4, 8))), ("HCA", ((512, 128, 128), (16, 1, 1)))):
        consts = {f"{k}{i}": v for i, c in enumerate(comps) for k, v in zip(("HD", "M", "SPAN"), c)}
        consts.update({f"BLOCK{i}": tc._block(c[0], c[2]) for i, c in enumerate(comps)})
        for always in (False, True):  # pooled where a block ends (the runtime's), or on every step
            yield ("cache", name, always), tc._cache_step, signature(tc._cache_step, types), dict(
                D=512, NCOMP=2 if name == "CSA" else 1, ALWAYS=always, **consts), 4


def _cases(pdl: bool = True):
    """Every decode kernel at mini's shapes, launched with PDL (as on an H100) or without."""
    for cases in (_attention_cases, _gemv_cases, _mhc_and_moe_cases, _cache_cases):
        for name, fn, sig, consts, warps in cases():
            yield name, fn, {**sig, "PDL": C}, {**consts, "PDL": pdl}, warps


@pytest.mark.slow
def test_kernels_compile_for_sm90_without_spills():
    failed = {}
    for name, fn, sig, consts, warps in _cases():
        report = compile_sm90(fn, sig, consts, warps)
        if report["spill_bytes"]:
            failed[str(name)] = report
    assert not failed, f"register spills: {failed}"


def test_compile_report_reads_registers_and_spills():
    """The reader itself: a kernel that keeps too much live in one warp spills, a small one does not."""
    from dsv4rt.kernels import triton_mhc as tm

    sig = signature(tm._pre_apply, PRE_TYPES)
    sig["PDL"] = C
    common = dict(D=2048, ITERS=20, N=4, P_PAD=64, W=24, FIRST_PART=0, PDL=False)
    whole_row_one_warp = compile_sm90(tm._pre_apply, sig, dict(BLOCK_D=2048, **common), 1)
    passes = compile_sm90(tm._pre_apply, sig, dict(BLOCK_D=1024, **common), 4)
    assert whole_row_one_warp["spill_bytes"] > 0 and whole_row_one_warp["registers"] == 255
    assert passes["spill_bytes"] == 0 and 0 < passes["registers"] < 255


# kernels that load before waiting for the previous kernel (kernels/pdl.py): weights (down: its first w2 tile
# by the router's picks, two kernels back); the rest wait first
_PREFETCH = ("gemv", "hc_post", "down")


def _kind(name) -> str:
    return name if isinstance(name, str) else name[0]


def _order(ptx: str) -> tuple[int, int, int, int]:
    """PTX offsets of the first global load, the wait, the launch of dependents and the first global store."""
    first = lambda s: ptx.find(s) if s in ptx else len(ptx)  # noqa: E731
    wait, launch = first("griddepcontrol.wait"), first("griddepcontrol.launch_dependents")
    return first("ld.global"), wait, launch, first("st.global")


@pytest.mark.slow
def test_pdl_kernels_wait_before_reading_inputs_and_storing():
    """With PDL each kernel waits before its first store, lets the next kernel launch after its wait,
    and loads before the wait only where it prefetches a weight; without PDL there is no griddepcontrol."""
    wrong = {}
    for name, fn, sig, consts, warps in _cases():
        load, wait, launch, store = _order(sm90_ptx(fn, sig, consts, warps))
        prefetch = _kind(name) in _PREFETCH
        if not (wait < launch < store and (load < wait) == prefetch):
            wrong[str(name)] = dict(load=load, wait=wait, launch=launch, store=store)
    assert not wrong, f"PDL order: {wrong}"
    name, fn, sig, consts, warps = next(_cases(pdl=False))
    assert "griddepcontrol" not in sm90_ptx(fn, sig, consts, warps)
