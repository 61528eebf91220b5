"""Writing the files users name (-o/--output): every failure is one UserError line, exit 2, and a
file that was there before is either replaced whole or left as it was (never half written)."""

from __future__ import annotations

import os
from pathlib import Path


def write_text(path: str | Path, text: str, where: str = "--output") -> None:
    """Write `text` to `path`; a missing folder, a directory, a full disk or an empty name is one
    line naming the path and the fix, never a traceback."""
    from dsv4ctl.errors import UserError

    if str(path) in ("", "."):
        raise UserError("empty file name", where=where, fix="name a file, e.g. -o plan.yaml")
    target = Path(path)
    try:
        if target.exists() and not target.is_file():  # a device or a pipe (/dev/stdout): write through
            target.write_text(text, encoding="utf-8")
        else:
            _replace(target, text)
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise UserError(f"cannot write {path} ({reason})", where=where,
                        fix="choose a writable file in an existing folder") from None


def _replace(target: Path, text: str) -> None:
    """Write a sibling temporary file, then rename it over the target (atomic on one file system)."""
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
