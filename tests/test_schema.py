"""Schema: plan files round-trip exactly; bad files fail with one line naming the file and the field."""

from __future__ import annotations

import pytest

from dsv4ctl.errors import UserError
from dsv4ctl.resolve import resolve_plan
from dsv4ctl.schema import EXPORTED, LaunchPlan, Toggles, dump_plan, load_plan
from dsv4ctl.variants import get_variant

CASES = [("b200", "pro", "balanced", {}), ("gb200", "pro", "max-throughput", {}),
         ("gb300", "pro", "pd-disagg", {"reasoning_parser": "deepseek-v4"}), ("h200", "flash", "cp", {}),
         ("mi355x", "pro", "low-latency", {"megamoe": "off", "hicache": "l2"})]


@pytest.mark.parametrize("hw,variant,recipe,toggles", CASES)
def test_plan_file_round_trip_is_exact(tmp_path, hw, variant, recipe, toggles):
    plan = resolve_plan(hw, variant, recipe, Toggles(**toggles), ["env.EXTRA=1"])
    path = tmp_path / "plan.yaml"
    dump_plan(plan, path)
    again = load_plan(path)
    assert again == plan
    dump_plan(again, tmp_path / "again.yaml")
    assert (tmp_path / "again.yaml").read_text() == path.read_text()


def _bad(tmp_path, text: str) -> str:
    path = tmp_path / "plan.yaml"
    path.write_text(text)
    with pytest.raises(UserError) as info:
        load_plan(path)
    line = info.value.one_line()
    assert str(path) in line and "\n" not in line
    return line


def test_bad_plan_files_name_file_and_field(tmp_path):
    good = tmp_path / "good.yaml"
    dump_plan(resolve_plan("b200", "flash", "balanced"), good)
    text = good.read_text()
    assert "malformed YAML" in _bad(tmp_path, "keys: [unclosed\n")
    assert "field 'keys.tpp'" in _bad(tmp_path, text.replace("  tp: 4\n", "  tp: 4\n  tpp: 3\n"))
    assert "field 'keys.tp'" in _bad(tmp_path, text.replace("  tp: 4\n", "  tp: four\n"))
    assert "field 'nodes'" in _bad(tmp_path, text.replace("nodes: 1\n", "nodes: 0\n", 1))
    assert "mapping" in _bad(tmp_path, "- a\n- b\n")


def test_missing_plan_file(tmp_path):
    with pytest.raises(UserError, match="cannot read"):
        load_plan(tmp_path / "nope.yaml")


def test_json_schema_exports_every_model():
    for name, model in EXPORTED.items():
        schema = model.model_json_schema()
        assert schema["type"] == "object", name
    assert "keys" in LaunchPlan.model_json_schema()["properties"]


@pytest.mark.parametrize("name,layers,params_b", [("flash", 43, 284.33), ("pro", 61, 1573.0)])
def test_variant_facts_match_reference(name, layers, params_b):
    v = get_variant(name)
    assert v.num_hidden_layers == layers and len(v.compress_ratios) == layers + 1
    assert v.compress_ratios[-1] == 0  # the MTP layer is sliding-window only
    counts = v.attention_layer_counts()
    assert sum(counts.values()) == layers
    expected = {"flash": {"swa": 2, "csa": 21, "hca": 20}, "pro": {"swa": 0, "csa": 30, "hca": 31}}[name]
    assert counts == expected


def test_runtime_variants_exist():
    tiny, mini = get_variant("tiny"), get_variant("mini")
    assert (tiny.hidden_size, tiny.n_routed_experts, tiny.vocab_size) == (256, 16, 4096)
    assert (mini.hidden_size, mini.num_hidden_layers, mini.n_routed_experts, mini.num_experts_per_tok) == (2048, 8, 64, 6)
    assert (mini.o_groups, mini.o_lora_rank, mini.index_n_heads, mini.index_topk, mini.vocab_size) == (4, 512, 16, 512, 32000)


def test_unknown_variant_did_you_mean():
    with pytest.raises(UserError) as info:
        get_variant("flsh")
    assert "did you mean 'flash'" in info.value.one_line()


def test_runtime_variants_read_the_runtime_presets():
    """tiny/mini's architecture is written once (runtime/dsv4rt/presets.yaml): the planner's variant is
    the config.json the runtime makes its checkpoints with (issue 19: they had drifted)."""
    from dsv4ctl.schema import Variant
    from dsv4ctl.variants import get_variant
    from dsv4rt.presets import preset_config, preset_names

    for name in preset_names():
        cfg, variant = preset_config(name), get_variant(name)
        shared = [f for f in Variant.model_fields if f in cfg]
        assert len(shared) > 20 and {f: getattr(variant, f) for f in shared} == {f: cfg[f] for f in shared}
