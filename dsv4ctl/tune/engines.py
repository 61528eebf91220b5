"""Start and stop a candidate's server with `serve`'s own library (or use a running endpoint).

Each candidate's run directory (plan.yaml, command.json, logs/<role>.log, manifest.json) lives
inside its candidate directory of the tune, so the server log sits beside its bench records."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from dsv4ctl.errors import UserError

# The included runtime defaults to CPU float32; on a GPU profile it must be told where to run.
BUILTIN_GPU_ARGS = ["--device", "cuda", "--dtype", "bfloat16"]


class CandidateFailed(Exception):
    """The candidate's server did not come up (or died): recorded with its log tail, search goes on."""


@dataclass
class Server:
    base_url: str
    model: str
    gpus: int
    log: Path | None = None


class LaunchEngine:
    """`builtin` or `sglang`, started like `dsv4ctl serve` does, on a free local port."""

    restarts = True

    def __init__(self, name: str, timeout_s: float = 1800.0, engine_bin: str | None = None,
                 extra_args: list[str] | None = None):
        self.name, self.timeout_s, self.engine_bin = name, timeout_s, engine_bin
        self.extra_args = list(extra_args or [])

    def _launch(self, plan):
        from dsv4ctl.launch import assemble
        from dsv4ctl.launch.ports import free_port

        if plan.nodes > 1:
            raise UserError(f"a {plan.nodes}-node plan cannot be tuned from one host", where="tune",
                            fix="tune a single-node plan")
        from dsv4ctl.pipeline import check_plan

        # a local port of its own: candidates never collide with each other or with a server already running
        local = plan.keys.model_copy(update={"host": "127.0.0.1", "port": free_port()})
        opts = assemble.ServeOptions(engine=self.name, engine_bin=self.engine_bin, timeout=self.timeout_s, grace=5.0)
        launch = assemble.build_launch(check_plan(plan.model_copy(update={"keys": local})), opts, engine=self.name,
                                       dry_run=False)
        extra = self.extra_args or (BUILTIN_GPU_ARGS if self.name == "builtin" and plan.hardware != "cpu" else [])
        for spec in launch.specs:
            spec.argv += extra if self.name == "builtin" else []
        return launch

    @contextlib.contextmanager
    def serve(self, plan, workdir: Path) -> Iterator[Server]:
        from dsv4ctl.launch import preflight, rundir, session
        from dsv4ctl.launch.health import NotReady
        from dsv4ctl.launch.phases import log_tail
        from dsv4ctl.launch.supervisor import ChildDied, Supervisor

        launch = self._launch(plan)
        preflight.preflight(launch.specs)
        run = rundir.create(workdir, "server")
        for spec in launch.specs:
            spec.argv = [a.replace(session.RUN_DIR_TOKEN, str(run.path)) for a in spec.argv]
        session.record(run, launch)
        sup = Supervisor(run, grace_s=launch.grace_s)
        log = run.log_path(launch.endpoint.role)
        try:
            try:
                session.start_and_wait_ready(sup, launch)
            except (ChildDied, NotReady) as exc:
                raise CandidateFailed(f"{exc}; log {log}: {log_tail(log, 3)[-300:]}") from None
            run.update_manifest(status="running", pids=sup.pids(), pgids=sup.pids())
            yield Server(launch.endpoint.base_url, launch.model, launch.gpus, log)
        finally:
            sup.stop()
            run.update_manifest(status="stopped")


class EndpointEngine:
    """`--base-url`: somebody else's running server; only client-side settings may change."""

    restarts = False

    def __init__(self, base_url: str, model: str, gpus: int):
        self.server = Server(base_url, model, gpus)

    @contextlib.contextmanager
    def serve(self, plan, workdir: Path) -> Iterator[Server]:
        yield self.server
