"""The one output sink: Rich consoles for results (stdout) and messages (stderr)."""

from __future__ import annotations

import json
from typing import Any

from rich.console import Console

out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)


def emit_data(data: Any, fmt: str) -> None:
    """Print machine-readable data (json or yaml) to stdout, without Rich markup."""
    if fmt == "json":
        print(json.dumps(data, indent=2, sort_keys=False, default=str))
    elif fmt == "yaml":
        import yaml

        print(yaml.safe_dump(data, sort_keys=False), end="")
    else:
        raise ValueError(f"unknown data format {fmt!r}")
