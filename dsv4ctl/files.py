"""Writing the files users name (-o/--output): every failure is one UserError line, exit 2."""

from __future__ import annotations

from pathlib import Path


def write_text(path: str | Path, text: str, where: str = "--output") -> None:
    """Write `text` to `path`; a missing folder, a directory, a full disk or an empty name is one
    line naming the path and the fix, never a traceback."""
    from dsv4ctl.errors import UserError

    if str(path) in ("", "."):
        raise UserError("empty file name", where=where, fix="name a file, e.g. -o plan.yaml")
    try:
        with open(path, "w", encoding="utf-8") as fh:
            fh.write(text)
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise UserError(f"cannot write {path} ({reason})", where=where,
                        fix="choose a writable file in an existing folder") from None
