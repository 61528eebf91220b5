"""Every rule: one plan that triggers it and a near-identical one that does not. A rule added to the
registry without a row here fails `test_every_rule_has_cases`."""

from __future__ import annotations

import pytest

from dsv4ctl.pipeline import check_plan
from dsv4ctl.validate import RULES
from rule_plans import FP8X, M112, M314, MNNVL, dd, dpa, for_runtime, mk, mmt, pd_plan

def findings_of(plan):
    """The findings the pipeline gives: rendered once, every rule (the ENGINE-* rules read the argv)."""
    return check_plan(plan).findings


H200_BAL = dict(hw="h200", quant="fp8", recipe="balanced", gpn=4)

CASES = {
    # recipes §4.1 / §7 #1: 256 running / DPA4 = 64 per rank × 4 drafts = 256 > 128
    "DEEPEP-DISPATCH-OVERFLOW": (
        mk(**H200_BAL, env={**FP8X, **dd(128)}, **dpa(4), **M314, max_running_requests=256),
        mk(**H200_BAL, env={**FP8X, **dd(256)}, **dpa(4), **M314, max_running_requests=256)),
    "DEEPEP-LL-LIMIT": (
        mk(**H200_BAL, env={**FP8X, **dd(2048)}, **dpa(4)),
        mk(**H200_BAL, env={**FP8X, **dd(1024)}, **dpa(4))),
    "DEEPEP-QP-DEPTH": (
        mk("gb200", "pro", recipe="balanced", nodes=2, env={**MNNVL, **dd(1024)}, **dpa(8)),
        mk("gb200", "pro", recipe="balanced", nodes=2, env={**MNNVL, **dd(1024), "NVSHMEM_QP_DEPTH": "4096"},
           **dpa(8))),
    "DEEPEP-EP-SIZE": (
        mk("h200", quant="fp8", recipe="balanced", gpn=6, env=FP8X, tp=6, dp=2, attn_dp=True, moe_a2a="deepep"),
        mk(**H200_BAL, env=FP8X, **dpa(4))),
    "MEGAMOE-ARCH": (
        mk(**H200_BAL, env=FP8X, **dpa(4, "megamoe")),
        mk("b200", recipe="balanced", gpn=4, **dpa(4, "megamoe"))),
    "MEGAMOE-RECIPE": (
        mk("b200", recipe="low-latency", gpn=4, **dpa(4, "megamoe")),
        mk("b200", recipe="max-throughput", gpn=4, **dpa(4, "megamoe"))),
    "MEGAMOE-CHUNKED-PREFILL": (
        mk("b200", recipe="max-throughput", gpn=4, **dpa(4, "megamoe"), chunked_prefill_size=-1),
        mk("b200", recipe="max-throughput", gpn=4, **dpa(4, "megamoe"), chunked_prefill_size=8192)),
    # recipes §4.6: 65536 / DP8 = 8192 > 4096
    "MEGAMOE-TOKENS": (
        mk("b200", "pro", recipe="max-throughput", env=mmt(4096), **dpa(8, "megamoe"), chunked_prefill_size=65536),
        mk("b200", "pro", recipe="max-throughput", env=mmt(8320), **dpa(8, "megamoe"), chunked_prefill_size=65536)),
    "MEGAMOE-W4A4-SM90": (
        mk(**H200_BAL, env=FP8X, **dpa(4), megamoe="w4a4"),
        mk(**H200_BAL, env=FP8X, **dpa(4), megamoe="off")),
    "MEGAMOE-RUNNER": (
        mk("b200", recipe="max-throughput", gpn=4, **dpa(4, "megamoe"), moe_runner="flashinfer_mxfp4"),
        mk("b200", recipe="max-throughput", gpn=4, **dpa(4, "megamoe"))),
    "MEGAMOE-PD": (
        pd_plan("b200", quant="fp4", ib_device="mlx5_7", **dpa(8, "megamoe")),
        pd_plan("b200", quant="fp4", ib_device="mlx5_7", **dpa(8))),
    "FP4-HOPPER-TP-ONLY": (
        mk("h200", recipe="balanced", gpn=4, **dpa(4)),
        mk("h200", recipe="balanced", tp=4, gpn=4, moe_runner="flashinfer_mxfp4")),
    "FP4-HOPPER-RUNNER": (
        mk("h200", tp=4, gpn=4, moe_runner="flashinfer_trtllm_routed"),
        mk("h200", tp=4, gpn=4, moe_runner="marlin")),
    "FP8-REPACK-ENV": (
        mk("h200", quant="fp8", tp=4, gpn=4),
        mk("h200", quant="fp8", tp=4, gpn=4, env=FP8X)),
    "QUANT-UNSUPPORTED": (
        mk("h200", quant="nvfp4", tp=4, gpn=4),
        mk("b200", quant="nvfp4", tp=4, gpn=4)),
    "NVFP4-ENGINE-VERSION": (
        mk(quant="nvfp4", tp=4, gpn=4, engine_version="0.5.18"),
        mk(quant="nvfp4", tp=4, gpn=4, engine_version="0.5.23")),
    "SPEC-EAGLE-TOPK": (
        mk(tp=4, gpn=4, **{**M314, "spec_topk": 2}),
        mk(tp=4, gpn=4, **M314)),
    "SPEC-DRAFT-TOKENS": (
        mk(tp=4, gpn=4, **{**M314, "spec_draft_tokens": 8}),
        mk(tp=4, gpn=4, **M314)),
    "SPEC-DSPARK-CHECKPOINT": (
        mk(tp=4, gpn=4, spec_algorithm="DSPARK", model_path="deepseek-ai/DeepSeek-V4-Flash"),
        mk(tp=4, gpn=4, spec_algorithm="DSPARK", model_path="deepseek-ai/DeepSeek-V4-Flash-0731")),
    "SPEC-EAGLE-OFFICIAL": (
        mk(tp=4, gpn=4, model_path="deepseek-ai/DeepSeek-V4-Flash-0731", **M314),
        mk(tp=4, gpn=4, model_path="deepseek-ai/DeepSeek-V4-Flash", **M314)),
    "SPEC-DSPARK-DP": (
        mk(recipe="balanced", gpn=4, spec_algorithm="DSPARK", model_path="x/DeepSeek-V4-Flash-0731", **dpa(4)),
        mk(tp=4, gpn=4, spec_algorithm="DSPARK", model_path="x/DeepSeek-V4-Flash-0731")),
    "SPEC-V2-DISABLED": (
        mk(tp=4, gpn=4, env={"SGLANG_ENABLE_SPEC_V2": "0"}, **M314),
        mk(tp=4, gpn=4, env={"SGLANG_ENABLE_SPEC_V2": "1"}, **M314)),
    "SPEC-MAX-THROUGHPUT": (
        mk(recipe="max-throughput", gpn=4, **dpa(4), env=dd(1024), **M112),
        mk(recipe="max-throughput", gpn=4, **dpa(4), env=dd(1024))),
    "TP-NODES-MISMATCH": (
        mk("h100", "pro", nodes=1, tp=16, gpn=8),
        mk("h100", "pro", nodes=2, tp=16)),
    "GPUS-PER-NODE": (
        mk("gb300", "pro", gpn=8, tp=8),
        mk("gb300", "pro", gpn=4, nodes=2, env=MNNVL, tp=8)),
    # issue 20: single-node PD, prefill TP8 + decode TP8 on one 8-GPU node
    "NODE-GPUS-OVERCLAIM": (
        pd_plan(env=FP8X, ib_device="mlx5_0", tp=8, plan_nodes=1),
        pd_plan(env=FP8X, ib_device="mlx5_0", tp=4, plan_nodes=1)),
    "DP-ATTN-DIVIDES-TP": (
        mk(recipe="balanced", gpn=4, tp=4, dp=3, attn_dp=True),
        mk(recipe="balanced", gpn=4, tp=4, dp=2, attn_dp=True)),
    "SHARDING-DIVIDES": (
        mk("b200", "flash", tp=16, nodes=2),
        mk("b200", "pro", tp=16, nodes=2)),
    "CP-MULTI-NODE": (
        mk("b200", "pro", "fp4", "cp", nodes=2, tp=16, prefill_cp=True, moe_a2a="deepep"),
        mk("b200", "pro", "fp4", "cp", nodes=1, tp=8, prefill_cp=True, moe_a2a="deepep")),
    "CP-DP-ATTN": (
        mk("b200", "pro", "fp4", "cp", prefill_cp=True, moe_a2a="deepep", dp=8, attn_dp=True),
        mk("b200", "pro", "fp4", "cp", prefill_cp=True, moe_a2a="deepep")),
    "CP-ZIGZAG-CUDA": (
        mk("b200", "pro", "fp4", "cp", prefill_cp=True, cp_strategy="zigzag"),
        mk("b200", "pro", "fp4", "cp", prefill_cp=True, cp_strategy="interleave")),
    "PD-PP": (
        pd_plan(env=FP8X, ib_device="mlx5_0", tp=4, pp=2),
        pd_plan(env=FP8X, ib_device="mlx5_0", tp=8)),
    # recipes §7 #7: mooncake without IB exposure silently uses TCP
    "PD-MOONCAKE-IB": (
        pd_plan(env=FP8X),
        pd_plan(env=FP8X, ib_device="mlx5_0")),
    "PD-MNNVL": (
        pd_plan("gb300", "pro", "fp4", tp=4, env=MNNVL),
        pd_plan("gb300", "pro", "fp4", tp=4, env={**MNNVL, "MC_FORCE_MNNVL": "1"})),
    "MNNVL-FLAGS": (
        mk("gb200", "pro", nodes=2, tp=8, env=dd(256)),
        mk("gb200", "pro", nodes=2, tp=8, env={**MNNVL, **dd(256)})),
    "CUDA-GRAPH-BS": (
        mk(tp=4, gpn=4, cuda_graph_max_bs=512, max_running_requests=256),
        mk(tp=4, gpn=4, cuda_graph_max_bs=128, max_running_requests=256)),
    "PARSER-INVALID": (
        mk(tp=4, gpn=4, tool_call_parser="deepseek-v4"),
        mk(tp=4, gpn=4, tool_call_parser="deepseekv4", reasoning_parser="deepseek-v4")),
    "PARSER-NOT-V4": (
        mk(tp=4, gpn=4, reasoning_parser="deepseek-r1"),
        mk(tp=4, gpn=4, reasoning_parser="deepseek-v4")),
    "ENGINE-RENDER": (
        mk(tp=4, gpn=4, engine_version="0.4.0"),
        mk(tp=4, gpn=4)),
    "HARDWARE-UNKNOWN": (mk("h300", tp=4, gpn=4), mk("h200", tp=4, gpn=4)),
    "VARIANT-UNKNOWN": (mk(variant="ultra", tp=4, gpn=4), mk(variant="flash", tp=4, gpn=4)),
    # v4-architecture §4.2: Pro FP8 at TP8 is ≈192 GiB per GPU
    "WEIGHTS-EXCEED-HBM": (
        mk("h200", "pro", "fp8", env=FP8X, tp=8),
        mk("h200", "pro", "fp8", nodes=2, env=FP8X, tp=16, mem_fraction_static=0.93)),
    # recipes §7 #4 / #2
    "KV-NO-ROOM": (
        mk("gb300", "pro", "fp4", "cp", tp=4, mem_fraction_static=0.78),
        mk("gb300", "pro", "fp4", "cp", tp=4, mem_fraction_static=0.88)),
    "KV-CAPACITY": (
        mk("h200", "pro", tp=8, **M314, mem_fraction_static=0.88, context_length=131072, max_running_requests=64),
        mk("h200", "pro", tp=8, **M314, mem_fraction_static=0.88, context_length=131072, max_running_requests=4)),
    "KV-CONCURRENCY-LOW": (
        mk("h200", "pro", tp=8, mem_fraction_static=0.83, max_running_requests=64),
        mk("h200", "pro", tp=8, mem_fraction_static=0.83, max_running_requests=8)),
    "CONTEXT-EXCEEDS-MODEL": (
        mk(tp=4, gpn=4, context_length=2_000_000),
        mk(tp=4, gpn=4, context_length=1_048_576)),
    "GRAPH-MEMORY": (
        mk(tp=4, gpn=4, mem_fraction_static=0.995),
        mk(tp=4, gpn=4, mem_fraction_static=0.9)),
    # the included runtime: one process, no parallelism, MTP only as chains (top-k 1)
    "BUILTIN-KEY-UNSUPPORTED": (
        for_runtime(mk("cpu", "tiny", "bf16", "balanced", gpn=1, **{**M112, "spec_topk": 2, "spec_draft_tokens": 3})),
        for_runtime(mk("cpu", "tiny", "bf16", "balanced", gpn=1, **M112))),
    "BUILTIN-MULTI-PROCESS": (
        for_runtime(pd_plan("cpu", "tiny", "bf16", role_nodes=2)),  # a PD pair fits; multi-node does not
        for_runtime(mk("cpu", "tiny", "bf16", "balanced", gpn=1))),
}

