"""`--set key=value` (also `role.key=value`, `env.NAME=value`, `role.env.NAME=value`): the last layer."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from dsv4ctl.errors import UserError, did_you_mean
from dsv4ctl.resolve.layers import Layered
from dsv4ctl.schema.keys import KEY_NAMES

ROLES = ("single", "prefill", "decode")


@dataclass(frozen=True)
class Set:
    raw: str
    role: str | None
    env: bool
    key: str
    value: Any


def _parse_value(text: str) -> Any:
    import yaml

    try:
        return yaml.safe_load(text) if text != "" else None
    except yaml.YAMLError:
        return text


def parse_set(raw: str) -> Set:
    if "=" not in raw:
        raise UserError(f"'{raw}' is not key=value", where="--set", fix="write --set tp=8")
    path, text = raw.split("=", 1)
    parts = path.strip().split(".")
    role = parts.pop(0) if parts[0] in ROLES and len(parts) > 1 else None
    is_env = parts[0] == "env" and len(parts) == 2
    key = parts[-1] if is_env else ".".join(parts)
    if not is_env and key not in KEY_NAMES:
        raise UserError(f"unknown key '{key}'", where=f"--set {raw}", fix=did_you_mean(key, sorted(KEY_NAMES)))
    value = text if is_env else _parse_value(text)
    return Set(raw, role, is_env, key, value)


def parse_sets(raws: list[str]) -> list[Set]:
    return [parse_set(r) for r in raws]


def apply_sets(v: Layered, sets: list[Set], role: str | None) -> None:
    """Plain sets apply everywhere; role-scoped sets only to that role (after the plain ones)."""
    for s in sorted(sets, key=lambda s: s.role is not None):
        if s.role is not None and s.role != role:
            continue
        if s.env:
            v.set_env(s.key, s.value if s.value not in ("", "null") else None, f"--set {s.raw}")
        else:
            v.set(s.key, s.value, f"--set {s.raw}")
