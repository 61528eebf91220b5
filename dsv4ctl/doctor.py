"""`dsv4ctl doctor`: what this host can run, and what will bite at launch.

Host facts are gathered once (`gather`) through three seams — a filesystem root (for /sys, /proc,
/dev), `run(argv) -> stdout | None` for tools and `version(dist) -> str | None` for packages — so tests
feed a fake /sys and fake command outputs. Each check is a small function of the facts (and of a plan
for `--plan`) that returns `Check` records; a fact that could not be read gives status "unknown"
("could not check"), never an exception.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Literal

from pydantic import BaseModel

GIB = 1024**3
SHM_MIN_GIB = 16  # SGLang's docker examples use --shm-size 32g; NCCL and the scheduler's IPC live there
# (label, distribution names to try): what a V4 deployment may need beyond the control plane
PACKAGES = (("sglang", ("sglang",)), ("sglang-router", ("sglang-router",)),
            ("flashinfer", ("flashinfer-python", "flashinfer")), ("deep_gemm", ("deep-gemm", "deep_gemm")),
            ("deep_ep", ("deep-ep", "deep_ep")), ("mooncake", ("mooncake-transfer-engine", "mooncake")),
            ("torch", ("torch",)), ("triton", ("triton",)))


class Check(BaseModel):
    """One finding about the host: ok, info, warn, fail, or unknown (could not check)."""

    name: str
    status: Literal["ok", "info", "warn", "fail", "unknown"]
    detail: str
    fix: str | None = None


@dataclass
class Gpu:
    name: str
    memory_gib: float


@dataclass
class IbPort:
    device: str
    port: str
    state: str  # e.g. ACTIVE, DOWN
    rate: str
    link_layer: str


@dataclass
class Host:
    gpus: list[Gpu] | None  # None: could not check
    gpu_source: str
    driver: str | None = None
    cuda: str | None = None
    topology: str | None = None  # `nvidia-smi topo -m`
    ib: list[IbPort] | None = None  # None: no /sys/class/infiniband at all
    memlock: int | None = None  # bytes; -1 unlimited; None: could not check
    shm_bytes: int | None = None
    packages: dict[str, str | None] = field(default_factory=dict)


def run_tool(argv: list[str]) -> str | None:
    """A tool's stdout, or None when it is missing, fails or hangs (never an exception)."""
    if shutil.which(argv[0]) is None:
        return None
    try:
        res = subprocess.run(argv, capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.SubprocessError):
        return None
    return res.stdout if res.returncode == 0 else None


def dist_version(name: str) -> str | None:
    from importlib import metadata

    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:
        return None


def parse_nvidia_smi(csv_text: str) -> list[Gpu]:
    """`nvidia-smi --query-gpu=name,memory.total --format=csv,noheader,nounits` lines."""
    gpus = []
    for line in csv_text.strip().splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) >= 2 and parts[1].replace(".", "").isdigit():
            gpus.append(Gpu(parts[0], float(parts[1]) / 1024))
    return gpus


def _torch_gpus() -> tuple[list[Gpu] | None, str | None]:
    """GPUs as torch sees them, when torch is installed (None when it is not)."""
    try:
        import torch
    except ImportError:
        return None, None
    if not torch.cuda.is_available():
        return [], torch.version.cuda
    props = [torch.cuda.get_device_properties(i) for i in range(torch.cuda.device_count())]
    return [Gpu(p.name, p.total_memory / GIB) for p in props], torch.version.cuda


def gpu_facts(run: Callable[[list[str]], str | None], use_torch: bool) -> dict[str, Any]:
    smi = run(["nvidia-smi", "--query-gpu=name,memory.total,driver_version", "--format=csv,noheader,nounits"])
    if smi is not None:
        header = run(["nvidia-smi"]) or ""
        cuda = re.search(r"CUDA Version:\s*([\d.]+)", header)
        driver = smi.strip().splitlines()[0].split(",")[-1].strip() if smi.strip() else None
        gpus = parse_nvidia_smi(smi)
        topo = run(["nvidia-smi", "topo", "-m"]) if len(gpus) > 1 else None
        return {"gpus": gpus, "gpu_source": "nvidia-smi", "driver": driver,
                "cuda": cuda.group(1) if cuda else None, "topology": topo}
    gpus, cuda = _torch_gpus() if use_torch else (None, None)
    return {"gpus": gpus, "gpu_source": "torch" if gpus is not None else "none", "cuda": cuda}


