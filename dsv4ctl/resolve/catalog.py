"""Hardware profiles and tuned overlays on disk (recipes live in dsv4ctl.recipes, variants in dsv4ctl.variants)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from dsv4ctl.schema.hardware import HardwareProfile
from dsv4ctl.schema.recipe import TunedOverlay


def profile_names() -> list[str]:
    from dsv4ctl.paths import hardware_profiles_dir

    return sorted(p.stem for p in hardware_profiles_dir().glob("*.yaml"))


@lru_cache(maxsize=None)
def _load_profile(path: Path) -> HardwareProfile:
    from dsv4ctl.schema.io import load_named

    return load_named(HardwareProfile, path)


def get_profile(name: str) -> HardwareProfile:
    """The named hardware profile, or a UserError with a did-you-mean."""
    from dsv4ctl.errors import UserError, did_you_mean
    from dsv4ctl.paths import hardware_profiles_dir

    names = profile_names()
    if name not in names:
        raise UserError(f"unknown hardware '{name}'", where="--hw", fix=did_you_mean(name, names))
    return _load_profile(hardware_profiles_dir() / f"{name}.yaml")


def tuned_overlays() -> list[tuple[str, TunedOverlay]]:
    """(file name, overlay) for every tuned/*.yaml, in name order (later files win)."""
    from dsv4ctl.paths import tuned_dir
    from dsv4ctl.schema.io import load_model

    folder = tuned_dir()
    if not folder.is_dir():
        return []
    return [(p.name, load_model(TunedOverlay, p)) for p in sorted(folder.glob("*.yaml"))]
