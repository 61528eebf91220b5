"""Property tests over the whole plan space: every point resolves to a plan whose error-free
findings really satisfy the invariants (re-checked here with plain arithmetic, not the rules), or
is rejected with one UserError line or an error finding naming a rule — never a traceback."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dsv4ctl.errors import UserError
from dsv4ctl.validate import RULES
from dsv4ctl.validate.context import Ctx
from dsv4ctl.validate.engine_flags import choices_by_dest
from dsv4ctl.validate.megamoe import prefill_tokens_required
from dsv4ctl.space import Point, axes, evaluate

AX = axes()
SET_KEYS = {
    "tp": st.sampled_from([1, 2, 3, 4, 8, 16, 32]),
    "dp": st.sampled_from([1, 2, 4, 8, 16]),
    "attn_dp": st.booleans(),
    "pp": st.sampled_from([1, 2]),
    "moe_a2a": st.sampled_from(["none", "deepep", "megamoe"]),
    "max_running_requests": st.sampled_from([1, 8, 32, 128, 256, 1024, 4096]),
    "cuda_graph_max_bs": st.sampled_from([1, 8, 64, 256, 512]),
    "mem_fraction_static": st.sampled_from([0.5, 0.78, 0.88, 0.9, 0.95, 0.99]),
    "chunked_prefill_size": st.sampled_from([-1, 0, 4096, 8192, 65536]),
    "context_length": st.sampled_from([4096, 131072, 1048576, 2000000]),
    "spec_topk": st.sampled_from([1, 2]),
    "spec_draft_tokens": st.sampled_from([2, 4, 8]),
    "kv_cache_dtype": st.sampled_from(["fp8_e4m3", "bf16"]),
    "prefill_cp": st.booleans(),
    "env.SGLANG_DEEPEP_NUM_MAX_DISPATCH_TOKENS_PER_RANK": st.sampled_from(["64", "128", "256", "1024", "4096"]),
    "env.SGLANG_OPT_DEEPGEMM_MEGA_MOE_NUM_MAX_TOKENS_PER_RANK": st.sampled_from(["1024", "4096", "8320"]),
    "env.SGLANG_DSV4_FP4_EXPERTS": st.sampled_from(["0", "1"]),
}


def _set(key: str, value) -> str:
    text = str(value).lower() if isinstance(value, bool) else str(value)
    return f"{key}={text}"


sets_strategy = st.dictionaries(st.sampled_from(sorted(SET_KEYS)), st.none(), max_size=4).flatmap(
    lambda d: st.tuples(*(SET_KEYS[k].map(lambda v, k=k: _set(k, v)) for k in sorted(d))))

extra_toggles = st.fixed_dictionaries({}, optional={
    "hicache": st.sampled_from(["off", "l2"]), "context_length": st.sampled_from([8192, 393216, 1048576, 4000000]),
    "reasoning_parser": st.sampled_from(["deepseek-v4", "deepseek-r1", "bogus"]),
    "tool_call_parser": st.sampled_from(["deepseekv4", "deepseek-v4"]),
    "engine_version": st.sampled_from(["0.5.23", "0.5.18", "0.5.12", "0.9.0"]),
})

uniform_points = st.builds(
    lambda hw, variant, recipe, quant, mtp, mm, nodes, sets, extra: Point(
        hw, variant, recipe, {"quant": quant, "mtp": mtp, "megamoe": mm, "nodes": nodes, **extra}, sets),
    st.sampled_from(AX["hw"]), st.sampled_from(AX["variant"]), st.sampled_from(AX["recipe"]),
    st.sampled_from(AX["quant"]), st.sampled_from(AX["mtp"]), st.sampled_from(AX["megamoe"]),
    st.sampled_from(AX["nodes"]), sets_strategy, extra_toggles)


@st.composite
def supported_points(draw):
    """Biased toward cells the resolver accepts (the hardware's own quants, flash/pro), so the
    invariants get exercised rather than most draws being rejected up front."""
    from dsv4ctl.profiles import find_profile as hardware_profile

    hw = draw(st.sampled_from([h for h in AX["hw"] if h != "cpu"]))
    quant = draw(st.sampled_from(hardware_profile(hw).quants))
    toggles = {"quant": quant, "mtp": draw(st.sampled_from(AX["mtp"] + (None,))),
               "megamoe": draw(st.sampled_from(AX["megamoe"] + (None,))), **draw(extra_toggles)}
    return Point(hw, draw(st.sampled_from(["flash", "pro"])), draw(st.sampled_from(AX["recipe"])), toggles,
                 draw(sets_strategy))


points_strategy = st.one_of(uniform_points, supported_points())


def check_invariants(plan) -> None:
    """What an error-free plan must satisfy, computed from the plan directly."""
    for ctx in _views(plan):
        k, lay, hw, b = ctx.keys, ctx.lay, ctx.hw, ctx.budget
        assert hw is not None and ctx.arch is not None
        world = k.tp * k.pp
        assert world % ctx.nodes == 0 and world // ctx.nodes <= plan.gpus_per_node
        if lay.a2a == "deepep":
            per_rank = -(-lay.max_running // lay.attn_dp_size)
            assert max(per_rank, k.cuda_graph_max_bs or 0) * lay.draft_tokens <= lay.dispatch_tokens <= 1024
        if lay.a2a == "megamoe" or k.megamoe != "off":
            assert ctx.blackwell and (k.chunked_prefill_size is None or k.chunked_prefill_size > 0)
            if ctx.role != "decode":
                assert lay.megamoe_tokens >= prefill_tokens_required(ctx)
        if k.spec_algorithm == "EAGLE":
            assert k.spec_topk in (None, 1)
        if plan.quant == "fp8" and hw.vendor == "nvidia":
            assert ctx.env.get("SGLANG_DSV4_FP4_EXPERTS") == "0" or k.fp4_experts is False
        if k.prefill_cp:
            assert ctx.nodes == 1 and k.tp <= 8 and k.dp == 1
        if ctx.pd:
            assert k.pp == 1
        if k.context_length is not None:
            assert k.context_length <= ctx.arch.max_pos
        choices = choices_by_dest(plan.engine, plan.engine_version)
        for dest in ("reasoning_parser", "tool_call_parser"):
            value = getattr(k, dest)
            assert value is None or dest not in choices or value in choices[dest]
        assert b.weights_gib + b.buffers_gib < b.hbm_gib and b.kv_pool_gib > 0


def _views(plan):
    from dsv4ctl.validate.context import views

    return views(plan)


def judge(point: Point) -> None:
    checked, rejected = evaluate(point)
    if checked is None:
        assert isinstance(rejected, UserError) and rejected.one_line()
        return
    assert all(f.rule in RULES for f in checked.findings)
    if checked.ok:
        check_invariants(checked.plan)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(points_strategy)
def test_random_points_with_overrides(point):
    judge(point)


@pytest.mark.slow
def test_every_point_without_overrides():
    from dsv4ctl.space import points

    for point in points():
        judge(point)


def test_ctx_of_resolved_plan_has_budget():
    checked, _ = evaluate(Point("b200", "flash", "low-latency", {}))
    assert Ctx(checked.plan).budget.weights_gib > 0


# Hand-edited plans skip the resolver: any schema-valid plan must validate without a traceback.
hand_keys = st.fixed_dictionaries({}, optional={
    "tp": st.integers(1, 64), "dp": st.integers(1, 64), "attn_dp": st.booleans(), "ep": st.integers(1, 512),
    "pp": st.integers(1, 4), "prefill_cp": st.booleans(), "cp_size": st.integers(1, 16),
    "cp_strategy": st.sampled_from(["round-robin-split", "interleave", "zigzag"]),
    "moe_a2a": st.sampled_from(["none", "deepep", "megamoe"]), "megamoe": st.sampled_from(["off", "w4a8", "w4a4"]),
    "moe_runner": st.sampled_from(["marlin", "flashinfer_mxfp4", "deep_gemm", "auto"]),
    "spec_algorithm": st.sampled_from(["EAGLE", "DSPARK"]), "spec_steps": st.integers(1, 8),
    "spec_topk": st.integers(1, 8), "spec_draft_tokens": st.integers(1, 16),
    "cuda_graph_max_bs": st.integers(1, 4096), "max_running_requests": st.integers(1, 100000),
    "chunked_prefill_size": st.integers(-1, 1 << 20), "mem_fraction_static": st.floats(0.01, 0.999),
    "context_length": st.integers(1, 1 << 22), "kv_cache_dtype": st.sampled_from(["auto", "fp8_e4m3", "bf16"]),
    "deepep_num_sms": st.integers(2, 256), "deepep_dispatch_tokens_per_rank": st.integers(0, 1 << 16),
    "megamoe_tokens_per_rank": st.integers(0, 1 << 16), "fp4_experts": st.booleans(),
    "reasoning_parser": st.sampled_from(["deepseek-v4", "deepseek-r1", "nonsense"]),
    "disagg_mode": st.sampled_from(["prefill", "decode"]), "ib_device": st.sampled_from(["mlx5_0"]),
})


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(hw=st.sampled_from(AX["hw"] + ("h300",)), variant=st.sampled_from(AX["variant"] + ("ultra",)),
       quant=st.sampled_from(AX["quant"]), recipe=st.sampled_from(AX["recipe"] + ("custom",)),
       nodes=st.integers(1, 4), gpn=st.integers(1, 8), keys=hand_keys,
       env=st.dictionaries(st.sampled_from(["SGLANG_DEEPEP_NUM_MAX_DISPATCH_TOKENS_PER_RANK", "NVSHMEM_QP_DEPTH",
                                            "SGLANG_OPT_DEEPGEMM_MEGA_MOE_NUM_MAX_TOKENS_PER_RANK",
                                            "SGLANG_DSV4_FP4_EXPERTS", "SGLANG_ENABLE_SPEC_V2"]),
                           st.sampled_from(["0", "1", "128", "4096", "x", ""])),
       pd=st.booleans(), version=st.sampled_from(["0.5.23", "0.5.18", "0.5.12", "1.0"]))
def test_hand_edited_plans_never_crash(hw, variant, quant, recipe, nodes, gpn, keys, env, pd, version):
    from dsv4ctl.pipeline import check_plan
    from dsv4ctl.schema import EngineKeys, LaunchPlan, Role

    roles = ([Role(name="prefill", nodes=nodes), Role(name="decode", nodes=nodes, keys={"cuda_graph_max_bs": 8}),
              Role(name="router", nodes=0)] if pd else [Role(name="single", nodes=nodes)])
    plan = LaunchPlan(hardware=hw, variant=variant, recipe=recipe, quant=quant, engine_version=version,
                      nodes=nodes, gpus_per_node=gpn, keys=EngineKeys(**keys), env=env, roles=roles)
    checked = check_plan(plan)
    assert all(f.rule in RULES for f in checked.findings)
