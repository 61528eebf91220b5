"""`dsv4ctl status` and `dsv4ctl stop RUN` for detached (or abandoned) runs, from their manifests."""

from __future__ import annotations

import time

from dsv4ctl.launch import procs
from dsv4ctl.launch.health import health_ok
from dsv4ctl.launch.rundir import RunDir

LIVE_STATES = ("starting", "running", "stopping")


def _groups(manifest: dict) -> tuple[dict[str, int], dict[str, int]]:
    """(our live groups, groups whose id now belongs to another process) by role. Only a group whose
    leader still has the pid + start time recorded at launch may be signalled: a stale or crafted
    manifest must never make `stop` hit an unrelated process."""
    ids, pgids = (m if isinstance(m, dict) else {} for m in (manifest.get("procs"), manifest.get("pgids")))
    ours, foreign = {}, {}
    for role, pgid in pgids.items():
        if not isinstance(pgid, int) or isinstance(pgid, bool) or pgid <= 1 or not procs.group_alive(pgid):
            continue
        (ours if procs.group_is_ours(pgid, ids.get(role)) else foreign)[role] = pgid
    return ours, foreign


def live_roles(manifest: dict) -> list[str]:
    return list(_groups(manifest)[0])


def foreign_groups(manifest: dict) -> dict[str, int]:
    """Recorded groups that are alive but not ours any more: `stop` leaves them alone."""
    return _groups(manifest)[1] if manifest.get("status") in LIVE_STATES else {}


def run_state(run: RunDir) -> dict:
    """The manifest's view, corrected by what is actually running now."""
    manifest = run.read_manifest()
    status = manifest.get("status", "unknown")
    alive = live_roles(manifest)
    if status in LIVE_STATES and not alive:
        status = "exited"  # the processes are gone but nobody recorded it (controller killed)
    healthy = bool(alive) and status == "running" and health_ok(manifest.get("base_url", ""), 1.0)
    return {"name": run.name, "status": status, "healthy": healthy, "alive": alive,
            "base_url": manifest.get("base_url"), "model": manifest.get("model"),
            "engine": manifest.get("engine"), "started_at": manifest.get("started_at")}


def stop_run(run: RunDir, grace_s: float = 10.0) -> tuple[list[str], list[str]]:
    """Stop every live group of this run (never a group whose id now belongs to another process,
    see `foreign_groups`). Returns (stopped roles, roles that needed SIGKILL)."""
    manifest = run.read_manifest()
    if manifest.get("status") not in LIVE_STATES:
        return [], []  # already stopped by its controller; its recorded pgids may belong to others now
    live = _groups(manifest)[0]
    # Router first: it fronts the servers, so stopping it first stops traffic before KV transfer breaks.
    order = sorted(live, key=lambda role: role != "router")
    run.update_manifest(status="stopping")  # tells a still-running controller this exit is wanted
    killed_groups = procs.stop_groups([live[r] for r in order], grace_s)
    killed = [r for r in order if live[r] in killed_groups]
    run.update_manifest(status="stopped", stopped_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
    return order, killed
