"""`dsv4ctl quickstart`: the whole path on this machine in a few minutes, with one report at the end.

Plan for the local hardware → the tiny checkpoint (made on first use) → serve it on the included
runtime → short GSM8K and MMLU runs → a small latency/throughput sweep → one HTML report (plus
JSON/CSV/PNG) → stop the server. The server is stopped whatever happens (error, Ctrl-C). The tiny
model has random weights: its text is gibberish and its accuracy ~0 by design; what is shown is that
every step works, on data that ships inside the package, with no network.
"""

from __future__ import annotations

import csv
import io
import json
import shutil
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dsv4ctl.errors import UserError

NOTE = ("The tiny model has random weights: its text is gibberish and its accuracy is ~0 by design. "
        "Quickstart shows that the whole path works — plan, serve, accuracy, load, report — not a score.")
PHASES = ("plan", "checkpoint", "serve", "gsm8k", "mmlu", "load", "report", "stop")
# Sizes that finish in minutes on 2 CPU cores (the tiny model's tokenizer is one token per byte).
GSM8K = {"shots": 1, "limit": 6, "max_tokens": 16, "concurrency": 3}
MMLU = {"shots": 1, "limit": 6, "max_tokens": 4, "concurrency": 3}
LOAD = {"sweep": "1,4", "num_prompts": 8, "input_len": 128, "output_len": 16, "warmup": 1}


@dataclass
class Phases:
    """Prints `[k/n] phase …` and how long each phase took; the bench phases add their own bars."""

    times: dict[str, float] = field(default_factory=dict)

    @contextmanager
    def __call__(self, name: str, what: str):
        from dsv4ctl.console import err

        k = PHASES.index(name) + 1
        err.print(f"[bold cyan][{k}/{len(PHASES)}][/] {what}", highlight=False)
        t0 = time.monotonic()
        try:
            yield
        finally:
            self.times[name] = round(time.monotonic() - t0, 2)
            err.print(f"[dim]      {name} {self.times[name]:.1f}s[/]", highlight=False)


def local_plan():
    """(plan request without the serve overrides, what was found): the tiny model on this host's
    profile when a GPU profile takes it, else the CPU profile (the planner's cpu / tiny / balanced)."""
    from dsv4ctl import doctor
    from dsv4ctl.launch import assemble, fingerprint
    from dsv4ctl.pipeline import PlanRequest
    from dsv4ctl.schema.recipe import Toggles

    names = fingerprint.gpu_names()
    host = doctor.Host(gpus=[doctor.Gpu(n, 0.0) for n in names], gpu_source="nvidia-smi")
    profile = doctor.match_profile(host) if names else "cpu"
    if profile not in (None, "cpu"):
        for quant in ("fp4", "bf16"):
            try:
                plan = doctor.checked_plan(profile, "tiny", "balanced", quant=quant)
            except UserError:
                continue
            if not any(f.severity == "error" for f in plan.findings):
                request = PlanRequest(hw=profile, variant="tiny", recipe="balanced", toggles=Toggles(quant=quant))
                return request, f"{len(names)} × {names[0]} (profile {profile})"
    found = f"{len(names)} GPU(s), no profile takes the tiny model: CPU" if names else "no GPU: the CPU profile"
    return assemble.embedded_default_request(), found


def start_server(request, tiny: Path, port: int):
    """Serve the tiny checkpoint on the included runtime, detached; returns its run directory."""
    from dataclasses import replace

    from dsv4ctl.launch import assemble, preflight, rundir, session
    from dsv4ctl.pipeline import make_plan
    from dsv4ctl.schema.recipe import CliOverrides

    cli = CliOverrides(model_path=str(tiny), host="127.0.0.1", port=port, served_model_name="dsv4-tiny")
    checked = make_plan(replace(request, cli=cli))
    opts = assemble.ServeOptions(engine="builtin", name="quickstart", timeout=600.0, grace=5.0)
    launch = assemble.build_launch(checked, opts, engine="builtin", dry_run=False)
    preflight.preflight(launch.specs)
    run = rundir.create(rundir.runs_root(None), launch.name)
    code = session.run_launch(run, launch, detach=True)
    if code != 0:
        raise UserError(f"the server did not start (exit {code})", where=str(run.path), fix="read its logs/")
    return run


