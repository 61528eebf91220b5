"""The per-user registry of run directories, so `status` and `stop` find a run from any directory.

One small JSON file per run under `$XDG_STATE_HOME/dsv4ctl/runs/` (default `~/.local/state`), written
atomically when the run directory is created; entries whose directory is gone are dropped on read.
"""

from __future__ import annotations

import json
import os
from pathlib import Path


def state_dir() -> Path:
    base = os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state"
    return Path(base) / "dsv4ctl" / "runs"


def add(run_path: Path) -> None:
    """Remember a run directory; a registry that cannot be written never stops a launch."""
    try:
        folder = state_dir()
        folder.mkdir(parents=True, exist_ok=True)
        tmp = folder / f".{run_path.name}.tmp"
        tmp.write_text(json.dumps({"path": str(Path(run_path).resolve())}))
        tmp.replace(folder / f"{run_path.name}.json")
    except OSError:
        pass


def paths() -> list[Path]:
    """Registered run directories that still exist (stale entries are removed)."""
    folder, found = state_dir(), []
    for entry in sorted(folder.glob("*.json")) if folder.is_dir() else ():
        try:
            path = Path(json.loads(entry.read_text())["path"])
        except (OSError, ValueError, KeyError, TypeError):
            continue
        if path.is_dir():
            found.append(path)
        else:
            entry.unlink(missing_ok=True)
    return found
