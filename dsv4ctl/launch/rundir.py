"""Run directories: runs/<timestamp>-<name>/ with plan.yaml, command.json, env.json, logs/<role>.log
and manifest.json. The manifest is the contract with `bench` (keys base_url, model, gpus) and with
`status` / `stop` (pids, pgids, status)."""

from __future__ import annotations

import json
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dsv4ctl.errors import UserError

MANIFEST = "manifest.json"
_SECRET_FLAGS = ("--api-key", "--admin-api-key")


def runs_root(run_dir: str | Path | None = None) -> Path:
    """--run-dir, else $DSV4CTL_RUNS, else ./runs."""
    return Path(run_dir or os.environ.get("DSV4CTL_RUNS") or "runs")


def mask_argv(argv: list[str]) -> list[str]:
    """argv with secrets replaced: run directories get shared, API keys must not travel with them."""
    out = list(argv)
    for i, arg in enumerate(out[:-1]):
        if arg in _SECRET_FLAGS:
            out[i + 1] = "***"
    return out


@dataclass
class RunDir:
    path: Path

    @property
    def name(self) -> str:
        return self.path.name

    def log_path(self, role: str) -> Path:
        return self.path / "logs" / f"{role}.log"

    def write_json(self, name: str, data: Any) -> None:
        # Write-then-rename: a concurrent `dsv4ctl status` never reads half a manifest.
        tmp = self.path / f".{name}.tmp"
        tmp.write_text(json.dumps(data, indent=2, default=str) + "\n")
        tmp.replace(self.path / name)

    def read_manifest(self) -> dict:
        """The manifest, or {} when it is unreadable or not a JSON object (corrupt, hand-edited)."""
        try:
            data = json.loads((self.path / MANIFEST).read_text(encoding="utf-8"))
        except (OSError, ValueError, RecursionError):
            return {}
        return data if isinstance(data, dict) else {}

    def update_manifest(self, **fields: Any) -> dict:
        manifest = self.read_manifest() | fields
        self.write_json(MANIFEST, manifest)
        return manifest


def create(root: Path, name: str) -> RunDir:
    """A fresh runs/<UTC timestamp>-<name>/ (with a numeric suffix if two runs start in one second)."""
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip("-") or "run"
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    for n in range(100):
        path = root / (f"{stamp}-{slug}" + (f"-{n}" if n else ""))
        try:
            path.mkdir(parents=True)
        except FileExistsError:
            continue
        except OSError as exc:  # /proc/..., a file in the way, read-only or full disk
            raise UserError(f"cannot create a run directory ({exc.strerror or exc})", where=str(root),
                            fix="pass --run-dir a directory you can write (or set $DSV4CTL_RUNS)") from None
        (path / "logs").mkdir()
        from dsv4ctl.launch import registry

        registry.add(path)  # `status` / `stop` find it from any directory
        return RunDir(path)
    raise UserError(f"could not create a run directory under {root}", fix="clean up old runs")


def list_runs(root: Path) -> list[RunDir]:
    if not root.is_dir():
        return []
    return [RunDir(p) for p in sorted(root.iterdir()) if (p / MANIFEST).is_file()]


def known_runs(root: Path) -> list[RunDir]:
    """Runs under `root` and every run this user registered elsewhere, oldest first (names start
    with their UTC start time), each directory once."""
    from dsv4ctl.launch import registry

    seen, runs = set(), []
    for run in list_runs(root) + [RunDir(p) for p in registry.paths() if (p / MANIFEST).is_file()]:
        key = run.path.resolve()
        if key not in seen:
            seen.add(key)
            runs.append(run)
    return sorted(runs, key=lambda r: r.name)


def find_run(root: Path, ref: str) -> RunDir:
    """A run by directory path, full name, unique name fragment, or 'latest' (here or registered)."""
    if Path(ref, MANIFEST).is_file():
        return RunDir(Path(ref))
    runs = known_runs(root)
    if ref == "latest" and runs:
        return runs[-1]
    matches = [r for r in runs if r.name == ref] or [r for r in runs if ref in r.name]
    if len(matches) == 1:
        return matches[0]
    known = ", ".join(r.name for r in runs[-5:]) or "none"
    what = "is ambiguous" if matches else "not found"
    raise UserError(f"run '{ref}' {what} under {root} (recent: {known})",
                    fix="pass the full run name from `dsv4ctl status`, or --run-dir")
