"""`bench accuracy gsm8k|mmlu`: load data, build prompts, run, score with setup, gate on --min-accuracy."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from dsv4ctl.bench import guards, service
from dsv4ctl.bench.accuracy import runner
from dsv4ctl.bench.accuracy.items import TaskData, sha256
from dsv4ctl.bench.load_cmd import default_out
from dsv4ctl.bench.loadgen import BenchFailed
from dsv4ctl.bench.options import AccuracyOptions
from dsv4ctl.errors import UserError, did_you_mean

DEFAULT_MAX_TOKENS = {("gsm8k", False): 512, ("mmlu", False): 16, ("gsm8k", True): 8192, ("mmlu", True): 8192}


def build(a: AccuracyOptions) -> tuple[runner.AccRun, TaskData]:
    task = a.task
    if task not in runner.TASKS:
        raise UserError(f"unknown accuracy task {task!r}", fix=did_you_mean(task, list(runner.TASKS)))
    mod = runner.TASKS[task]
    data = mod.load(a.data_path)
    test = data.test[: a.limit] if a.limit else data.test
    shots = 5 if a.shots is None else a.shots
    items = mod.build_items(test, data.shots, shots, chat=a.api == "chat")
    max_tokens = a.max_tokens or DEFAULT_MAX_TOKENS[(task, a.thinking)]
    stop = getattr(mod, "STOP", None) if a.api == "completions" else None
    spec = runner.AccRun(task, items, max_tokens, a.concurrency, a.repeats, a.max_error_rate, stop)
    return spec, data


def setup_of(a: AccuracyOptions, ep, spec: runner.AccRun, data: TaskData) -> dict[str, Any]:
    from dsv4ctl.bench.discover import environment

    mod = runner.TASKS[spec.task]
    shot_note = {"test": "other test questions of the same subject (no dev split given), never the one asked"}
    return {"task": spec.task, "data_files": [str(f) for f in data.files], "sha256": sha256(data.files),
            "data_source": "--data-path" if a.data_path else "packaged copy (dsv4ctl/bench/data)",
            "shots": 5 if a.shots is None else a.shots, "shot_split": data.shot_split,
            "shot_source": shot_note.get(data.shot_split, f"the {data.shot_split} split"), "endpoint": ep.api,
            "base_url": ep.base_url, "model": ep.model, "extractor": mod.EXTRACTOR,
            "sampling": {"temperature": ep.temperature, "max_tokens": spec.max_tokens, "stop": spec.stop},
            "thinking": a.thinking, "repeats": spec.repeats, "concurrency": spec.concurrency,
            "limit": a.limit, "client": environment()}


def main(a: AccuracyOptions) -> None:
    service.check_format(a.format)
    guards.check_args(a, guards.ACCURACY)
    out = Path(a.out or default_out(a.task))
    guards.check_resumable(out, a.resume)
    url, model, _gpus, plan_ref, _found = service.resolve_endpoint(a.base_url, a.model, a.plan, None)
    extra = '{"chat_template_kwargs": {"thinking": %s}}' % ("true" if a.thinking else "false") \
        if a.api == "chat" else None
    ep = service.endpoint(url, model, a.api, a.api_key, False, extra, a.timeout, a.temperature)
    spec, data = build(a)
    guards.ensure_writable(out)
    service.prepare_dir(out, a.resume)
    setup = {**setup_of(a, ep, spec, data), "plan": plan_ref}
    try:
        if a.progress:
            bar, cb = service.live_progress(len(spec.items))
            with bar:
                service.run_async(runner.run(ep, spec, out, cb))
        else:
            service.run_async(runner.run(ep, spec, out))
    finally:
        summary = finish(out, spec.task, setup, a.min_accuracy, a.format)
    if summary is not None and summary.passed is False:
        raise BenchFailed(f"{spec.task} accuracy {summary.accuracy:.4f} < --min-accuracy {a.min_accuracy}")


def finish(out: Path, task: str, setup: dict[str, Any], min_accuracy: float | None, fmt: str = "table"):
    from dsv4ctl.bench.report.build import write_reports

    recs = list(service.rec_io.read_records(out))
    if not recs:
        return None
    summary = runner.summarize(task, recs, setup, min_accuracy)
    service.rec_io.write_json(out / service.rec_io.SUMMARY_FILE, summary.model_dump())
    write_reports(out, plots=False)
    service.show(summary.model_dump(), f"{task} {out}", fmt)
    return summary
