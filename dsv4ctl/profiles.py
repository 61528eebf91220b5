"""Hardware profiles and tuned overlays on disk: the one loader every command uses.

A profile is found by name among the catalog's files, never by joining a user-given string onto a
path: `hardware: ../../x/evil` in a plan file names no profile (issue 21 #4)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from dsv4ctl.schema.hardware import HardwareProfile
from dsv4ctl.schema.recipe import TunedOverlay


def _catalog() -> dict[str, Path]:
    from dsv4ctl.paths import hardware_profiles_dir

    return {p.stem: p for p in sorted(hardware_profiles_dir().glob("*.yaml"))}


def profile_names() -> list[str]:
    return list(_catalog())


@lru_cache(maxsize=None)
def _load_profile(path: Path) -> HardwareProfile:
    from dsv4ctl.schema.io import load_named

    return load_named(HardwareProfile, path)


def find_profile(name: str) -> HardwareProfile | None:
    """The named profile, or None when the catalog has no such name (a rule reports it)."""
    path = _catalog().get(name)
    return _load_profile(path) if path is not None else None


def get_profile(name: str, where: str = "--hw") -> HardwareProfile:
    """The named hardware profile, or a UserError with a did-you-mean."""
    from dsv4ctl.errors import UserError, did_you_mean

    profile = find_profile(name)
    if profile is None:
        raise UserError(f"unknown hardware '{name}'", where=where, fix=did_you_mean(name, profile_names()))
    return profile


def tuned_overlays() -> list[tuple[str, TunedOverlay]]:
    """(file name, overlay) for every tuned/*.yaml, in name order (later files win)."""
    from dsv4ctl.paths import tuned_dir
    from dsv4ctl.schema.io import load_model

    folder = tuned_dir()
    if not folder.is_dir():
        return []
    out = []
    for p in sorted(folder.glob("*.yaml")):
        from dsv4ctl.tune.guard import check_static  # only when an overlay exists: plan stays lean

        overlay = load_model(TunedOverlay, p)
        check_static(overlay, str(p))  # an overlay without evidence of a real gain is never applied
        out.append((p.name, overlay))
    return out


def tuned_evidence(label: str) -> str | None:
    """For a `tuned:<file>` layer: where its evidence is (tune directory, digest, measured gain)."""
    if not label.startswith("tuned:"):
        return None
    name = label.split(":", 1)[1]
    for file, overlay in tuned_overlays():
        if file == name and overlay.evidence is not None:
            ev = overlay.evidence
            fmt = lambda vals: "[" + ", ".join("-" if v is None else f"{v:.4g}" for v in vals) + "]"  # noqa: E731
            return (f"{file}: {ev.objective} {fmt(ev.baseline_scores)} → {fmt(ev.tuned_scores)} {ev.unit}, "
                    f"tune dir {ev.tune_dir} (sha256 {ev.digest[:16]}), {ev.date}")
    return None
