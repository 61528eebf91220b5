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


def fit_table(head: list[str], rows: list[list[str]], *, title: str | None = None,
              drop_order: list[str] = (), width: int | None = None, justify: str = "left"):
    """A Rich table that fits the terminal (80 columns when not a terminal): columns named in
    `drop_order` go first to last until the natural width fits, the rest fold instead of cutting
    text with an ellipsis. A caption says what was dropped (`--format json` has every column)."""
    from rich.table import Table

    width = width or _console(False).width
    keep = list(range(len(head)))

    def natural(cols: list[int]) -> int:  # cell text + padding and borders per column
        # headers wrap at spaces, so a header needs only its longest word
        return sum(max([len(w) for w in head[c].split()] + [len(r[c]) for r in rows]) + 3 for c in cols) + 1

    dropped = []
    for name in drop_order:
        if natural(keep) <= width or name not in head:
            continue
        keep.remove(head.index(name))
        dropped.append(name)
    caption = f"not shown at this width: {', '.join(dropped)} (--format json has all)" if dropped else None
    table = Table(title=title, caption=caption)
    for c in keep:
        table.add_column(head[c], overflow="fold", justify=justify)
    for r in rows:
        table.add_row(*(r[c] for c in keep))
    return table