def ib_ports(root: Path) -> list[IbPort] | None:
    base = root / "sys" / "class" / "infiniband"
    if not base.is_dir():
        return None
    ports = []
    for dev in sorted(base.iterdir()):
        for port in sorted((dev / "ports").glob("*")):
            state = (_read(port / "state") or "?").split(":")[-1].strip()
            ports.append(IbPort(dev.name, port.name, state, _read(port / "rate") or "?",
                                _read(port / "link_layer") or "?"))
    return ports


def memlock_limit(root: Path) -> int | None:
    """The soft `Max locked memory` of this process from /proc/self/limits (-1 = unlimited)."""
    text = _read(root / "proc" / "self" / "limits")
    m = re.search(r"^Max locked memory\s+(\S+)", text or "", re.M)
    if not m:
        return None
    return -1 if m.group(1) == "unlimited" else int(m.group(1))


def shm_size(root: Path) -> int | None:
    import os

    try:
        st = os.statvfs(root / "dev" / "shm")
    except OSError:
        return None
    return st.f_frsize * st.f_blocks


def gather(root: Path = Path("/"), run=run_tool, version=dist_version, use_torch: bool = True) -> Host:
    """Every fact the checks read; nothing here raises on a missing tool or file."""
    packages = {label: next((v for d in dists if (v := version(d))), None) for label, dists in PACKAGES}
    return Host(**gpu_facts(run, use_torch), ib=ib_ports(root), memlock=memlock_limit(root),
                shm_bytes=shm_size(root), packages=packages)


# --- checks of the host alone -------------------------------------------------------------------

def check_gpus(h: Host) -> list[Check]:
    if h.gpus is None:
        return [Check(name="gpus", status="unknown", detail="could not check: no nvidia-smi and no torch",
                      fix="install the NVIDIA driver (nvidia-smi) or torch to let doctor see GPUs")]
    if not h.gpus:
        return [Check(name="gpus", status="info", detail=f"no GPU found ({h.gpu_source}): the CPU profile, "
                      "the included runtime with the tiny model")]
    names = sorted({g.name for g in h.gpus})
    detail = f"{len(h.gpus)} × {', '.join(names)}, {min(g.memory_gib for g in h.gpus):.0f} GiB each"
    ver = f"driver {h.driver or '?'}, CUDA {h.cuda or '?'}"
    return [Check(name="gpus", status="ok", detail=detail), Check(name="driver", status="info", detail=ver)]


def check_nvlink(h: Host) -> list[Check]:
    if not h.gpus or len(h.gpus) < 2:
        return []
    if h.topology is None:
        return [Check(name="nvlink", status="unknown", detail="could not check (`nvidia-smi topo -m` failed)")]
    links = sorted(set(re.findall(r"\bNV\d+\b", h.topology)))
    if links:
        return [Check(name="nvlink", status="ok", detail=f"GPUs linked by NVLink ({', '.join(links)})")]
    return [Check(name="nvlink", status="warn", detail="no NVLink between GPUs (PCIe only)",
                  fix="tensor parallelism across PCIe is slow; prefer a node with NVLink/NVSwitch")]


def check_ib(h: Host) -> list[Check]:
    if h.ib is None:
        return [Check(name="infiniband", status="info", detail="no /sys/class/infiniband: no RDMA devices")]
    active = [p for p in h.ib if p.state == "ACTIVE"]
    down = [f"{p.device}/{p.port} {p.state}" for p in h.ib if p.state != "ACTIVE"]
    detail = f"{len(active)}/{len(h.ib)} ports ACTIVE" + (f"; not active: {', '.join(down)}" if down else "")
    status = "ok" if active and not down else ("warn" if active or down else "info")
    return [Check(name="infiniband", status=status, detail=detail,
                  fix="check cables and the subnet manager (`ibstat`)" if down else None)]


