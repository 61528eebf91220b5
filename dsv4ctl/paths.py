"""Where packaged data lives, in a checkout and in an installed wheel."""

from __future__ import annotations

from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
REPO_ROOT = PACKAGE_DIR.parent


def hardware_profiles_dir() -> Path:
    """`hardware_profiles/` at the repo top (checkout, editable) or shipped inside the wheel."""
    for candidate in (REPO_ROOT / "hardware_profiles", PACKAGE_DIR / "_data" / "hardware_profiles"):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError("hardware_profiles/ not found next to the package or inside it")


def recipes_dir() -> Path:
    return PACKAGE_DIR / "recipes"


def tuned_dir() -> Path:
    """$DSV4CTL_TUNED_DIR (to try an overlay before filing it), else hardware_profiles/tuned/."""
    import os

    override = os.environ.get("DSV4CTL_TUNED_DIR")
    return Path(override) if override else hardware_profiles_dir() / "tuned"
