"""Rendered argv must parse on the targeted SGLang: every flag exists in 0.5.23's real parser dump, values fit
its choices and types; when `sglang` is importable its own parser (ServerArgs.add_cli_args) must accept it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dsv4ctl.render.sglang import render_commands
from dsv4ctl.vocab import vocabulary
from dsv4ctl.resolve import resolve_plan
from dsv4ctl.schema import KEY_NAMES, Toggles
from test_golden_cookbook import CELLS, PD_CELLS  # tests/ is on sys.path (rootdir-less test modules)

ARGS_FILE = Path(__file__).resolve().parents[1] / "dsv4ctl" / "render" / "sglang-0.5.23-server-args.json"
ARGS = {f: a for a in json.loads(ARGS_FILE.read_text())["arguments"] for f in a["flags"]}
DEPRECATED = {"DeprecatedStoreTrueAction"}

TOGGLE_VARIANTS = [
    {}, {"mtp": False}, {"mtp": True}, {"megamoe": "w4a4"}, {"megamoe": "off"}, {"hicache": "l2"},
    {"reasoning_parser": "deepseek-v4", "tool_call_parser": "deepseekv4", "context_length": 393216},
]


def _plans():
    seen = set()
    for hws, variants, quants, recipes, *_ in CELLS:
        for key in ((h, v, q, r) for h in hws.split() for v in variants.split() for q in quants.split()
                    for r in recipes.split()):
            seen.add(key)
    seen |= {(hw, v, q, "pd-disagg") for hw, v, q, *_ in PD_CELLS}
    return sorted(seen)


def _engine_argvs(plan):
    return [c.argv for c in render_commands(plan) if c.argv[:2] == ["sglang", "serve"]]


def check_argv(argv: list[str]) -> None:
    i = 2
    while i < len(argv):
        flag = argv[i]
        assert flag in ARGS, f"{flag} is not a flag of sglang 0.5.23"
        spec = ARGS[flag]
        assert spec["kind"] not in DEPRECATED, f"{flag} is deprecated in 0.5.23"
        if spec["nargs"] == 0:
            i += 1
            continue
        n = 1 if spec["nargs"] in (None, "?") else len(argv)  # '+' takes the rest up to the next flag
        values = []
        j = i + 1
        while j < len(argv) and (len(values) < n) and not argv[j].startswith("--"):
            values.append(argv[j])
            j += 1
        assert values, f"{flag} needs a value"
        for v in values:
            if spec["choices"]:
                assert v in map(str, spec["choices"]), f"{flag} {v} not in {spec['choices']}"
            if spec["type"] == "int":
                int(v)
            elif spec["type"] == "float":
                float(v)
        i = j


@pytest.mark.parametrize("cell", _plans(), ids=lambda c: "-".join(c))
@pytest.mark.parametrize("toggles", TOGGLE_VARIANTS, ids=lambda t: ",".join(f"{k}={v}" for k, v in t.items()) or "none")
def test_rendered_flags_exist_in_0523(cell, toggles):
    hw, variant, quant, recipe = cell
    plan = resolve_plan(hw, variant, recipe, Toggles(quant=quant, **toggles), [])
    for argv in _engine_argvs(plan):
        check_argv(argv)


def test_every_key_is_rendered_or_declared_structural():
    """A key that no vocabulary entry covers would be silently dropped from the command."""
    vocab = vocabulary("0.5.23")
    covered = set(vocab.flags) | set(vocab.env) | set(vocab.structural)
    assert KEY_NAMES - covered == set()


def test_vocabulary_flags_all_exist_in_0523():
    vocab = vocabulary("0.5.23")
    for key, spec in vocab.flags.items():
        flags = [spec.flag] if spec.flag else [f for argv in spec.choices.values() for f in argv if f.startswith("--")]
        for flag in flags:
            assert flag in ARGS and ARGS[flag]["kind"] not in DEPRECATED, (key, flag)


def test_real_sglang_parser_accepts_argv():
    server_args = pytest.importorskip("sglang.srt.server_args")
    import argparse

    parser = argparse.ArgumentParser()
    server_args.ServerArgs.add_cli_args(parser)
    for cell in _plans():
        hw, variant, quant, recipe = cell
        plan = resolve_plan(hw, variant, recipe, Toggles(quant=quant), [])
        for argv in _engine_argvs(plan):
            parser.parse_args(argv[2:])
