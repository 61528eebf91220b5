"""Helpers for the PD tests: runtime workers as child processes (each in its own process group, so a
test can SIGSTOP/SIGKILL one), their /metrics, and raw prefill/decode requests as the router sends them."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

MODEL = "dsv4-tiny"


class Worker:
    def __init__(self, model_dir: Path, mode: str, log: Path, *extra: str):
        from dsv4ctl.launch.ports import free_port

        self.port, self.mode, self.log = free_port(), mode, log
        self.bootstrap = free_port() if mode == "prefill" else None
        argv = [sys.executable, "-m", "dsv4rt", "serve", "--model", str(model_dir), "--port", str(self.port),
                "--served-model-name", MODEL, "--context-length", "1024", "--max-running-requests", "8",
                "--disaggregation-mode", mode, "--log-level", "warning", *extra]
        if self.bootstrap:
            argv += ["--disaggregation-bootstrap-port", str(self.bootstrap)]
        with log.open("wb") as fh:
            self.proc = subprocess.Popen(argv, stdout=fh, stderr=subprocess.STDOUT, start_new_session=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def wait_ready(self, deadline: float) -> None:
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, self.log.read_text()[-2000:]
            try:
                if httpx.get(f"{self.url}/health", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        raise AssertionError(f"{self.mode} worker not ready: {self.log.read_text()[-2000:]}")

    def signal(self, sig: int) -> None:
        os.killpg(self.proc.pid, sig)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.signal(signal.SIGKILL)
            self.proc.wait(timeout=10)


def metric(url: str, name: str) -> float:
    text = httpx.get(f"{url}/metrics", timeout=10).text
    m = re.search(rf"^dsv4rt_{name} (\S+)$", text, re.M)
    assert m, f"{name} not in {url}/metrics"
    return float(m.group(1))


def wait_slots_free(*urls: str, timeout: float = 15.0) -> None:
    """Every worker's slots back in the pool (none leaked), within `timeout`."""
    deadline = time.monotonic() + timeout
    while any(metric(u, "kv_slots_used") for u in urls):
        assert time.monotonic() < deadline, {u: metric(u, "kv_slots_used") for u in urls}
        time.sleep(0.2)


def pd_body(room: int, bootstrap_port: int, prompt: str = "hello there", max_tokens: int = 4) -> dict:
    """A completions body with the fields sglang-router adds."""
    return {"model": MODEL, "prompt": prompt, "max_tokens": max_tokens, "temperature": 0, "ignore_eos": True,
            "bootstrap_host": "127.0.0.1", "bootstrap_port": bootstrap_port, "bootstrap_room": room}


def post(url: str, body: dict, timeout: float = 60.0) -> tuple[int, dict | str, float]:
    """(status, JSON or text, seconds); a dead server is status 0."""
    t0 = time.monotonic()
    try:
        resp = httpx.post(f"{url}/v1/completions", json=body, timeout=timeout)
    except httpx.HTTPError as e:
        return 0, str(e), time.monotonic() - t0
    try:
        data = resp.json()
    except ValueError:
        data = resp.text
    return resp.status_code, data, time.monotonic() - t0
