"""The CLI toggles layer: each Toggles field named after an EngineKeys field sets it; --mtp and --megamoe
change several keys."""

from __future__ import annotations

from dsv4ctl.resolve.layers import Layered
from dsv4ctl.schema.recipe import Toggles

# The cookbook's MegaMoE toggle sets this per-rank budget (reference §3 "recommended: 8320").
MEGAMOE_TOKENS_TOGGLE = 8320
SPEC_KEYS = ("spec_algorithm", "spec_steps", "spec_topk", "spec_draft_tokens")


def _mtp(v: Layered, on: bool) -> None:
    if not on:
        for key in SPEC_KEYS:
            v.set(key, None, "toggle:--no-mtp")
    elif not v.get("spec_steps"):
        v.set("spec_steps", 3, "toggle:--mtp (3 steps, the low-latency preset)")


def _megamoe(v: Layered, mode: str) -> None:
    label = f"toggle:--megamoe {mode}"
    if mode == "off":
        if v.get("moe_a2a") == "megamoe":
            v.set_many({"moe_a2a": "deepep", "megamoe": "off", "megamoe_tokens_per_rank": None}, label)
        return
    # MegaMoE replaces DeepEP: its dispatch budget and SM config go, and the runner must stay auto.
    v.set_many({"moe_a2a": "megamoe", "megamoe": mode, "deepep_dispatch_tokens_per_rank": None,
                "deepep_num_sms": None, "moe_runner": None}, label)
    if v.get("megamoe_tokens_per_rank") is None:
        v.set("megamoe_tokens_per_rank", MEGAMOE_TOKENS_TOGGLE, label)


# Toggles with more to do than set the key of the same name; quant, nodes and engine_version choose
# inputs of the resolution (the checkpoint, the node count, the vocabulary), not keys.
SPECIAL = {"mtp": _mtp, "megamoe": _megamoe}
INPUTS = frozenset({"quant", "nodes", "engine_version"})


def apply_toggles(v: Layered, t: Toggles) -> None:
    for name, value in t.model_dump(exclude_none=True).items():
        if name in SPECIAL:
            SPECIAL[name](v, value)
        elif name not in INPUTS:  # a toggle named after a key sets that key
            v.set(name, value, f"toggle:--{name.replace('_', '-')}")
