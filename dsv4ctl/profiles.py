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
        overlay = load_model(TunedOverlay, p)
        check_overlay(overlay, str(p))  # an overlay without evidence of a real gain is never applied
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


def check_overlay(overlay, where: str) -> None:
    """The tuned-overlay guardrails that need no plan (keys, baseline values, evidence, noise, accuracy);
    the rule check is `dsv4ctl.tune.guard.check_rules`."""
    from dsv4ctl.errors import UserError
    from dsv4ctl.schema.recipe import judge
    from dsv4ctl.schema.tunable import overlay_keys

    allowed = overlay_keys()
    for key in overlay.keys:
        if key not in allowed:
            raise UserError(f"'{key}' is not a tunable key", where=f"{where}: keys.{key}",
                            fix=f"tuned overlays may set only: {', '.join(sorted(allowed))}")
        if key not in overlay.baseline:
            raise UserError(f"no baseline value for '{key}'", where=f"{where}: baseline.{key}",
                            fix="write overlays with `dsv4ctl propose TUNE_DIR`")
    if overlay.env:
        name = next(iter(overlay.env))
        raise UserError("environment variables are not tunable", where=f"{where}: env.{name}",
                        fix="remove env: from the overlay (tune keys only)")
    ev = overlay.evidence
    if ev is None:
        raise UserError("the overlay has no evidence", where=f"{where}: evidence",
                        fix="write overlays with `dsv4ctl propose TUNE_DIR` (it attaches the measurements)")
    verdict = judge(ev.baseline_scores, ev.tuned_scores)
    if not verdict["beyond_noise"]:
        raise UserError(f"evidence shows no improvement beyond noise ({verdict.get('why')})",
                        where=f"{where}: evidence", fix="keep the baseline, or tune again with more repeats/requests")
    if ev.accuracy is not None and not ev.accuracy.get("passed", False):
        raise UserError(f"the accuracy gate failed (drop {ev.accuracy.get('drop')})",
                        where=f"{where}: evidence.accuracy",
                        fix="discard this overlay: the tuned plan changes answers")
