"""Ports: validated before anything starts, checked the way the server will bind them, and claimed
for the whole startup so two `serve` runs on one port cannot both pass the check."""

from __future__ import annotations

import contextlib
import fcntl
import os
import socket
import tempfile
from pathlib import Path
from typing import Iterator

from dsv4ctl.errors import UserError

MAX_PORT = 65535


def check_port(port: object, where: str = "--port") -> int:
    """An integer in 1..65535, or one UserError line (exit 2): the last check before a child binds."""
    if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= MAX_PORT:
        raise UserError(f"port must be an integer in 1..{MAX_PORT}, got {port!r}", where=where,
                        fix="pass a port such as 30000")
    return port


def port_in_use(host: str, port: int) -> bool:
    """True when binding `host:port` fails — the test the server itself will face a moment later.
    SO_REUSEADDR as servers set it: a port whose last connections sit in TIME_WAIT after a stop is
    free (a listener still makes the bind fail)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return True
    return False


def ensure_free(host: str, port: int, role: str) -> None:
    if port_in_use(host, port):
        raise UserError(
            f"port {port} ({role}) on {host} is already in use",
            where="serve",
            fix=f"stop whatever listens there (`ss -ltnp 'sport = :{port}'`, `dsv4ctl status`) or pass --port",
        )


def free_port(host: str = "127.0.0.1") -> int:
    """A port the OS says is free right now (tests)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def _lock_dir() -> Path:
    path = Path(tempfile.gettempdir()) / f"dsv4ctl-{os.getuid()}" / "ports"
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    return path


@contextlib.contextmanager
def claimed(ports: list[int]) -> Iterator[None]:
    """Hold an exclusive lock per port (a file lock: released by the kernel even on kill -9) from
    the pre-flight check until the caller is done, i.e. until the children have bound their ports.
    A second `serve` for the same port fails at once instead of racing ours."""
    with contextlib.ExitStack() as stack:
        for port in sorted(set(ports)):
            fh = stack.enter_context(open(_lock_dir() / f"{port}.lock", "a+"))
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise UserError(f"port {port} is being claimed by another `dsv4ctl serve` starting right now",
                                where="serve", fix="wait for it (`dsv4ctl status`) or pass another --port") from None
        yield
