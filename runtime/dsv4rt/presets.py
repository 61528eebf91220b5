"""The random checkpoints' configs (presets.yaml): torch-free, so the planner reads the same facts."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any

PRESETS_FILE = Path(__file__).with_name("presets.yaml")


@lru_cache(maxsize=1)
def _data() -> dict[str, Any]:
    from dsv4rt import yaml_io

    return yaml_io.load(PRESETS_FILE)


def preset_names() -> list[str]:
    return list(_data()["presets"])


def preset_config(preset: str) -> dict[str, Any]:
    """The config.json of one preset (a fresh dict: callers may change it)."""
    import copy

    data = _data()
    if preset not in data["presets"]:
        raise ValueError(f"unknown preset '{preset}' (choose from {', '.join(data['presets'])})")
    return copy.deepcopy({**data["common"], **data["presets"][preset]})
