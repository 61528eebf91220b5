"""`--set key=value` (also `role.key=value`, `env.NAME=value`, `role.env.NAME=value`): the last layer."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from dsv4ctl.errors import UserError, did_you_mean
from dsv4ctl.resolve.layers import Layered
from dsv4ctl.schema.keys import ENV_NAME_PATTERN, KEY_NAMES

LABEL_CHARS = 60  # a --set echoed in a message or a provenance label is cut here


def short(text: str) -> str:
    return text if len(text) <= LABEL_CHARS else f"{text[:LABEL_CHARS]}… ({len(text)} chars)"

ROLES = ("single", "prefill", "decode")


@dataclass(frozen=True)
class Set:
    raw: str
    role: str | None
    env: bool
    key: str
    value: Any


def _parse_value(text: str) -> Any:
    """A YAML scalar or flow value (tp=8, cuda_graph_bs=[1,2]); what does not parse stays text, and
    the key's type check then names it."""
    import yaml

    from dsv4rt import yaml_io

    try:
        return yaml_io.loads(text) if text != "" else None
    except (yaml.YAMLError, ValueError):  # ValueError: e.g. an int of more than 4300 digits
        return text


def parse_set(raw: str) -> Set:
    if "=" not in raw:
        raise UserError(f"'{raw}' is not key=value", where="--set", fix="write --set tp=8")
    path, text = raw.split("=", 1)
    parts = path.strip().split(".")
    role = parts.pop(0) if parts[0] in ROLES and len(parts) > 1 else None
    is_env = parts[0] == "env" and len(parts) == 2
    key = parts[-1] if is_env else ".".join(parts)
    if is_env and not re.fullmatch(ENV_NAME_PATTERN, key):
        raise UserError(f"'{short(key)}' is not an environment variable name", where="--set",
                        fix="use letters, digits and _, not starting with a digit")
    if not is_env and key not in KEY_NAMES:
        raise UserError(f"unknown key '{short(key)}'", where=f"--set {short(raw)}", fix=did_you_mean(key, sorted(KEY_NAMES)))
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
            v.set_env(s.key, s.value if s.value not in ("", "null") else None, f"--set {short(s.raw)}")
        else:
            v.set(s.key, s.value, f"--set {short(s.raw)}")
