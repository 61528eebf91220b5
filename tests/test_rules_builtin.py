"""Plans for the included runtime are checked against the runtime's own key table at plan time."""

import yaml

from dsv4ctl.resolve import resolve_plan
from dsv4ctl.schema import dump_plan
from dsv4ctl.schema.recipe import Toggles
from dsv4ctl.validate import run_rules


def rules_of(plan) -> dict[str, str]:
    return {f.rule: f.message for f in run_rules(plan)}


def test_tiny_and_mini_plans_are_clean_on_cpu_and_gpu():
    for hw, variant in (("cpu", "tiny"), ("cpu", "mini"), ("h100", "mini"), ("b200", "tiny")):
        plan = resolve_plan(hw, variant, "balanced")
        assert plan.engine == "builtin" and plan.keys.spec_algorithm == "EAGLE" and plan.keys.spec_steps == 1
        assert not [f for f in run_rules(plan) if f.severity == "error"], (hw, variant)
    assert resolve_plan("cpu", "tiny", "balanced").keys.disable_cuda_graph
    assert resolve_plan("h100", "mini", "balanced").keys.cuda_graph_bs  # captured on a GPU


def test_mtp_chains_run_on_the_runtime_and_trees_are_refused_by_name():
    for recipe in ("low-latency", "balanced"):
        assert "BUILTIN-KEY-UNSUPPORTED" not in rules_of(resolve_plan("cpu", "tiny", recipe, Toggles(mtp=True)))
    found = rules_of(resolve_plan("cpu", "tiny", "low-latency", None, ["spec_topk=2"]))
    assert "spec_topk=2" in found["BUILTIN-KEY-UNSUPPORTED"]


def test_low_latency_plan_reaches_the_runtime_engine_with_its_mtp(tmp_path):
    from dsv4rt.cli import engine_config, plan_options

    dump_plan(resolve_plan("cpu", "tiny", "low-latency"), tmp_path / "plan.yaml")
    cfg = engine_config({"model": "/m", **plan_options(tmp_path / "plan.yaml")})
    assert (cfg.speculative_algorithm, cfg.spec_steps, cfg.speculative_eagle_topk, cfg.speculative_num_draft_tokens) \
        == ("EAGLE", 3, 1, 4)


def test_expert_parallel_on_the_runtime_is_an_error():
    found = rules_of(resolve_plan("h100", "mini", "balanced", None, ["moe_a2a=deepep"]))
    assert "moe_a2a='deepep'" in found["BUILTIN-KEY-UNSUPPORTED"]


def test_the_rule_agrees_with_what_the_runtime_refuses(tmp_path):
    """The same plan file: the rule fires exactly when `python -m dsv4rt serve --plan` refuses it."""
    from dsv4rt.cli import UsageError, plan_options

    for sets in ([], ["moe_a2a=deepep"], ["page_size=64"], ["spec_topk=2"], ["spec_algorithm=DSPARK"]):
        plan = resolve_plan("cpu", "tiny", "balanced", None, sets)
        dump_plan(plan, tmp_path / "plan.yaml")
        try:
            plan_options(tmp_path / "plan.yaml")
            refused = False
        except UsageError:
            refused = True
        assert refused == ("BUILTIN-KEY-UNSUPPORTED" in rules_of(plan)), sets


def test_multi_process_plan_for_the_runtime_is_an_error(tmp_path):
    plan = resolve_plan("cpu", "tiny", "balanced")
    data = yaml.safe_load(plan.model_dump_json())
    data["roles"] = [{"name": "prefill"}, {"name": "decode"}]
    found = rules_of(type(plan).model_validate(data))
    assert "prefill" in found["BUILTIN-MULTI-PROCESS"]
