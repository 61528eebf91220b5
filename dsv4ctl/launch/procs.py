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


def _listening_inodes(port: int) -> set[str]:
    """Socket inodes listening on TCP `port` (any address), from /proc/net/tcp{,6}."""
    inodes = set()
    for table in ("tcp", "tcp6"):
        try:
            lines = (_PROC / "net" / table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            f = line.split()
            if len(f) > 9 and f[3] == "0A" and int(f[1].rsplit(":", 1)[1], 16) == port:
                inodes.add(f[9])
    return inodes


def listener_pids(port: int) -> set[int] | None:
    """Pids holding a socket that listens on `port`, among the processes we may inspect; None when
    /proc cannot tell (not Linux, or no listener visible)."""
    inodes = _listening_inodes(port) if _PROC.is_dir() else set()
    if not inodes:
        return None
    wanted, pids = {f"socket:[{i}]" for i in inodes}, set()
    for entry in _PROC.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if any(os.readlink(fd) in wanted for fd in (entry / "fd").iterdir()):
                pids.add(int(entry.name))
        except OSError:  # another user's process, or gone: not ours either way
            continue
    return pids


def pgid_of(pid: int) -> int | None:
    fields = _stat_fields(_PROC / str(pid))
    return fields[1] if fields else None


def _boot_id() -> str:
    try:
        return (_PROC / "sys" / "kernel" / "random" / "boot_id").read_text().strip()
    except OSError:
        return ""


def start_ticks(pid: int) -> int | None:
    """The process's start time (clock ticks since boot, /proc/PID/stat field 22), or None."""
    try:
        text = (_PROC / str(pid) / "stat").read_text()
    except OSError:
        return None
    return int(text[text.rfind(")") + 2 :].split()[19])


def identity(pid: int) -> dict | None:
    """What tells this process apart from a later one that reuses its pid: (pid, start time, boot)."""
    ticks = start_ticks(pid)
    return None if ticks is None else {"pid": pid, "start_ticks": ticks, "boot_id": _boot_id()}


def group_is_ours(pgid: int, recorded: dict | None) -> bool:
    """True only when group `pgid` is still the one we started: its leader has the recorded start
    time, or (leader gone, forked workers left) every member started after it in the same boot —
    a reused id would have a new leader or members older than the record."""
    if not isinstance(recorded, dict) or recorded.get("pid") != pgid or recorded.get("boot_id") != _boot_id():
        return False
    started = recorded.get("start_ticks")
    if not isinstance(started, int):
        return False
    leader = start_ticks(pgid)
    if leader is not None:
        return leader == started
    members = group_members(pgid)
    ticks = [start_ticks(p) for p in members]
    return bool(members) and all(t is not None and t >= started for t in ticks)
