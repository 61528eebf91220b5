"""The per-version SGLang flag vocabulary (sglang_flags.yaml), with `inherits` resolved."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from dsv4ctl.schema.base import Strict

VOCAB_FILE = Path(__file__).with_name("sglang_flags.yaml")
DEFAULT_VERSION = "0.5.23"


class FlagSpec(Strict):
    flag: str | None = None
    kind: Literal["value", "bool", "bool_value_from", "list", "template", "choice"] = "value"
    omit: Any = None
    values: dict[str, str] = Field(default_factory=dict)
    template: str | None = None
    choices: dict[str, list[str]] = Field(default_factory=dict)
    skip_derived: bool = False
    from_: str | None = Field(default=None, alias="from")


class EnvSpec(Strict):
    when: Any = None
    set: dict[str, str] = Field(default_factory=dict)
    value: str | None = None


class Vocabulary(Strict):
    version: str
    command: list[str]
    multinode_port: int
    flags: dict[str, FlagSpec]
    env: dict[str, EnvSpec]
    structural: list[str]


def _merge(raw: dict[str, Any], name: str, seen: tuple[str, ...] = ()) -> dict[str, Any]:
    from dsv4ctl.errors import UserError

    entry = raw.get(name)
    if entry is None or name in seen:
        raise UserError(f"engine version '{name}' missing or cyclic", where=str(VOCAB_FILE))
    parent = entry.get("inherits")
    base = _merge(raw, parent, (*seen, name)) if parent else {"flags": {}, "env": {}, "structural": []}
    out = {**base, **{k: v for k, v in entry.items() if k not in ("flags", "env", "inherits")}}
    for table in ("flags", "env"):
        merged = {**base.get(table, {}), **entry.get(table, {})}
        out[table] = {k: v for k, v in merged.items() if v is not None}
    return out


def versions() -> list[str]:
    from dsv4ctl.schema.io import load_yaml

    return list(load_yaml(VOCAB_FILE)["versions"])


@lru_cache(maxsize=None)
def vocabulary(version: str = DEFAULT_VERSION) -> Vocabulary:
    """The flag vocabulary of one SGLang version; unknown versions get a did-you-mean."""
    from dsv4ctl.errors import UserError, did_you_mean
    from dsv4ctl.schema.io import load_yaml, validate

    raw = load_yaml(VOCAB_FILE)["versions"]
    if version not in raw:
        raise UserError(f"no flag vocabulary for SGLang {version}", where="--engine-version",
                        fix=did_you_mean(version, list(raw)))
    return validate(Vocabulary, {"version": version, **_merge(raw, version)}, f"{VOCAB_FILE.name}: {version}")


def env_for_keys(keys: dict[str, Any], version: str) -> dict[str, tuple[str, str]]:
    """Env vars implied by resolved keys: NAME -> (value, key that implied it)."""
    out: dict[str, tuple[str, str]] = {}
    for key, spec in vocabulary(version).env.items():
        value = keys.get(key)
        if spec.value is not None:
            if value is not None:
                out[spec.value] = (str(value), key)
        elif value == spec.when and value is not None:
            out.update({name: (val, key) for name, val in spec.set.items()})
    return out
