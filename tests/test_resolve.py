"""Resolve: layer order, provenance of every key, toggles, tuned overlays, --set, derived values, bad input."""

from __future__ import annotations

import shutil

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dsv4ctl.errors import UserError
from dsv4ctl.recipes import recipe_names
from dsv4ctl.resolve import explain, resolve_plan
from dsv4ctl.profiles import profile_names
from dsv4ctl.schema import EngineKeys, Toggles


def test_every_key_and_env_has_provenance():
    plan = resolve_plan("gb200", "pro", "balanced")
    assert set(EngineKeys.model_fields) <= set(plan.provenance)
    assert all(f"env.{name}" in plan.provenance for name in plan.env)
    assert plan.provenance["tp"] == "recipe:balanced.yaml overrides[hw=gb200,variant=pro]"
    assert plan.provenance["model_path"] == "variant:pro checkpoints.fp4"
    assert plan.provenance["quant"] == "hardware:gb200.yaml default_quant"
    assert plan.provenance["env.NCCL_MNNVL_ENABLE"].startswith("derived: hardware:gb200.yaml mnnvl")


def test_layer_order_toggle_then_set():
    base = resolve_plan("gb300", "pro", "balanced")
    assert base.keys.spec_steps == 1
    off = resolve_plan("gb300", "pro", "balanced", Toggles(mtp=False))
    assert off.keys.spec_algorithm is None and off.keys.spec_draft_tokens is None
    assert off.provenance["spec_steps"] == "toggle:--no-mtp"
    back = resolve_plan("gb300", "pro", "balanced", Toggles(mtp=False), ["spec_steps=2"])
    assert (back.keys.spec_steps, back.keys.spec_draft_tokens) == (2, 3)
    assert back.provenance["spec_steps"] == "--set spec_steps=2"
    assert back.provenance["spec_draft_tokens"].startswith("derived")


def test_megamoe_toggle_swaps_deepep_for_megamoe():
    plan = resolve_plan("gb300", "pro", "balanced", Toggles(megamoe="w4a4"))
    k = plan.keys
    assert (k.moe_a2a, k.megamoe, k.deepep_dispatch_tokens_per_rank, k.deepep_num_sms) == ("megamoe", "w4a4", None, None)
    assert plan.env["SGLANG_OPT_DEEPGEMM_MEGA_MOE_NUM_MAX_TOKENS_PER_RANK"] == "8320"
    assert "SGLANG_DEEPEP_NUM_MAX_DISPATCH_TOKENS_PER_RANK" not in plan.env
    off = resolve_plan("b200", "flash", "max-throughput", Toggles(megamoe="off"))
    assert off.keys.moe_a2a == "deepep" and "SGLANG_OPT_DEEPGEMM_MEGA_MOE_NUM_MAX_TOKENS_PER_RANK" not in off.env


