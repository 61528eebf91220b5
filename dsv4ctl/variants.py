"""DeepSeek-V4 variants (Flash, Pro, and the runtime's tiny/mini): config.json facts + checkpoints.

The numbers live in variants.yaml next to this module (data in YAML, logic in code); a variant with a
`preset` (tiny, mini) takes its architecture from the runtime's presets.yaml, the config.json its
random checkpoints are made with, so planner and runtime cannot disagree."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from dsv4ctl.schema.variant import Checkpoint, Variant

VARIANTS_FILE = Path(__file__).with_name("variants.yaml")


@lru_cache(maxsize=1)
def _raw() -> dict:
    from dsv4ctl.schema.io import load_yaml

    return load_yaml(VARIANTS_FILE)


@lru_cache(maxsize=None)
def _variant(name: str) -> Variant:
    """One variant, validated on first use (a plan for flash reads neither pro nor the runtime presets)."""
    from dsv4ctl.schema.io import validate

    body = _raw()[name]
    return validate(Variant, {"name": name, **_preset_facts(body), **body}, f"{VARIANTS_FILE.name}: {name}")


def all_variants() -> dict[str, Variant]:
    return {name: _variant(name) for name in _raw()}


def _preset_facts(body: dict) -> dict:
    """The Variant fields of the runtime preset the body names (none without a preset)."""
    if not isinstance(body, dict) or not body.get("preset"):
        return {}
    from dsv4rt.presets import preset_config

    return {k: v for k, v in preset_config(body["preset"]).items() if k in Variant.model_fields}


def variant_names() -> list[str]:
    return list(_raw())


def get_variant(name: str) -> Variant:
    """The named variant, or a UserError with a did-you-mean."""
    from dsv4ctl.errors import UserError, did_you_mean

    names = variant_names()
    if name not in names:
        raise UserError(f"unknown variant '{name}'", where="--variant", fix=did_you_mean(name, names))
    return _variant(name)


def get_checkpoint(variant: Variant, quant: str) -> Checkpoint:
    from dsv4ctl.errors import UserError

    if quant not in variant.checkpoints:
        raise UserError(f"variant '{variant.name}' has no {quant} checkpoint", where="--quant",
                        fix="use one of: " + ", ".join(variant.checkpoints))
    return variant.checkpoints[quant]
