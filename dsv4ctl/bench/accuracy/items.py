"""What every accuracy task shares: the question item, data-file checks and the optional hub loader."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dsv4ctl.errors import UserError


@dataclass
class TaskData:
    """What a task's loader found: questions, the pool few-shot exemplars come from, and where from."""

    test: list[dict[str, Any]]
    shots: list[dict[str, Any]]
    files: list[Path]
    shot_split: str  # "train" / "dev", or "test" (other questions of the same subject, never the one asked)


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


def packaged(task: str, name: str) -> Path:
    """A data file shipped inside the package (dsv4ctl/bench/data/<task>/, with SOURCE.md and LICENSE)."""
    return Path(__file__).resolve().parents[1] / "data" / task / name


def read_lines(path: Path) -> list[str]:
    """The lines of a text file, gunzipped when its name ends in .gz."""
    path = require_file(path)
    if path.suffix == ".gz":
        import gzip

        with gzip.open(path, "rt", encoding="utf-8") as fh:
            return fh.read().splitlines()
    return path.read_text(encoding="utf-8").splitlines()


def first_existing(folder: Path, names: tuple[str, ...]) -> Path | None:
    return next((folder / n for n in names if (folder / n).is_file()), None)