# rules whose trigger needs the renderer (flags of the rendered argv)
NEEDS_VERSIONS = {"ENGINE-FLAG-UNKNOWN", "ENGINE-VERSION-UNCHECKED"}  # tested in test_rules_flags.py


def test_every_rule_has_cases():
    assert set(RULES) - set(CASES) - NEEDS_VERSIONS == set()


@pytest.mark.parametrize("rule_id", sorted(CASES))
def test_rule_triggers(rule_id):
    bad, _ = CASES[rule_id]
    ids = [f.rule for f in findings_of(bad)]
    assert rule_id in ids
    finding = next(f for f in findings_of(bad) if f.rule == rule_id)
    assert finding.severity == RULES[rule_id].severity
    assert "{" not in finding.fix, finding.fix  # the template was filled


@pytest.mark.parametrize("rule_id", sorted(CASES))
def test_rule_stays_quiet(rule_id):
    _, good = CASES[rule_id]
    assert rule_id not in [f.rule for f in findings_of(good)]


def test_dispatch_fix_names_numbers():
    bad, _ = CASES["DEEPEP-DISPATCH-OVERFLOW"]
    f = next(f for f in findings_of(bad) if f.rule == "DEEPEP-DISPATCH-OVERFLOW")
    assert f.values["need"] == 256 and f.values["dispatch_tokens_per_rank"] == 128
    assert "≥ 256" in f.fix and "--max-running-requests to 128" in f.fix