def test_derived_deepep_budget_covers_batch_times_draft():
    """DeepEP dispatch cap ≥ per-rank batch × draft tokens when no layer set it (reference §4 item 1)."""
    plan = resolve_plan("gb300", "pro", "balanced", None,
                        ["deepep_dispatch_tokens_per_rank=null", "max_running_requests=1024", "cuda_graph_max_bs=null"])
    k = plan.keys
    need = (1024 // k.dp) * k.spec_draft_tokens
    assert k.deepep_dispatch_tokens_per_rank >= need
    assert plan.provenance["deepep_dispatch_tokens_per_rank"].startswith("derived")
    assert plan.env["SGLANG_DEEPEP_NUM_MAX_DISPATCH_TOKENS_PER_RANK"] == str(k.deepep_dispatch_tokens_per_rank)


def test_derived_megamoe_budget_covers_local_chunk():
    plan = resolve_plan("b200", "pro", "max-throughput", None,
                        ["megamoe_tokens_per_rank=null", "chunked_prefill_size=131072"])
    assert plan.keys.megamoe_tokens_per_rank >= 131072 // 8


def test_cuda_graph_list_is_sorted_and_ends_at_max():
    k = resolve_plan("b200", "pro", "max-throughput").keys
    assert k.cuda_graph_bs == sorted(set(k.cuda_graph_bs)) and k.cuda_graph_bs[-1] == k.cuda_graph_max_bs == 544


def test_pd_roles_carry_only_their_differences():
    plan = resolve_plan("gb300", "pro", "pd-disagg", Toggles(reasoning_parser="deepseek-v4"),
                        ["decode.max_running_requests=64", "env.MC_FORCE_MNNVL=1"])
    assert [r.name for r in plan.roles] == ["prefill", "decode", "router"]
    decode, prefill = plan.role_keys("decode"), plan.role_keys("prefill")
    assert decode.max_running_requests == 64 and decode.reasoning_parser == "deepseek-v4"
    assert prefill.reasoning_parser is None  # parsers go on decode only
    assert plan.provenance["role.decode.max_running_requests"] == "--set decode.max_running_requests=64"
    assert plan.role_env("prefill")["MC_FORCE_MNNVL"] == "1"


def test_tuned_overlay_applies_between_toggles_and_set(tmp_path, monkeypatch):
    from tune_overlays import overlay, write

    write(tmp_path / "b200-pro.yaml", overlay({"hw": "b200", "variant": "pro", "recipe": "balanced"},
                                              {"max_running_requests": 96}))
    monkeypatch.setattr("dsv4ctl.paths.tuned_dir", lambda: tmp_path)
    plan = resolve_plan("b200", "pro", "balanced")
    assert plan.keys.max_running_requests == 96 and plan.provenance["max_running_requests"] == "tuned:b200-pro.yaml"
    assert resolve_plan("b200", "pro", "low-latency").keys.max_running_requests is None
    assert resolve_plan("b200", "pro", "balanced", None, ["max_running_requests=8"]).keys.max_running_requests == 8


def test_explain_lists_layers_and_winner():
    exp = explain("gb300", "pro", "balanced", "mem_fraction_static", None, ["mem_fraction_static=0.85"])
    assert [layer for layer, _ in exp.steps][-1] == "--set mem_fraction_static=0.85"
    assert (exp.final, exp.winner) == (0.85, "--set mem_fraction_static=0.85")
    assert exp.steps[0] == ("recipe:balanced.yaml overrides[hw=gb300,variant=pro]", 0.9)
    env = explain("h200", "flash", "balanced", "env.SGLANG_DSV4_FP4_EXPERTS")
    assert env.final == "0" and "variant:flash checkpoints.fp8" in env.winner
    unset = explain("b200", "flash", "low-latency", "context_length")
    assert unset.final is None and unset.steps == []


@pytest.mark.parametrize("args,needle", [
    (("b20", "flash", "balanced", None, []), "did you mean 'b200'"),
    (("b200", "flahs", "balanced", None, []), "did you mean 'flash'"),
    (("b200", "flash", "balanced-x", None, []), "did you mean 'balanced'"),
    (("b200", "flash", "balanced", None, ["tpp=4"]), "did you mean 'tp'"),
    (("b200", "flash", "balanced", None, ["tp=four"]), "--set tp=four: field 'tp'"),
    (("b200", "flash", "balanced", None, ["mem_fraction_static=1.5"]), "field 'mem_fraction_static'"),
    (("b200", "flash", "balanced", None, ["tp"]), "not key=value"),
    (("b200", "pro", "balanced", None, ["tp=16"]), "--nodes 2"),
    (("b200", "flash", "balanced", Toggles(quant="fp8"), []), "only available on H100 / H200"),
    (("h200", "flash", "pd-disagg", Toggles(quant="fp4"), []), "not supported on the Hopper FP4"),
])
def test_bad_input_is_one_line_user_error(args, needle):
    with pytest.raises(UserError) as info:
        resolve_plan(*args)
    line = info.value.one_line()
    assert needle in line.replace("\\[", "[") and "\n" not in line


def _copy_tree(tmp_path, monkeypatch):
    import dsv4ctl.recipes as recipes
    from dsv4ctl.paths import hardware_profiles_dir

    rdir, hdir = tmp_path / "recipes", tmp_path / "hw"
    shutil.copytree(recipes.RECIPES_DIR, rdir, ignore=shutil.ignore_patterns("*.py", "__pycache__"))
    shutil.copytree(hardware_profiles_dir(), hdir)
    monkeypatch.setattr(recipes, "RECIPES_DIR", rdir)
    monkeypatch.setattr("dsv4ctl.paths.hardware_profiles_dir", lambda: hdir)
    return rdir, hdir


@pytest.mark.parametrize("target,old,new,needle", [
    ("recipes/balanced.yaml", "spec_steps: 1", "spec_steps: [1", "malformed YAML"),
    ("recipes/balanced.yaml", "spec_steps: 1", "spec_stepz: 1", "unknown key 'spec_stepz'"),
    ("recipes/balanced.yaml", "deepep_num_sms: 96", "deepep_num_sms: lots", "key 'deepep_num_sms': Input should be a valid integer"),
    ("hw/b200.yaml", "gpus_per_node: 8", "gpus_per_node: eight", "field 'gpus_per_node'"),
    ("hw/b200.yaml", "mnnvl: false", "mnnvl: false\nnvlinks: 3", "field 'nvlinks'"),
])
def test_bad_data_files_name_file_and_field(tmp_path, monkeypatch, target, old, new, needle):
    _copy_tree(tmp_path, monkeypatch)
    path = tmp_path / target
    path.write_text(path.read_text().replace(old, new, 1))
    with pytest.raises(UserError) as info:
        resolve_plan("b200", "pro", "balanced")
    line = info.value.one_line()
    assert needle in line and path.name in line


CELLS = st.tuples(st.sampled_from(profile_names()), st.sampled_from(["flash", "pro"]), st.sampled_from(recipe_names()))
TOGGLES = st.builds(Toggles, quant=st.sampled_from([None, "fp4", "fp8", "nvfp4"]), nodes=st.sampled_from([None, 1, 2, 4]),
                    mtp=st.sampled_from([None, True, False]), megamoe=st.sampled_from([None, "off", "w4a8", "w4a4"]),
                    hicache=st.sampled_from([None, "l2"]))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cell=CELLS, toggles=TOGGLES)
def test_every_combination_resolves_or_says_why(cell, toggles):
    """Over the whole plan space: a valid plan (keys typed, provenance complete) or one UserError line."""
    try:
        plan = resolve_plan(*cell, toggles, [])
    except UserError as exc:
        assert "\n" not in exc.one_line()
        return
    assert set(EngineKeys.model_fields) <= set(plan.provenance)
    assert plan.nodes >= 1 and plan.roles
