"""The memory model reproduces v4-architecture.md §4 and kernels-hardware.md §1–2 worked numbers
within 3%. Every input comes from the variant facts (dsv4ctl/variants.yaml)."""

from __future__ import annotations

import pytest

from dsv4ctl.sizing import GIB, arch_for
from dsv4ctl.sizing.buffers import deepep_low_latency_bytes, deepep_normal_bytes, megamoe_bytes
from dsv4ctl.sizing.kv import bytes_per_token, compressor_state_bytes, kv_bytes_per_seq, window_bytes
from dsv4ctl.sizing.weights import inventory
from dsv4ctl.validate.context import Ctx
from rule_plans import M314, mk

REL = 0.03
GB = 1e9


@pytest.mark.parametrize("variant,groups", [
    ("flash", {"experts": 150.59, "attn_tp": 4.62, "vocab": 2.12, "replicated": 1.18, "shared": 1.11}),
    ("pro", {"experts": 835.53, "attn_tp": 18.09, "vocab": 3.71, "replicated": 3.28, "shared": 4.10}),
])
def test_inventory_groups_gb(variant, groups):
    inv = inventory(arch_for(variant), "fp4", with_mtp=True)
    for name, gb in groups.items():
        assert inv.groups[name] / GB == pytest.approx(gb, rel=REL), name


@pytest.mark.parametrize("variant,fmt,n,gib", [
    ("flash", "fp4", 4, 38.8), ("flash", "fp4", 8, 20.4), ("flash", "fp8", 4, 69.7), ("flash", "fp8", 8, 35.9),
    ("pro", "fp4", 8, 106.7), ("pro", "fp4", 16, 56.8), ("pro", "fp8", 8, 192.5), ("pro", "fp8", 16, 99.7),
])
def test_weights_per_gpu_tp_layout(variant, fmt, n, gib):
    per = inventory(arch_for(variant), fmt).per_gpu(ep=n, attn_tp=n)
    assert sum(per.values()) / GIB == pytest.approx(gib, rel=REL)


@pytest.mark.parametrize("variant,ep,gb", [("flash", 4, 46.7), ("pro", 8, 133.6)])
def test_weights_per_gpu_dp_attention(variant, ep, gb):
    per = inventory(arch_for(variant), "fp4").per_gpu(ep=ep, attn_tp=1)
    assert sum(per.values()) / GB == pytest.approx(gb, rel=REL)


def test_fp8_repack_doubles_experts():
    """§3: Flash experts ≈283.5 GB and Pro ≈1573 GB once repacked to FP8."""
    assert inventory(arch_for("flash"), "fp8").groups["experts"] / GB == pytest.approx(283.5, rel=REL)
    assert inventory(arch_for("pro"), "fp8").groups["experts"] / GB == pytest.approx(1572.9, rel=REL)


@pytest.mark.parametrize("variant,fp8idx,fp4idx", [("flash", 3850, 3514), ("pro", 5511, 5031)])
def test_kv_slope(variant, fp8idx, fp4idx):
    a = arch_for(variant)
    assert bytes_per_token(a, "fp8_e4m3") == pytest.approx(fp8idx, rel=0.001)
    assert bytes_per_token(a, "fp8_e4m3", fp4_indexer=True) == pytest.approx(fp4idx, rel=0.001)


@pytest.mark.parametrize("variant,at128k,at1m", [("flash", 0.47, 3.76), ("pro", 0.68, 5.39)])
def test_kv_per_sequence(variant, at128k, at1m):
    a = arch_for(variant)
    assert kv_bytes_per_seq(a, 131072, None, with_state=False) / GIB == pytest.approx(at128k, rel=REL)
    assert kv_bytes_per_seq(a, 2**20, None, with_state=False) / GIB == pytest.approx(at1m, rel=REL)


@pytest.mark.parametrize("variant,swa_mb,state_mib", [("flash", 3.2, 11.6), ("pro", 4.6, 17.8)])
def test_fixed_state_per_sequence(variant, swa_mb, state_mib):
    a = arch_for(variant)
    assert window_bytes(a, "fp8_e4m3", spec=False) / 1e6 == pytest.approx(swa_mb, rel=REL)
    assert compressor_state_bytes(a, spec=False) / 2**20 == pytest.approx(state_mib, rel=REL)
    assert compressor_state_bytes(a, spec=True) == 2 * compressor_state_bytes(a, spec=False)


@pytest.mark.parametrize("variant,t,gib", [("flash", 128, 1.016), ("flash", 256, 2.031), ("pro", 128, 2.666),
                                           ("pro", 512, 10.664)])
def test_deepep_low_latency_buffer(variant, t, gib):
    assert deepep_low_latency_bytes(arch_for(variant), t) / GIB == pytest.approx(gib, rel=REL)


@pytest.mark.parametrize("variant,ranks,gib", [("pro", 16, 0.198 + 0.048), ("flash", 16, 0.132 + 0.032)])
def test_deepep_normal_buffer_sglang_fp8(variant, ranks, gib):
    assert deepep_normal_bytes(arch_for(variant), ranks) / GIB == pytest.approx(gib, rel=REL)


@pytest.mark.parametrize("variant,ranks,t,gib", [
    ("pro", 8, 8320, 4.96), ("pro", 8, 1024, 0.76), ("pro", 16, 8320, 9.04), ("pro", 64, 256, 1.55),
    ("flash", 8, 8320, 2.94), ("flash", 16, 8320, 5.41), ("flash", 32, 1024, 1.42),
])
def test_megamoe_buffer(variant, ranks, t, gib):
    assert megamoe_bytes(arch_for(variant), ranks, t) / GIB == pytest.approx(gib, rel=REL)


def test_budget_of_a_plan_uses_the_inventory():
    """Flash FP4 TP4 with MTP on: the memory table's weights row is the §4.2 38.8 GiB."""
    b = Ctx(mk("b200", tp=4, gpn=4, **M314)).budget
    assert b.weights_gib == pytest.approx(38.8, rel=REL)
    assert b.kv_pool_gib == pytest.approx(b.hbm_gib * b.mem_fraction - b.weights_gib - b.buffers_gib)
    assert b.free_gib + b.activations_gib + b.cuda_graphs_gib == pytest.approx(b.hbm_gib * (1 - b.mem_fraction))


def test_mtp_weights_only_with_speculation():
    with_mtp = Ctx(mk("b200", tp=4, gpn=4, **M314)).budget.weights_gib
    without = Ctx(mk("b200", tp=4, gpn=4)).budget.weights_gib
    assert 0 < with_mtp - without < 0.05 * with_mtp


def test_capacity_is_consistent():
    """max requests at the context × per-request KV fits the pool; one more does not."""
    b = Ctx(mk("h200", "pro", tp=8, mem_fraction_static=0.88, context_length=65536)).budget
    assert b.max_requests_at_context * b.seq_gib_at_context <= b.kv_pool_gib
    assert (b.max_requests_at_context + 1) * b.seq_gib_at_context > b.kv_pool_gib
    assert 0 < b.max_context_at_running <= arch_for("pro").max_pos


def test_plan_budget_public_entry():
    """`plan_budget(plan, hw_profile)`: the call `dsv4ctl plan` can make; same numbers as the rules."""
    from dsv4ctl.sizing import plan_budget
    from dsv4ctl.profiles import find_profile as hardware_profile

    plan = mk("h200", "pro", "fp8", env={"SGLANG_DSV4_FP4_EXPERTS": "0"}, tp=8)
    b = plan_budget(plan, hardware_profile("h200"))
    assert b.weights_gib == pytest.approx(192.5, rel=REL) and b == Ctx(plan).budget
