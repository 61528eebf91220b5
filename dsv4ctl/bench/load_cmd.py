"""`bench load`: build the workload, drive the endpoint, summarise, write reports, print the table."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from dsv4ctl.bench import guards, service, workloads
from dsv4ctl.bench.options import LoadOptions
from dsv4ctl.errors import UserError


def build_prompts(a: LoadOptions, spec: workloads.TokenSpec | None = None) -> list[workloads.Prompt]:
    kind = a.workload
    if kind == "random":
        return workloads.random_prompts(a.num_prompts, a.input_len, a.output_len,
                                        a.range_ratio, a.range_style, a.seed, spec)
    if kind == "shared-prefix":
        return workloads.shared_prefix_prompts(a.num_prompts, a.prefix_groups, a.prefix_len,
                                               a.input_len, a.output_len, a.seed, spec)
    if kind == "trace":
        if not a.trace:
            raise UserError("--workload trace needs --trace FILE", fix="pass --trace prompts.jsonl")
        return workloads.trace_prompts(a.trace, a.output_len, a.num_prompts)
    raise UserError(f"unknown --workload {kind!r}", fix="choose random, shared-prefix or trace")


def token_spec(a: LoadOptions, ep, found: dict[str, Any]) -> tuple[workloads.TokenSpec | None, dict[str, Any]]:
    """The served model's tokenizer (--tokenizer, else the plan's / run's checkpoint) and the tokens
    the server's template adds; without one, lengths are words and the setup says so."""
    from dsv4ctl.bench import tokens

    if a.workload == "trace":
        return None, {"unit": "trace text (as given)"}
    ref = tokens.find_tokenizer(a.tokenizer, found)
    if ref is None:
        from dsv4ctl.console import err

        err.print("[yellow]no tokenizer found: --input-len counts words, not tokens[/] (pass --tokenizer "
                  "with the served model's folder, or --plan with a plan or run directory)", highlight=False)
        return None, {"unit": "words (no tokenizer: pass --tokenizer)"}
    tok = tokens.load_tokenizer(ref)
    spec = workloads.TokenSpec(tok, tokens.id_pool(tok, a.seed), tokens.template_overhead(ep, tok))
    return spec, {"unit": "tokens", "tokenizer": ref, "template_tokens": spec.overhead}


def check_context(prompts: list[workloads.Prompt], ep, found: dict[str, Any]) -> dict[str, Any]:
    """Refuse before sending when a prompt plus its output cannot fit; the lengths asked vs built."""
    from dsv4ctl.bench import tokens

    context = tokens.server_context(ep.base_url, ep.api_key)
    source = "from /v1/models" if context else "from the plan"
    context = context or found.get("context_length")
    asked = [p.meta.get("target_input_len") for p in prompts]
    built = [p.meta.get("built_input_len", p.meta.get("target_input_len")) for p in prompts]
    if None not in built:
        tokens.check_fits(context, built, [p.output_len for p in prompts], source)
        tokens.check_template(asked, built)
    mean = lambda xs: sum(xs) / len(xs) if xs and None not in xs else None  # noqa: E731
    return {"context": context, "input_len_asked_mean": mean(asked), "input_len_built_mean": mean(built)}


def ladder(a: LoadOptions) -> list[int | None]:
    if a.sweep:
        return service.parse_ints(a.sweep)
    if a.concurrency is None and a.request_rate is None:
        return [1]
    return [a.concurrency]


def main(a: LoadOptions) -> None:
    from dsv4ctl.bench.loadgen import LoadPlan

    service.check_format(a.format)
    guards.check_args(a, guards.LOAD)
    slo, concs = service.parse_slo(a.slo), ladder(a)
    guards.check_ladder(concs)
    guards.check_percentiles(a.percentiles)
    out = Path(a.out or default_out("load"))
    guards.check_resumable(out, a.resume)
    url, model, gpus, plan_ref, found = service.resolve_endpoint(a.base_url, a.model, a.plan, a.gpus)
    ep = service.endpoint(url, model, a.api, a.api_key, a.ignore_eos, a.extra_body, a.timeout)
    guards.ensure_writable(out)
    session = service.prepare_dir(out, a.resume)
    spec, lengths = token_spec(a, ep, found)
    prompts = build_prompts(a, spec)
    lengths |= check_context(prompts, ep, found)
    skip = {(r.get("concurrency"), r["index"]) for r in service.rec_io.read_records(out)
            if r.get("ok") and r.get("phase") == "measure"}
    lp = LoadPlan(concs, a.request_rate, a.warmup, a.max_error_rate, a.seed, session, skip)
    setup = guards.resume_setup(out, setup_of(a, ep, gpus, plan_ref), a.resume, a.force) | {"lengths": lengths}
    service.rec_io.write_json(out / service.rec_io.SETUP_FILE, setup)
    try:
        _drive(ep, prompts, lp, out, a.progress, setup)
    finally:  # whatever happened, the summary reflects every request already recorded
        finish(out, concs, gpus, slo, a.percentiles, setup, a.format)


def default_out(kind: str) -> Path:
    return Path("runs") / "bench" / f"{kind}-{time.strftime('%Y%m%d-%H%M%S')}"


def _drive(ep, prompts, lp, out, progress: bool, setup: dict[str, Any]) -> None:
    from dsv4ctl.bench.loadgen import run_points

    if not progress:
        info = service.run_async(run_points(ep, prompts, lp, out))
    else:
        bar, cb = service.live_progress(len(prompts))
        with bar:
            info = service.run_async(run_points(ep, prompts, lp, out, cb))
    setup["served_model"], setup["server"] = info["served_model"], info["server"]


def setup_of(a: LoadOptions, ep, gpus, plan_ref) -> dict[str, Any]:
    from dsv4ctl.bench.discover import environment

    keys = {"workload", "num_prompts", "input_len", "output_len", "range_ratio", "range_style", "sweep",
            "concurrency", "request_rate", "warmup", "ignore_eos", "seed", "slo", "trace", "prefix_groups",
            "prefix_len"}
    return {"base_url": ep.base_url, "model": ep.model, "api": ep.api, "gpus": gpus, "plan": plan_ref,
            **a.model_dump(mode="json", include=set(keys)),
            "extra_body": ep.extra_body, "client": environment()}


def finish(out: Path, concs, gpus, slo, pcts: str, setup: dict[str, Any], fmt: str = "table") -> None:
    from dsv4ctl.bench.report.build import write_reports

    if not any(True for _ in service.rec_io.read_records(out)):
        return
    percentiles = [float(p) for p in pcts.split(",")]
    summary = service.summarize_sweep(out, concs, gpus=gpus, slo=slo, percentiles=percentiles, setup=setup)
    write_reports(out)
    service.show(summary, str(out), fmt)
