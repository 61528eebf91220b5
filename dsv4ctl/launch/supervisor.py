"""Start children as process groups, watch them, stop them all.

Every child runs in its own session (`start_new_session=True`), so a terminal Ctrl-C reaches only us
and we decide how to stop: SIGTERM to each group, then SIGKILL after a bounded grace. SGLang forks
scheduler and detokenizer processes; signalling the group, not the pid, is what leaves no orphans.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
import time
from dataclasses import dataclass, field
from typing import Iterator

from dsv4ctl.launch import procs
from dsv4ctl.launch.phases import log_tail
from dsv4ctl.launch.rundir import RunDir


@dataclass
class ChildSpec:
    """One process to run: a role (single, prefill, decode, router), its argv and plan env."""

    role: str
    argv: list[str]
    env: dict[str, str] = field(default_factory=dict)
    port: int | None = None
    host: str = "127.0.0.1"
    http: bool = True  # False for non-zero ranks of a multi-node role: they serve no HTTP
    # Where readiness is judged: this server, or for a worker rank its node 0 (the group answers
    # /health only once every rank has joined).
    api_host: str | None = None
    # Secrets for the child's environment only: never in argv (ps) nor in env.json/command.json.
    secret_env: dict[str, str] = field(default_factory=dict, repr=False)

    @property
    def base_url(self) -> str:
        host = self.api_host or ("127.0.0.1" if self.host in ("0.0.0.0", "::", "") else self.host)
        return f"http://{host}:{self.port}"


class ChildDied(Exception):
    """A child exited while it should be running; carries the log tail for the report."""

    def __init__(self, role: str, returncode: int | None, tail: str, log: str):
        super().__init__(f"{role} exited with code {returncode}")
        self.role, self.returncode, self.tail, self.log = role, returncode, tail, log


@dataclass
class Child:
    spec: ChildSpec
    proc: subprocess.Popen
    identity: dict | None = None  # taken right after the start, while the pid is surely ours

    @property
    def pgid(self) -> int:
        return self.proc.pid  # start_new_session makes the child its own group leader


class Supervisor:
    def __init__(self, run: RunDir, grace_s: float = 10.0):
        self.run = run
        self.grace_s = grace_s
        self.children: list[Child] = []

    def start(self, spec: ChildSpec) -> Child:
        log = self.run.log_path(spec.role)
        with log.open("ab") as fh:  # the child keeps its own copy of the descriptor
            proc = subprocess.Popen(
                spec.argv, env={**os.environ, **spec.env, **spec.secret_env}, stdin=subprocess.DEVNULL,
                stdout=fh, stderr=subprocess.STDOUT, start_new_session=True,
            )
        child = Child(spec, proc, procs.identity(proc.pid))
        self.children.append(child)
        return child

    def check(self) -> None:
        """Raise ChildDied for the first child that has exited."""
        for child in self.children:
            code = child.proc.poll()
            if code is not None:
                log = self.run.log_path(child.spec.role)
                raise ChildDied(child.spec.role, code, log_tail(log), str(log))

    def wait(self, poll_s: float = 0.2) -> None:
        """Block until a child dies (raises ChildDied) or a signal interrupts us."""
        while True:
            self.check()
            time.sleep(poll_s)

    def pids(self) -> dict[str, int]:
        return {c.spec.role: c.proc.pid for c in self.children}

    def identities(self) -> dict[str, dict | None]:
        """Per role (pid, start time, boot): what `dsv4ctl stop` checks before signalling a group."""
        return {c.spec.role: c.identity for c in self.children}

    def stop(self) -> list[str]:
        """Stop every group (later roles first: the router before the servers it fronts).
        Returns the roles that had to be SIGKILLed."""
        live = [c for c in reversed(self.children)]
        with ignore_signals():  # a second Ctrl-C must not abandon the cleanup half way
            killed = procs.stop_groups([c.pgid for c in live], self.grace_s, self._reap)
        self._collect(live)
        return [c.spec.role for c in live if c.pgid in killed]

    def _reap(self) -> None:
        for child in self.children:
            child.proc.poll()

    @staticmethod
    def _collect(children: list[Child]) -> None:
        # /proc can show a leader as a zombie a moment before waitpid() may collect it.
        for child in children:
            with contextlib.suppress(subprocess.TimeoutExpired):
                child.proc.wait(timeout=2.0)


def _raise_interrupt(signum, frame):  # noqa: ARG001 - signal handler signature
    raise KeyboardInterrupt


def _main_thread() -> bool:
    # Signal handlers can only be installed from the main thread (e.g. not when a test or a tool
    # drives a launch from a worker thread); there the caller's own handling applies.
    return threading.current_thread() is threading.main_thread()


@contextlib.contextmanager
def interrupts_raise() -> Iterator[None]:
    """SIGTERM behaves like Ctrl-C (KeyboardInterrupt), so one `finally` path stops the children."""
    if not _main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextlib.contextmanager
def ignore_signals() -> Iterator[None]:
    if not _main_thread():
        yield
        return
    saved = {s: signal.signal(s, signal.SIG_IGN) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in saved.items():
            signal.signal(sig, handler)