def summary_of(run: Path) -> dict[str, Any]:
    return json.loads((run / "summary.json").read_text())


def run(out: Path, port: int | None = None) -> dict[str, Any]:
    """Every phase in order; the server is stopped in `finally` (errors and Ctrl-C included)."""
    from dsv4ctl.console import err
    from dsv4ctl.launch import builtin, control
    from dsv4ctl.launch.ports import free_port

    phase, result = Phases(), {"kind": "quickstart", "note": NOTE, "out": str(out)}
    err.print(f"[bold]quickstart[/] → {out}\n[yellow]{NOTE}[/]", highlight=False)
    with phase("plan", "planning for this machine"):
        request, found = local_plan()
        result["plan"] = {"hardware": request.hw, "variant": request.variant, "recipe": request.recipe, "found": found}
    with phase("checkpoint", "the tiny checkpoint (made once, then reused)"):
        tiny = builtin.ensure_tiny_checkpoint(log=lambda m: err.print(f"[dim]{m}[/]"))
    with phase("serve", "serving it on the included runtime"):
        server = start_server(request, tiny, port or free_port())
    try:
        url = server.read_manifest()["base_url"]
        result["server"] = {"run": str(server.path), "base_url": url}
        measure(phase, url, tiny, out)
        with phase("report", "writing the report"):
            result["report"] = str(write_report(out, result, phase.times).resolve())
    finally:
        with phase("stop", "stopping the server"):
            control.stop_run(server, grace_s=5.0)
    result["phases_s"] = phase.times
    return result


def measure(phase: Phases, url: str, tiny: Path, out: Path) -> None:
    from dsv4ctl.bench import accuracy_cmd, load_cmd
    from dsv4ctl.bench.options import AccuracyOptions, LoadOptions

    common = {"base_url": url, "progress": False}
    with phase("gsm8k", "GSM8K accuracy (packaged test split, a few questions)"):
        accuracy_cmd.main(AccuracyOptions(task="gsm8k", **GSM8K, **common, out=out / "gsm8k"))
    with phase("mmlu", "MMLU accuracy (packaged test split, a few questions)"):
        accuracy_cmd.main(AccuracyOptions(task="mmlu", **MMLU, **common, out=out / "mmlu"))
    with phase("load", "latency/throughput sweep (concurrency 1 and 4, lengths in tokens)"):
        load_cmd.main(LoadOptions(**LOAD, tokenizer=str(tiny), **common, out=out / "load"))


def write_report(out: Path, result: dict[str, Any], times: dict[str, float]) -> Path:
    """report.html (the note, each run's table, the load plots inlined), summary.json, summary.csv
    (section, column, value) and the PNGs under plots/."""
    import html

    from dsv4ctl.bench.report.build import page, section
    from dsv4ctl.bench.report.rows import table_rows

    runs = {name: summary_of(out / name) for name in ("gsm8k", "mmlu", "load")}
    pngs = sorted((out / "load" / "plots").glob("*.png"))
    (out / "plots").mkdir(exist_ok=True)
    for p in pngs:
        shutil.copy(p, out / "plots" / p.name)
    intro = (f"<h1>dsv4ctl quickstart</h1><p><b>{html.escape(NOTE)}</b></p>"
             f"<p>{html.escape(json.dumps(result.get('plan')))}; phases (s): {html.escape(json.dumps(times))}</p>")
    body = intro + "".join(section(s, pngs if name == "load" else [], name, level=2) for name, s in runs.items())
    (out / "report.html").write_text(page("dsv4ctl quickstart", body))
    (out / "summary.json").write_text(json.dumps({**result, "phases_s": times, **runs}, indent=2, default=str))
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["section", "row", "column", "value"])
    for name, s in runs.items():
        head, rows = table_rows(s)
        w.writerows([name, i, h, v] for i, r in enumerate(rows) for h, v in zip(head, r))
    (out / "summary.csv").write_text(buf.getvalue())
    return out / "report.html"
