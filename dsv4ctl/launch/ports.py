"""Port checks done before anything starts, so a busy port is one clear line, not a crashed child."""

from __future__ import annotations

import socket

from dsv4ctl.errors import UserError


def port_in_use(host: str, port: int) -> bool:
    """True when binding `host:port` fails — the test the server itself will face a moment later."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
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
    """A port the OS says is free right now (tests and `--port 0`)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]
