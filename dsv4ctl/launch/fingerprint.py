"""Versions and a hardware fingerprint for the run manifest: enough to tell two runs' machines apart
without importing torch or sglang (package versions come from installed metadata)."""

from __future__ import annotations

import hashlib
import os
import platform
import shutil
import subprocess
from importlib import metadata

_PACKAGES = ("dsv4ctl", "sglang", "sglang-router", "torch", "deepseek-recipe", "mooncake-transfer-engine")


def versions() -> dict[str, str | None]:
    found: dict[str, str | None] = {"python": platform.python_version()}
    for name in _PACKAGES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = None
    return found


def gpu_names() -> list[str]:
    """One name per visible NVIDIA GPU; empty on a CPU machine (or when nvidia-smi hangs)."""
    smi = shutil.which("nvidia-smi")
    if not smi:
        return []
    try:
        res = subprocess.run([smi, "--query-gpu=name", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return []
    return [ln.strip() for ln in res.stdout.splitlines() if ln.strip()] if res.returncode == 0 else []


def _mem_total_gib() -> float | None:
    try:
        with open("/proc/meminfo") as fh:
            kib = int(fh.readline().split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return round(kib / 2**20, 1)


def hardware() -> dict:
    gpus = gpu_names()
    facts = {
        "hostname": platform.node(),
        "machine": platform.machine(),
        "system": f"{platform.system()} {platform.release()}",
        "cpus": os.cpu_count(),
        "mem_gib": _mem_total_gib(),
        "gpus": gpus,
    }
    # A short digest of the stable facts, so `bench` can tell "same machine" at a glance.
    stable = f"{facts['machine']}|{facts['cpus']}|{facts['mem_gib']}|{','.join(gpus)}"
    facts["fingerprint"] = hashlib.sha256(stable.encode()).hexdigest()[:16]
    return facts
