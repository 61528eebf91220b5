"""Flag existence per engine version, and that every reference cell validates clean (or with the
rule its documented failure predicts)."""

from __future__ import annotations

import pytest

from dsv4ctl.pipeline import check_plan
from dsv4ctl.validate import engine_flags, flags
from rule_plans import REFERENCE_CELLS, mk


def test_flag_unknown_on_renamed_flag(monkeypatch):
    """0.5.12 renders `--cuda-graph-max-bs`, which 0.5.23's parser rejects as ambiguous/unknown."""
    args_523 = engine_flags.engine_args("sglang", "0.5.23")
    monkeypatch.setattr(flags, "engine_args", lambda engine, version: args_523)
    old = mk(tp=4, gpn=4, engine_version="0.5.12", cuda_graph_max_bs=64)
    hits = [f for f in check_plan(old).findings if f.rule == "ENGINE-FLAG-UNKNOWN"]
    assert [f.values["flag"] for f in hits] == ["--cuda-graph-max-bs"]
    new = mk(tp=4, gpn=4, engine_version="0.5.23", cuda_graph_max_bs=64)
    assert "ENGINE-FLAG-UNKNOWN" not in [f.rule for f in check_plan(new).findings]


def test_version_without_dump_is_reported_as_info():
    found = {f.rule: f for f in check_plan(mk(tp=4, gpn=4, engine_version="0.5.18")).findings}
    assert found["ENGINE-VERSION-UNCHECKED"].severity == "info"
    assert "ENGINE-VERSION-UNCHECKED" not in {f.rule for f in check_plan(mk(tp=4, gpn=4)).findings}


def test_shipped_dump_has_the_v4_parsers():
    choices = engine_flags.choices_by_dest("sglang", "0.5.23")
    assert "deepseek-v4" in choices["reasoning_parser"] and "deepseekv4" in choices["tool_call_parser"]


@pytest.mark.parametrize("name,plan,documented", REFERENCE_CELLS, ids=[c[0] for c in REFERENCE_CELLS])
def test_reference_cell(name, plan, documented):
    found = {f.rule for f in check_plan(plan).findings if f.severity in ("error", "warning")}
    assert found == set(documented), name
