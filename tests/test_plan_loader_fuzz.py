"""Fuzz of the plan schema behind the loader (dsv4ctl.schema.io via load_plan), the one every command
that reads a plan goes through (bench --plan included): a real plan with one field or one engine key
replaced by junk of any shape loads or fails in one UserError line — never a traceback. (Random
bytes, text and YAML shapes are fuzzed by tests/test_plan_input_errors.py, with the loader's bounds.)"""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
import yaml

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from dsv4ctl.errors import UserError  # noqa: E402
from dsv4ctl.schema import load_plan, plan_to_data  # noqa: E402

FUZZ = settings(max_examples=80, deadline=None, suppress_health_check=list(HealthCheck))
SCALARS = (st.none() | st.booleans() | st.integers(min_value=-(10**30), max_value=10**30) | st.floats()
           | st.text(max_size=12))
DATA = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=3)
                    | st.dictionaries(st.text(max_size=8), inner, max_size=3), max_leaves=12)


@pytest.fixture(scope="module")
def base_plan() -> dict:
    from dsv4ctl.resolve import resolve_plan

    return plan_to_data(resolve_plan("h200", "flash", "balanced"))


def load(content: bytes):
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "plan.yaml"
        path.write_bytes(content)
        try:
            return load_plan(path)
        except UserError as exc:
            assert "\n" not in exc.one_line()
            return None


@FUZZ
@given(field=st.sampled_from(["nodes", "gpus_per_node", "keys", "roles", "env", "sizing", "engine", "hardware"]),
       junk=DATA)
def test_a_plan_with_one_field_replaced(base_plan, field, junk):
    load(yaml.safe_dump({**base_plan, field: junk}).encode())


@FUZZ
@given(key=st.sampled_from(["port", "tp", "context_length", "host", "mem_fraction_static", "cuda_graph_bs"]),
       junk=DATA)
def test_a_plan_with_one_key_replaced(base_plan, key, junk):
    load(yaml.safe_dump({**base_plan, "keys": {**base_plan["keys"], key: junk}}).encode())


def test_control_characters_in_a_key_keep_the_error_on_one_line(base_plan):
    """Found by the fuzz above: a YAML key with a newline (or an escape sequence) was echoed raw."""
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "plan.yaml"
        path.write_text(yaml.safe_dump({**base_plan, "keys": {**base_plan["keys"], "a\nb\x1b[31m": 1}}))
        with pytest.raises(UserError) as exc:
            load_plan(path)
    line = exc.value.one_line()
    assert "\n" not in line and "\x1b" not in line and "a\\nb\\x1b[31m" in line.replace("\\[", "[")
