"""What the `bench` commands do, between parsing (commands/benching.py) and the engine modules."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

from dsv4ctl.bench import metrics, records as rec_io
from dsv4ctl.bench.client import Endpoint, install_fast_loop
from dsv4ctl.errors import UserError

REFRESH_S = 0.5  # progress redraws at most twice a second


def parse_slo(text: str | None) -> dict[str, float] | None:
    """'ttft=200,tpot=50' (ms) → {'ttft': 200.0, 'tpot': 50.0}."""
    if not text:
        return None
    out = {}
    for part in text.split(","):
        key, _, val = part.partition("=")
        try:
            ms = float(val)
        except ValueError:
            ms = float("nan")
        if key.strip() not in ("ttft", "tpot", "e2e", "itl") or not 0 < ms < float("inf"):
            raise UserError(f"bad --slo part {part!r}", fix="write e.g. --slo ttft=200,tpot=50 (positive milliseconds)")
        out[key.strip()] = ms
    return out


def parse_ints(text: str | None) -> list[int]:
    try:
        return [int(x) for x in text.split(",") if x.strip()] if text else []
    except ValueError:
        raise UserError(f"bad list {text!r}", fix="write comma-separated integers, e.g. 1,8,64") from None


def resolve_endpoint(base_url: str | None, model: str | None, source: Path | None,
                     gpus: int | None) -> tuple[str, str | None, int | None, Any, dict[str, Any]]:
    """Flags win; otherwise take base_url/model/gpus from a plan file or a serve run directory.
    The last element is everything the source told (model_path, context_length, ...)."""
    found: dict[str, Any] = {}
    if source is not None:
        from dsv4ctl.bench.discover import from_source

        found = from_source(source)
    url = base_url or found.get("base_url")
    if not url:
        raise UserError("no endpoint given", fix="pass --base-url URL, or --plan/--run from dsv4ctl serve")
    return url, model or found.get("model"), gpus or found.get("gpus"), found.get("plan"), found


def fetch_model(base_url: str, api_key: str | None) -> str:
    """The served model name from /v1/models when --model was not given."""
    import urllib.request

    req = urllib.request.Request(base_url.rstrip("/") + "/v1/models",
                                 headers={"Authorization": f"Bearer {api_key}"} if api_key else {})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return json.load(resp)["data"][0]["id"]
    except Exception as exc:  # noqa: BLE001 - any failure means the same thing to the user
        raise UserError(f"cannot read {base_url}/v1/models: {exc}", fix="pass --model or check --base-url") from None


def prepare_dir(out: Path, resume: bool) -> int:
    """Session number for this invocation; refuse to mix a new run into an old one without --resume."""
    existing = list(rec_io.read_records(out))
    if existing and not resume:
        raise UserError("run directory already holds requests.jsonl", where=str(out),
                        fix="pass --resume to continue it, or choose another --out")
    if resume:
        rec_io.drop_failed(out)
    return max((r.get("session", 0) for r in existing), default=-1) + 1


def run_async(coro) -> Any:
    """Run a benchmark on the fastest loop. Everything imported so far (Typer, Rich, pydantic, …) is
    moved out of the collector's reach first: a full collection would otherwise walk those objects
    while streams wait, which a plain library client never pays."""
    import gc

    install_fast_loop()
    gc.collect()
    gc.freeze()
    try:
        return asyncio.run(coro)
    finally:
        gc.unfreeze()


def live_progress(total_hint: int):
    """A Rich progress bar and the callback the load generator calls after each request."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from dsv4ctl.console import err

    # No refresh thread: it takes the GIL ten times a second away from the event loop that stamps
    # arrivals. The bar is redrawn from the loop itself, at most every REFRESH_S, and at the end.
    bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                   TextColumn("errors {task.fields[errors]}"), TimeElapsedColumn(), console=err,
                   auto_refresh=False)
    tasks: dict[Any, int] = {}
    last = [0.0]

    def on_progress(conc, done, errors, total):
        if conc not in tasks:
            tasks[conc] = bar.add_task(f"c={conc}" if conc else "requests", total=total, errors=0)
        bar.update(tasks[conc], completed=done, errors=errors)
        now = time.monotonic()
        if now - last[0] >= REFRESH_S or done == total:
            last[0] = now
            bar.refresh()

    return bar, on_progress


def endpoint(url: str, model: str | None, api: str, api_key: str | None, ignore_eos: bool,
             extra: str | None, timeout: float, temperature: float = 0.0) -> Endpoint:
    try:
        extra_body = json.loads(extra) if extra else {}
    except json.JSONDecodeError:
        extra_body = None
    if not isinstance(extra_body, dict):
        raise UserError("--extra-body must be a JSON object", fix='write e.g. --extra-body \'{"top_k": 1}\'')
    if api not in ("chat", "completions"):
        raise UserError(f"unknown --api {api!r}", fix="choose chat or completions")
    return Endpoint(url, model or fetch_model(url, api_key), api, api_key, ignore_eos, temperature,
                    timeout, extra_body)


def summarize_sweep(out: Path, concs: list[int | None], **kw) -> dict[str, Any]:
    """summary.json: the last point's metrics at the top (sglang-style keys) plus every point."""
    recs = list(rec_io.read_records(out))
    pts = []
    for c in concs:
        s = metrics.summarize_load(recs, concurrency=c, **kw).model_dump()
        pts.append({**s, "concurrency_point": c})
    summary = {**pts[-1], "points": pts} if len(pts) > 1 else pts[0]
    rec_io.write_json(out / rec_io.SUMMARY_FILE, summary)
    return summary


def show(summary: dict[str, Any], title: str, fmt: str) -> None:
    """The result: a table fitted to the terminal, or the whole summary as JSON (for scripts)."""
    from dsv4ctl.console import emit_data, out

    if fmt == "json":
        emit_data(summary, "json")
        return
    from dsv4ctl.bench.report.text import rich_table

    out.print(rich_table(summary, title=title))


def check_format(fmt: str) -> None:
    if fmt not in ("table", "json"):
        raise UserError(f"unknown --format {fmt!r}", where="--format", fix="choose table or json")
