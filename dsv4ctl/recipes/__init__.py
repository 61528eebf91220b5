"""Recipe YAML files and their loader. `_common.yaml` holds platform facts applied under every recipe."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from dsv4ctl.schema.recipe import Recipe

RECIPES_DIR = Path(__file__).resolve().parent
COMMON = "_common"


def _path(name: str) -> Path:
    return RECIPES_DIR / f"{name}.yaml"


def recipe_names() -> list[str]:
    """The user-facing recipes (files starting with `_` are shared layers, not recipes)."""
    return sorted(p.stem for p in RECIPES_DIR.glob("*.yaml") if not p.stem.startswith("_"))


@lru_cache(maxsize=None)
def _load(path: Path) -> Recipe:
    from dsv4ctl.schema.io import load_named

    return load_named(Recipe, path)


def get_recipe(name: str) -> Recipe:
    """The named recipe, or a UserError with a did-you-mean."""
    from dsv4ctl.errors import UserError, did_you_mean

    names = recipe_names()
    if name not in names:
        raise UserError(f"unknown recipe '{name}'", where="--recipe", fix=did_you_mean(name, names))
    return _load(_path(name))


def common_layer() -> Recipe:
    return _load(_path(COMMON))


def recipe_file(name: str) -> str:
    return f"{name}.yaml"
