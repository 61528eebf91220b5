"""One `dsv4ctl serve` run: run directory → start roles in order → readiness → wait or detach.

Roles start in dependency order (prefill and decode together, then the router once both answer
/health), and the endpoint role must answer one real completion before the run counts as ready.
"""

from __future__ import annotations

import json
import os
import shlex
import time
from dataclasses import dataclass, field

from dsv4ctl.console import err, out
from dsv4ctl.launch import fingerprint, procs
from dsv4ctl.launch.health import NotReady, check_completion, wait_health, wait_until
from dsv4ctl.launch.phases import PhaseTracker
from dsv4ctl.launch.rundir import RunDir, mask_argv
from dsv4ctl.launch.supervisor import ChildDied, ChildSpec, Supervisor, interrupts_raise

RUN_DIR_TOKEN = "{run_dir}"  # in argv: replaced by the run directory once it exists
EXIT_FAILED = 1
EXIT_INTERRUPTED = 130


@dataclass
class Launch:
    """Everything `serve` decided before starting: what runs, and how readiness is judged."""

    name: str
    engine: str
    specs: list[ChildSpec]
    model: str  # the name the server must answer with
    gpus: int
    plan_yaml: str = ""
    api_key: str | None = None
    timeout_s: float = 1800.0
    grace_s: float = 10.0
    summary: dict = field(default_factory=dict)

    @property
    def endpoint(self) -> ChildSpec:
        return next((s for s in self.specs if s.role == "router"), self.specs[0])


def print_dry_run(launch: Launch) -> None:
    for spec in launch.specs:
        out.print(f"[bold]# {spec.role}[/] (port {spec.port})", highlight=False)
        env = " ".join(f"{k}={shlex.quote(v)}" for k, v in spec.env.items())
        out.print((env + " " if env else "") + shlex.join(mask_argv(spec.argv)), highlight=False, markup=False)
    out.print(f"[dim]endpoint {launch.endpoint.base_url}, model {launch.model}[/]", highlight=False)


def record(run: RunDir, launch: Launch) -> None:
    """Write what is about to run, before it runs: a crash still leaves the full recipe behind."""
    (run.path / "plan.yaml").write_text(launch.plan_yaml)
    run.write_json("command.json", {s.role: mask_argv(s.argv) for s in launch.specs})
    run.write_json("env.json", {s.role: s.env for s in launch.specs})
    run.write_json("manifest.json", {
        "name": run.name, "status": "starting", "engine": launch.engine, "model": launch.model,
        "base_url": launch.endpoint.base_url, "gpus": launch.gpus, **launch.summary,
        "roles": {s.role: {"port": s.port, "log": str(run.log_path(s.role))} for s in launch.specs},
        "versions": fingerprint.versions(), "hardware": fingerprint.hardware(),
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "controller_pid": os.getpid(),
    })


def _order(specs: list[ChildSpec]) -> list[list[ChildSpec]]:
    """Start waves: every engine role first, the router after them."""
    servers = [s for s in specs if s.role != "router"]
    routers = [s for s in specs if s.role == "router"]
    return [w for w in (servers, routers) if w]


class _Display:
    """The Rich status line: each role's phase, from its log, plus elapsed time."""

    def __init__(self, sup: Supervisor, status):
        self.sup, self.status, self.t0 = sup, status, time.monotonic()
        self.trackers: dict[str, PhaseTracker] = {}

    def tick(self) -> None:
        self.sup.check()  # a dead child ends the wait at once
        for child in self.sup.children:
            role = child.spec.role
            self.trackers.setdefault(role, PhaseTracker(self.sup.run.log_path(role))).update()
        phases = ", ".join(f"{r}: {t.phase}" for r, t in self.trackers.items())
        self.status.update(f"{phases}  [dim]({time.monotonic() - self.t0:.0f}s)[/]")


def check_owner(spec: ChildSpec, sup: Supervisor) -> None:
    """Readiness must prove that the server answering on the port is this run's child, not a
    stranger that bound it between our pre-flight check and our child (another `serve`, a server
    started by hand). Where /proc cannot tell, the log-free checks above are all we have."""
    if spec.port is None or not spec.http or spec.api_host:
        return
    pids = procs.listener_pids(spec.port)
    if pids is None or any(procs.pgid_of(p) in sup.pids().values() for p in pids):
        return
    who = ", ".join(map(str, sorted(pids))) or "another user's process"
    raise NotReady(f"port {spec.port} is answered by pid {who}, not by this run's {spec.role} "
                   "(another server bound it first)")


