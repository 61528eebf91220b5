"""Process-group bookkeeping that works for our own children and for detached runs alike.

A group counts as alive while it has a member that is not a zombie: PID 1 in a container may never
reap orphans, so `killpg(pgid, 0)` alone would report stopped servers as running forever.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Callable

_PROC = Path("/proc")


def _stat_fields(pid_dir: Path) -> tuple[str, int] | None:
    """(state, pgid) of one /proc entry, or None when it vanished while we looked."""
    try:
        text = (pid_dir / "stat").read_text()
    except OSError:
        return None
    # The command name may contain spaces and parentheses; the fields after the last ')' do not.
    rest = text[text.rfind(")") + 2 :].split()
    return rest[0], int(rest[2])


def group_members(pgid: int) -> list[int]:
    """Live (non-zombie) pids in process group `pgid`."""
    if not _PROC.is_dir():  # not Linux: fall back to the signal probe (zombies count as alive)
        return [pgid] if _signal_ok(pgid, 0) else []
    members = []
    for entry in _PROC.iterdir():
        if entry.name.isdigit():
            fields = _stat_fields(entry)
            if fields and fields[1] == pgid and fields[0] != "Z":
                members.append(int(entry.name))
    return members


def group_alive(pgid: int) -> bool:
    return bool(group_members(pgid))


def _signal_ok(pgid: int, sig: int) -> bool:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        return False
    return True


def reap(pid: int) -> None:
    """Collect the exit status of `pid` if it is our child, so it does not linger as a zombie."""
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


def stop_groups(pgids: list[int], grace_s: float, on_tick: Callable[[], None] = lambda: None) -> list[int]:
    """SIGTERM every group, wait up to `grace_s`, then SIGKILL what is left. Returns the groups that
    needed SIGKILL. `on_tick` lets the caller reap its own children while we wait."""
    for pgid in pgids:
        _signal_ok(pgid, signal.SIGTERM)
    if _wait_gone(pgids, grace_s, on_tick):
        return []
    stubborn = [g for g in pgids if group_alive(g)]
    for pgid in stubborn:
        _signal_ok(pgid, signal.SIGKILL)
    _wait_gone(stubborn, 5.0, on_tick)
    return stubborn


def _wait_gone(pgids: list[int], timeout_s: float, on_tick: Callable[[], None]) -> bool:
    deadline = time.monotonic() + timeout_s
    while True:
        on_tick()
        for pgid in pgids:
            reap(pgid)
        if not any(group_alive(g) for g in pgids):
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)