def check_memlock(h: Host, needed: bool = False) -> list[Check]:
    if h.memlock is None:
        return [Check(name="memlock", status="unknown", detail="could not check (/proc/self/limits)")]
    if h.memlock == -1:
        return [Check(name="memlock", status="ok", detail="unlimited")]
    return [Check(name="memlock", status="fail" if needed else "warn",
                  detail=f"{h.memlock // 1024} KiB; DeepEP and mooncake (RDMA) need it unlimited",
                  fix="ulimit -l unlimited (limits.conf memlock), docker --ulimit memlock=-1")]


def check_shm(h: Host, gpus_needed: int = 0) -> list[Check]:
    if h.shm_bytes is None:
        return [Check(name="shm", status="unknown", detail="could not check /dev/shm")]
    gib = h.shm_bytes / GIB
    small = gib < SHM_MIN_GIB and (gpus_needed > 1 or bool(h.gpus))
    return [Check(name="shm", status="warn" if small else "ok", detail=f"/dev/shm {gib:.1f} GiB",
                  fix=f"docker --shm-size 32g, or remount /dev/shm with size ≥ {SHM_MIN_GIB}G" if small else None)]


def check_packages(h: Host) -> list[Check]:
    have = [f"{k} {v}" for k, v in h.packages.items() if v]
    missing = [k for k, v in h.packages.items() if not v]
    return [Check(name="packages", status="info", detail=("installed: " + ", ".join(have) if have else "none")
                  + ("; not installed: " + ", ".join(missing) if missing else ""))]


HOST_CHECKS = (check_gpus, check_nvlink, check_ib, check_memlock, check_shm, check_packages)


def host_checks(h: Host) -> list[Check]:
    return [c for fn in HOST_CHECKS for c in fn(h)]


# --- which profile and recipes fit --------------------------------------------------------------

def match_profile(h: Host) -> str | None:
    """The hardware profile whose GPU this host has (`cpu` with no GPU; None when unknown)."""
    from dsv4ctl.profiles import get_profile, profile_names

    if h.gpus is None:
        return None
    if not h.gpus:
        return "cpu"
    for name in profile_names():
        key = get_profile(name).gpu.split()[0]
        if key != "none" and re.search(rf"\b{re.escape(key)}\b", h.gpus[0].name, re.I):
            return name
    return None


def checked_plan(hw: str, variant: str, recipe: str, **toggles):
    """The plan with its findings and sizing, from the pipeline."""
    from dsv4ctl.pipeline import PlanRequest, make_plan
    from dsv4ctl.schema.recipe import Toggles

    checked = make_plan(PlanRequest(hw, variant, recipe, Toggles(**toggles) if toggles else None))
    return checked.plan.model_copy(update={"findings": checked.findings, "sizing": checked.sizing})


def fitting_recipes(profile: str, gpu_count: int) -> list[dict[str, Any]]:
    """Each variant × recipe on this profile: fits when it validates and needs no more GPUs than here."""
    from dsv4ctl.errors import UserError
    from dsv4ctl.recipes import recipe_names

    variants = ("tiny", "mini") if profile == "cpu" else ("flash", "pro")
    rows = []
    for variant in variants:
        for recipe in recipe_names():
            try:
                plan = checked_plan(profile, variant, recipe)
            except UserError as exc:
                rows.append({"variant": variant, "recipe": recipe, "fits": False, "why": exc.message})
                continue
            errors = [f.rule for f in plan.findings if f.severity == "error"]
            need = plan.gpus_per_node if plan.engine == "sglang" else 0
            why = ", ".join(errors) or (f"needs {need} GPUs per node" if need > gpu_count else "")
            rows.append({"variant": variant, "recipe": recipe, "fits": not why, "why": why or "ok",
                         "nodes": plan.nodes})
    return rows


# --- a host against a plan ----------------------------------------------------------------------