def start_and_wait_ready(sup: Supervisor, launch: Launch) -> str:
    """Start all roles and block until the endpoint answers a real request; returns its text."""
    deadline = time.monotonic() + launch.timeout_s
    with err.status("starting") as status:
        display = _Display(sup, status)
        for wave in _order(launch.specs):
            for spec in wave:
                sup.start(spec)
            sup.run.update_manifest(pids=sup.pids(), pgids=sup.pids(), procs=sup.identities())  # `stop` works mid-startup
            for spec in wave:
                wait_health(spec.base_url, deadline, display.tick)
                check_owner(spec, sup)
        ep = launch.endpoint
        status.update("ready: sending one test request")
        return check_completion(ep.base_url, launch.model, launch.api_key, timeout_s=wait_until(deadline))


def run_launch(run: RunDir, launch: Launch, detach: bool) -> int:
    """Start, wait for readiness, then serve until a child dies or we are interrupted.
    Returns the process exit code; never leaves children behind unless `detach`."""
    for spec in launch.specs:
        spec.argv = [a.replace(RUN_DIR_TOKEN, str(run.path)) for a in spec.argv]
    record(run, launch)
    sup = Supervisor(run, grace_s=launch.grace_s)
    stop = True
    try:
        with interrupts_raise():
            code = _supervise(sup, run, launch, detach)
            stop = not detach or code != 0
            return code
    finally:
        if stop:
            killed = sup.stop()
            if killed:
                err.print(f"[yellow]killed after {launch.grace_s:.0f}s grace:[/] {', '.join(killed)}")
            _finish(run, sup)


def _supervise(sup: Supervisor, run: RunDir, launch: Launch, detach: bool) -> int:
    ready = False
    try:
        text = start_and_wait_ready(sup, launch)
        ready = True
        _announce_ready(run, sup, launch, text, detach)
        if not detach:
            sup.wait()
        return 0
    except ChildDied as exc:
        if run.read_manifest().get("status") in ("stopping", "stopped"):  # `dsv4ctl stop` from another shell
            err.print(f"stopped by `dsv4ctl stop` ({exc.role} exited)")
            return 0
        _report_failure(run, f"{exc.role} exited with code {exc.returncode}", {exc.role: exc.tail})
    except NotReady as exc:
        _report_failure(run, f"not ready: {exc}", _tails(sup))
    except KeyboardInterrupt:
        run.update_manifest(status="stopped" if ready else "interrupted")
        err.print("[yellow]stopping[/]" if ready else "[yellow]interrupted during startup, stopping[/]")
        return 0 if ready else EXIT_INTERRUPTED
    return EXIT_FAILED


def _tails(sup: Supervisor) -> dict[str, str]:
    from dsv4ctl.launch.phases import log_tail

    return {c.spec.role: log_tail(sup.run.log_path(c.spec.role), 15) for c in sup.children}


def _report_failure(run: RunDir, what: str, tails: dict[str, str]) -> None:
    run.update_manifest(status="failed", error=what)
    err.print(f"[bold red]serve failed:[/] {what}", highlight=False)
    for role, tail in tails.items():
        err.print(f"[dim]--- {role} log tail ({run.log_path(role)}) ---[/]", highlight=False)
        err.print(tail or "(empty)", markup=False, highlight=False)
    err.print(f"logs kept in {run.path}", highlight=False)


def _announce_ready(run: RunDir, sup: Supervisor, launch: Launch, text: str, detach: bool) -> None:
    pids = sup.pids()
    run.update_manifest(status="running", detached=detach, pids=pids, pgids=pids, procs=sup.identities(),
                        ready_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
    out.print(f"[bold green]ready[/] {launch.endpoint.base_url}  model={launch.model}  run={run.path}",
              highlight=False)
    out.print(f"[dim]test completion: {json.dumps(text)}[/]", highlight=False)
    if detach:
        out.print(f"detached; stop with: dsv4ctl stop {run.name}", highlight=False)
    else:
        out.print("[dim]Ctrl-C stops the server[/]")


def _finish(run: RunDir, sup: Supervisor) -> None:
    status = run.read_manifest().get("status")
    fields = {"stopped_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
              "exit_codes": {c.spec.role: c.proc.returncode for c in sup.children}}
    if status in ("starting", "running", "stopping"):
        fields["status"] = "stopped"
    run.update_manifest(**fields)
