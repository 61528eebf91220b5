"""What `dsv4ctl tune` does between parsing (commands/tuning.py) and the search: inputs → checks →
tune directory → search with a live table → baseline vs winner → report, plot, winner plan."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from dsv4ctl.errors import UserError
from dsv4ctl.tune import measure, search, tunables
from dsv4ctl.tune.objective import parse_objective, parse_slo
from dsv4ctl.tune.plans import PlanSpec, checked_plan, errors, spec_from_plan_file

def plan_spec(a: dict[str, Any]) -> PlanSpec:
    if a["plan"] and a["hw"]:
        raise UserError("both --plan and --hw given", where="tune", fix="pass a plan file or the plan options")
    if a["plan"]:
        return spec_from_plan_file(a["plan"])
    if not a["hw"]:
        raise UserError("no plan given", where="tune", fix="pass --plan plan.yaml or --hw/--variant/--recipe")
    toggles = a["toggles"].model_dump(exclude_none=True) if a["toggles"] is not None else {}
    return PlanSpec(a["hw"], a["variant"], a["recipe"], toggles, list(a["set_"] or []))


def load_spec(a: dict[str, Any]) -> measure.LoadSpec:
    from dsv4ctl.bench.service import parse_ints

    concs = parse_ints(a["concurrency"])
    if not concs or min(concs) < 1:
        raise UserError(f"bad concurrency ladder {a['concurrency']!r}", where="--concurrency", fix="e.g. 1,8,32")
    wl = {k: a[k] for k in ("workload", "num_prompts", "input_len", "output_len", "range_ratio",
                            "prefix_groups", "prefix_len", "trace", "seed")}
    spec = measure.LoadSpec({**wl, "range_style": "centered"}, concs)
    spec.prompts()  # a bad workload is a one-line error now, not after the first server started
    return spec


def tokenizer_of(plan) -> str | None:
    """The served checkpoint's folder, whose tokenizer makes --input-len tokens (as in `bench load`):
    the checkpoint `serve` resolves for the plan (`launch.assemble.builtin_model`: the model_path's
    folder, or the tiny checkpoint of a tiny plan); None for a hub id or a missing path."""
    from dsv4ctl.launch.assemble import builtin_model

    try:
        path = builtin_model(plan, create=False)[0]
    except UserError:  # not a local checkpoint: lengths stay in words, and the request says so
        return None
    # a path that is not there yet is the tiny checkpoint, which serve makes before the first point
    return path if Path(path).is_dir() or not Path(path).exists() else None


def engine_of(a: dict[str, Any], plan) -> tuple[Any, str]:
    from dsv4ctl.tune.engines import EndpointEngine, LaunchEngine

    if a["base_url"]:
        from dsv4ctl.bench.service import fetch_model

        return EndpointEngine(a["base_url"], a["model"] or fetch_model(a["base_url"], None), a["gpus"]), "endpoint"
    name = a["engine"] or plan.engine
    if name not in ("builtin", "sglang"):
        raise UserError(f"unknown engine {name!r}", where="--engine", fix="use builtin or sglang")
    return LaunchEngine(name, a["engine_timeout"]), name


def gate_of(a: dict[str, Any], knobs) -> Any:
    from dsv4ctl.tune.final import Gate

    if a["gsm8k"] is None:
        numeric = [t.key for t in knobs if t.numerics]
        if numeric:
            raise UserError(f"{', '.join(numeric)} can change outputs: the accuracy gate needs GSM8K data",
                            where="--gsm8k", fix="pass --gsm8k DIR (test.jsonl + train.jsonl)")
        return None
    return Gate(Path(a["gsm8k"]), a["gsm8k_n"], a["gsm8k_shots"], a["gsm8k_max_tokens"], a["accuracy_tolerance"])


def setup(a: dict[str, Any]) -> tuple[search.Tune, Any]:
    """Every input checked before anything starts; the tune directory opened (or resumed)."""
    from dsv4ctl.tune.tunedir import TuneDir

    if a["fmt"] not in ("rich", "json"):
        raise UserError(f"unknown format {a['fmt']!r}", where="--format", fix="use rich or json")
    spec = plan_spec(a)
    base = checked_plan(spec)
    if errors(base):
        raise UserError(f"the baseline plan fails validation ({errors(base)[0]})", where="tune",
                        fix="fix the plan first (dsv4ctl plan shows the findings)")
    engine, name = engine_of(a, base)
    names = [k.strip() for k in a["knobs"].split(",") if k.strip()] if a["knobs"] else None
    knobs = tunables.choose(base, base.engine if name == "endpoint" else name, names, restart_ok=name != "endpoint")
    slo, obj, load = parse_slo(a["slo"], a["slo_percentile"]), parse_objective(a["objective"]), load_spec(a)
    load.tokenizer = tokenizer_of(base)
    if obj.at is not None and obj.at not in load.concurrencies:
        raise UserError(f"objective per-user@{obj.at} needs {obj.at} in the ladder", where="--concurrency",
                        fix=f"add {obj.at} to --concurrency")
    gate = gate_of(a, knobs)
    narrowed = {n.partition("=")[0].strip() for n in names or [] if "=" in n}  # tunables.narrowed's keys
    ranges = {t.key: [t.min, t.max] for t in knobs if t.key in narrowed}
    request = {"plan": spec.as_dict(), "engine": name, "knobs": [t.key for t in knobs], "load": load.as_dict(),
               **({"knob_ranges": ranges} if ranges else {}),
               "slo": slo.as_dict(), "slo_text": slo.text(), "objective": obj.text(), "api": a["api"],
               "gate": gate.as_dict() if gate else None, "repeats": a["repeats"],
               "budget": {"candidates": a["budget"], "seconds": a["time_budget"]}}
    td = TuneDir.open(a["out"], request, a["resume"])
    tune = search.Tune(spec, knobs, engine, name if name != "endpoint" else base.engine, load, slo, obj, td,
                       api=a["api"], max_candidates=a["budget"], time_budget_s=a["time_budget"])
    return tune, gate


def main(a: dict[str, Any]) -> None:
    from dsv4ctl.console import err
    from dsv4ctl.launch.supervisor import interrupts_raise
    from dsv4ctl.tune import report

    tune, gate = setup(a)
    live = report.Live(tune.objective.unit, tune.counts, enabled=a["live"] and a["fmt"] == "rich")
    tune.notify = live.add
    try:
        with interrupts_raise(), live:  # SIGTERM too: each candidate's server is stopped on the way out
            results = search.run(tune)
            final = finish(tune, results, gate, a["repeats"])
    except KeyboardInterrupt:
        err.print(f"[yellow]interrupted[/]; finished candidates are kept: continue with the same command "
                  f"plus --resume (tune directory {tune.td.path})", highlight=False)
        raise
    show(tune, results, final, a["fmt"])


def finish(tune: search.Tune, results: list[dict[str, Any]], gate, repeats: int) -> dict[str, Any] | None:
    """Baseline vs winner, then report.md, pareto.png and winner-plan.yaml in the tune directory."""
    from dsv4ctl.tune import final as final_step
    from dsv4ctl.tune import report
    from dsv4ctl.tune.space import sets_of

    top = search.best(results)
    final = final_step.compare(tune, search.cand_of(top), repeats, gate) if top else None
    winner_id = top["id"] if top else None
    report.pareto(results, tune.slo.as_dict(), tune.td.path / "pareto.png", winner_id)
    text = report.markdown(tune.td.request, results, tune.counts, final, tune.objective.unit, tune.td.path)
    (tune.td.path / "report.md").write_text(text, encoding="utf-8")
    if top:
        plan = checked_plan(tune.spec, sets_of(search.cand_of(top), tune.knobs))
        (tune.td.path / "winner-plan.yaml").write_text(search.plan_yaml(plan), encoding="utf-8")
    return final


def show(tune: search.Tune, results: list[dict[str, Any]], final: dict[str, Any] | None, fmt: str) -> None:
    from dsv4ctl.console import emit_data, out
    from dsv4ctl.tune import report

    if fmt == "json":
        emit_data({"tune_dir": str(tune.td.path), "counts": tune.counts, "results": results, "final": final}, "json")
        return
    out.print(report.table(results, tune.counts, tune.objective.unit, title=str(tune.td.path)))
    if final is None:
        out.print("[bold red]no candidate met the SLO[/]; see report.md", highlight=False)
        return
    v = final["verdict"]
    colour = "green" if v["beyond_noise"] else "yellow"
    out.print(f"winner: {final['winner']['label']}  [{colour}]{v['why']}[/]", highlight=False)
    out.print(f"report: {tune.td.path / 'report.md'}; next: dsv4ctl propose {tune.td.path}", highlight=False)