def test_megamoe_required_tokens_match_reference():
    """recipes §4.6: B200 Pro HT 65536/8 = 8192 ≤ 8320 and BAL 32768/8 = 4096 ≤ 4096."""
    from dsv4ctl.validate.context import Ctx
    from dsv4ctl.validate.megamoe import prefill_tokens_required

    ht = mk("b200", "pro", recipe="max-throughput", **dpa(8, "megamoe"), chunked_prefill_size=65536)
    bal = mk("b200", "pro", recipe="balanced", **dpa(8, "megamoe"), chunked_prefill_size=32768)
    assert prefill_tokens_required(Ctx(ht)) == 8192
    assert prefill_tokens_required(Ctx(bal)) == 4096
    assert prefill_tokens_required(Ctx(mk("b200", "pro", tp=8, moe_a2a="megamoe", chunked_prefill_size=8190))) == 8192


def test_kv_no_room_reports_minimum_fraction():
    """recipes §7 #4: H200 Pro FP8 at 0.88 fails; the minimum is ≈0.9113 (0.9335 with MTP)."""
    from rule_plans import REFERENCE_CELLS

    cells = {name: plan for name, plan, _ in REFERENCE_CELLS}
    ht = next(f for f in findings_of(cells["h200 pro fp8 HT"]) if f.rule == "KV-NO-ROOM")
    ll = next(f for f in findings_of(cells["h200 pro fp8 LL"]) if f.rule == "KV-NO-ROOM")
    assert ht.values["min_fraction"] == pytest.approx(0.9113, abs=0.01)
    assert ll.values["min_fraction"] == pytest.approx(0.9335, abs=0.015)


