"""What every accuracy task shares: the question item, data-file checks and the optional hub loader."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dsv4ctl.errors import UserError


@dataclass
class Item:
    index: int
    prompt: str  # completion prompt (or the last user turn in chat mode)
    gold: str
    messages: list[dict[str, Any]] | None = None
    subject: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)


def require_file(path: Path) -> Path:
    path = Path(path)
    if not path.is_file():
        raise UserError("data file not found", where=str(path), fix="pass --data-path to an existing file")
    return path


def sha256(paths: list[Path]) -> dict[str, str]:
    """Checksums of the data files a score was computed from (stored in the score's setup)."""
    out = {}
    for p in paths:
        h = hashlib.sha256()
        with open(p, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
        out[str(p)] = h.hexdigest()
    return out


def load_hub(name: str, config: str, splits: tuple[str, ...]):
    """Rows from the Hugging Face hub (needs the optional `datasets` package and network)."""
    try:
        import datasets
    except ImportError:
        raise UserError("no --data-path given and the `datasets` package is not installed",
                        fix="pass --data-path (GSM8K JSONL / MMLU CSV or parquet) or pip install datasets") from None
    loaded = [list(datasets.load_dataset(name, config, split=s)) for s in splits]
    return (*loaded, [Path(f"hf://{name}/{config}")])