def plan_needs(plan) -> dict[str, Any]:
    """What a plan asks of each node: GPUs, memory per GPU, RDMA, locked memory, packages."""
    keys = plan.keys
    multi = plan.nodes > 1 or any(r.nodes > 1 for r in plan.roles)
    rdma = keys.transfer_backend == "mooncake" or bool(keys.ib_device) or (multi and not keys.mnnvl)
    sizes = (plan.sizing or {}).values()
    mem = max((sum(s.get(k) or 0 for k in ("weights_gib", "buffers_gib", "activations_gib", "cuda_graphs_gib"))
               for s in sizes), default=0.0)
    pkgs = ["sglang"] if plan.engine == "sglang" else []
    pkgs += ["deep_ep"] if keys.moe_a2a == "deepep" else []
    pkgs += ["mooncake"] if keys.transfer_backend == "mooncake" else []
    pkgs += ["sglang-router"] if any(r.name == "router" for r in plan.roles) else []
    return {"gpus": plan.gpus_per_node if plan.engine == "sglang" else 0, "memory_gib": mem, "rdma": rdma,
            "ib_device": keys.ib_device, "memlock": keys.moe_a2a == "deepep" or keys.transfer_backend == "mooncake",
            "packages": pkgs, "multi_node": multi}


def check_plan_gpus(h: Host, need: dict[str, Any]) -> list[Check]:
    if not need["gpus"]:
        return []
    if h.gpus is None:
        return [Check(name="plan: gpus", status="unknown", detail=f"needs {need['gpus']} GPUs; could not count them")]
    out = [Check(name="plan: gpus", status="ok" if len(h.gpus) >= need["gpus"] else "fail",
                 detail=f"needs {need['gpus']} GPUs per node, this host has {len(h.gpus)}",
                 fix=None if len(h.gpus) >= need["gpus"] else "run on a node of the plan's hardware, or re-plan")]
    if h.gpus and need["memory_gib"]:
        have = min(g.memory_gib for g in h.gpus)
        ok = have >= need["memory_gib"]
        out.append(Check(name="plan: memory", status="ok" if ok else "fail",
                         detail=f"needs ≥ {need['memory_gib']:.0f} GiB per GPU before KV cache, GPUs have {have:.0f}",
                         fix=None if ok else "use more GPUs per replica (tp) or a smaller quantization"))
    return out


def check_plan_rdma(h: Host, need: dict[str, Any]) -> list[Check]:
    if not need["rdma"]:
        return []
    active = {p.device for p in h.ib or [] if p.state == "ACTIVE"}
    want = need["ib_device"]
    names = [d.strip() for d in str(want).split(",")] if want else []
    missing = [d for d in names if d not in active] if names else ([] if active else ["any RDMA device"])
    why = "KV transfer (mooncake)" if need["ib_device"] else "multi-node traffic without MNNVL"
    return [Check(name="plan: rdma", status="fail" if missing else "ok",
                  detail=f"{why} needs {', '.join(names) or 'an ACTIVE IB/RoCE port'}"
                         + (f"; missing or not ACTIVE: {', '.join(missing)}" if missing else ""),
                  fix="attach the IB devices (docker --device /dev/infiniband), or --set ib_device=<this host's "
                      "mlx5_N>" if missing else None)]


def check_plan_packages(h: Host, need: dict[str, Any]) -> list[Check]:
    missing = [p for p in need["packages"] if not h.packages.get(p)]
    return [Check(name="plan: packages", status="fail" if missing else "ok",
                  detail=("missing: " + ", ".join(missing)) if missing
                  else "all installed: " + ", ".join(need["packages"]),
                  fix="use the plan's container image (dsv4ctl render -t docker), or pip install them"
                  if missing else None)] if need["packages"] else []


def plan_checks(h: Host, plan) -> list[Check]:
    need = plan_needs(plan)
    return (check_plan_gpus(h, need) + check_plan_rdma(h, need) + check_plan_packages(h, need)
            + [c.model_copy(update={"name": "plan: memlock"}) for c in check_memlock(h, True) if need["memlock"]]
            + [c.model_copy(update={"name": "plan: shm"}) for c in check_shm(h, need["gpus"])])


def report(h: Host, plan=None) -> dict[str, Any]:
    """Everything doctor prints: host checks, the matching profile and recipes, and the plan's checks."""
    profile = match_profile(h)
    recipes = fitting_recipes(profile, len(h.gpus or [])) if profile else []
    checks = host_checks(h) + (plan_checks(h, plan) if plan is not None else [])
    return {"profile": profile, "recipes": recipes, "checks": [c.model_dump() for c in checks],
            "ok": not any(c.status == "fail" for c in checks)}