# sglang-v4-recipes.md §4 constraints and §7 failures that a plan can express → the rule that catches
# them. Each id's trigger plan above is the failing deployment in miniature; the extra plans below
# reproduce the documented cells themselves.
DOCUMENTED = {
    "§4.1 / §7#1 DeepEP dispatch assert": "DEEPEP-DISPATCH-OVERFLOW",
    "§4.1 LL dispatch ≤ 1024": "DEEPEP-LL-LIMIT",
    "§4.2 MTP needs spec-v2": "SPEC-V2-DISABLED",
    "§4.3 EAGLE topk 1 only": "SPEC-EAGLE-TOPK",
    "§4.6 MegaMoE chunked prefill": "MEGAMOE-CHUNKED-PREFILL",
    "§4.6 MegaMoE tokens per rank": "MEGAMOE-TOKENS",
    "§4.7 MegaMoE Blackwell only": "MEGAMOE-ARCH",
    "§4.7 MegaMoE not LL/cp": "MEGAMOE-RECIPE",
    "§4.7 W4A4 not on SM90": "MEGAMOE-W4A4-SM90",
    "§4.8 / §7#6 FP4 on Hopper TP-only": "FP4-HOPPER-TP-ONLY",
    "§4.9 CP single machine": "CP-MULTI-NODE",
    "§4.9 CP without DP-attention": "CP-DP-ATTN",
    "§4.10 PD pp=1": "PD-PP",
    "§4.10 / §7#7 mooncake TCP fallback": "PD-MOONCAKE-IB",
    "§4.10 DSpark not with PD / DP-attention": "SPEC-DSPARK-DP",
    "§4.12 TP16 needs 2 nodes": "TP-NODES-MISMATCH",
    "§4.13 / §7#2 GB300 Pro cp at 0.78": "KV-NO-ROOM",
    "§4.13 / §7#4 H200 Pro FP8 at 0.88": "KV-NO-ROOM",
    "§4.13 H200 Pro FP4 capacity-bound": "KV-CAPACITY",
    "§7#3 GB300 PD decode cg 512 / mrr 256": "CUDA-GRAPH-BS",
    "§7#8 GB300 PD MNNVL": "PD-MNNVL",
    "§7#11 NVFP4 on v0.5.18": "NVFP4-ENGINE-VERSION",
    "§7#14 EAGLE on official checkpoints": "SPEC-EAGLE-OFFICIAL",
    "FP8 repack needs SGLANG_DSV4_FP4_EXPERTS=0": "FP8-REPACK-ENV",
}


@pytest.mark.parametrize("what", sorted(DOCUMENTED))
def test_documented_failure_has_a_triggering_plan(what):
    rule_id = DOCUMENTED[what]
    assert rule_id in [f.rule for f in findings_of(CASES[rule_id][0])]


def test_gb300_pd_decode_defaults_of_section_7_3():
    """GB300 Pro PD decode with the defaults that OOMed (cg 512, mrr 256)."""
    plan = pd_plan("gb300", "pro", "fp4", tp=4, env={**MNNVL, "MC_FORCE_MNNVL": "1"},
                   cuda_graph_max_bs=512, max_running_requests=256)
    assert "CUDA-GRAPH-BS" in [f.rule for f in findings_of(plan)]
