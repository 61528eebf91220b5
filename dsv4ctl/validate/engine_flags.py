"""The real flag vocabulary of an engine version (reference/sglang-<ver>-server-args.json, the
argparse dump of `sglang serve`), shipped under dsv4ctl/validate/data/."""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Any

from dsv4ctl.paths import PACKAGE_DIR, REPO_ROOT

# validate/data ships a trimmed copy (flags, dest, choices) of each dump inside the package
_DIRS = (PACKAGE_DIR / "validate" / "data", REPO_ROOT / "reference")


def _find(engine: str, version: str) -> Path | None:
    name = f"{engine}-{version}-server-args.json"
    return next((d / name for d in _DIRS if (d / name).is_file()), None)


@lru_cache(maxsize=16)
def engine_args(engine: str, version: str) -> dict[str, dict[str, Any]] | None:
    """flag → argparse record for that engine version, or None when no dump is known."""
    path = _find(engine, version)
    if path is None:
        return None
    data = json.loads(path.read_text(encoding="utf-8"))
    return {flag: arg for arg in data["arguments"] for flag in arg["flags"]}


@lru_cache(maxsize=16)
def choices_by_dest(engine: str, version: str) -> dict[str, tuple[str, ...]]:
    args = engine_args(engine, version) or {}
    return {a["dest"]: tuple(a["choices"]) for a in args.values() if a.get("choices")}
