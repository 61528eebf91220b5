"""The one output sink: Rich consoles for results (stdout) and messages (stderr)."""

from __future__ import annotations

import json
from functools import lru_cache
from typing import Any


@lru_cache(maxsize=None)
def _console(stderr: bool):
    # rich.console costs ~25 ms to import; `plan --format json|shell|env` never needs it.
    from rich.console import Console

    return Console(stderr=stderr, soft_wrap=True)


def __getattr__(name: str):
    """`out` (results, stdout) and `err` (messages, stderr), created on first use."""
    if name in ("out", "err"):
        return _console(stderr=name == "err")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def emit_data(data: Any, fmt: str) -> None:
    """Print machine-readable data (json or yaml) to stdout, without Rich markup."""
    if fmt == "json":
        print(json.dumps(data, indent=2, sort_keys=False, default=str))
    elif fmt == "yaml":
        import yaml

        print(yaml.safe_dump(data, sort_keys=False), end="")
    else:
        raise ValueError(f"unknown data format {fmt!r}")
