"""`dsv4ctl propose TUNE_DIR`: the winner as a tuned overlay with its evidence, a Markdown report
ready to file, a patch adding the overlay, and the plain SGLang flag/env diff.

The overlay holds only tunable keys (the moved knobs, and `null` for keys coupled to them so they are
derived again), each key's baseline value, and the evidence; every guardrail runs before it is written."""

from __future__ import annotations

import difflib
import json
import time
from pathlib import Path
from typing import Any

import yaml

from dsv4ctl.bench.records import read_json
from dsv4ctl.errors import UserError
from dsv4ctl.tune import tunedir
from dsv4ctl.tune.measure import workload_text
from dsv4ctl.tune.plans import PlanSpec, checked_plan
from dsv4ctl.tune.report import command_line


def overlay_name(plan) -> str:
    return f"{plan.hardware}__{plan.variant}__{plan.quant}__{plan.recipe}.yaml"


def _manifest(side_dir: Path) -> dict[str, Any]:
    """The winner's server manifest (versions, hardware); this machine's when no server was started here."""
    from dsv4ctl.launch import fingerprint

    found = sorted(side_dir.glob("*-server/manifest.json"))
    return read_json(found[-1]) if found else {"versions": fingerprint.versions(), "hardware": fingerprint.hardware()}


def _headline(side: dict[str, Any]) -> dict[str, Any]:
    """The first repeat's best point: what the report and the evidence quote."""
    pts = side["repeats"][0]["points"] if side["repeats"] else []
    ok = [p for p in pts if p.get("slo_met")] or pts
    return max(ok, key=lambda p: p["per_gpu"], default={})


def evidence(td, final: dict[str, Any], base_plan) -> dict[str, Any]:
    req = td.request
    man = _manifest(td.path / "final" / final["winner"]["id"])
    return {"objective": final["objective"], "unit": final["unit"], "slo": final["slo"],
            "workload": req["load"], "engine": req["engine"],
            "engine_version": base_plan.engine_version if req["engine"] == "sglang" else "dsv4rt (included runtime)",
            "versions": man.get("versions", {}), "hardware": man.get("hardware", {}),
            "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "tune_dir": str(td.path),
            "digest": td.digest(), "baseline_scores": final["baseline"]["scores"],
            "tuned_scores": final["tuned"]["scores"], "baseline_summary": _headline(final["baseline"]),
            "tuned_summary": _headline(final["tuned"]), "accuracy": final.get("accuracy")}


def build_overlay(td) -> tuple[Any, Any, Any]:
    """(overlay, baseline plan, tuned plan) from a finished tune directory."""
    from dsv4ctl.schema import TunedOverlay

    final = td.final()
    if final is None:
        raise UserError("the tune has no final comparison", where=f"{td.path}/final/final.json",
                        fix="let `dsv4ctl tune` finish, or continue it with --resume")
    if not final["winner"]["values"]:
        raise UserError("the baseline won: there is nothing to propose", where=str(td.path),
                        fix="keep the current defaults (see report.md)")
    spec = PlanSpec(**td.request["plan"])
    base, tuned = checked_plan(spec), checked_plan(spec, final["winner"]["sets"])
    keys: dict[str, Any] = {}
    for item in final["winner"]["sets"]:
        key, _, raw = item.partition("=")
        # a coupled key's reset is kept only where it changes the plan (a layer had set it)
        if raw != "null" or getattr(base.keys, key) != getattr(tuned.keys, key):
            keys[key] = None if raw == "null" else json.loads(raw)
    when = {"hw": base.hardware, "variant": base.variant, "quant": base.quant, "recipe": base.recipe}
    data = {"when": when, "keys": keys, "baseline": {k: getattr(base.keys, k) for k in keys},
            "evidence": evidence(td, final, base)}
    return TunedOverlay.model_validate(data), base, tuned


def sglang_diff(base, tuned) -> str:
    """The engine flags and env that change, as SGLang spells them (a builtin plan's keys too)."""
    from dsv4ctl.render.sglang import render_commands

    def flags(plan) -> tuple[list[str], dict[str, str]]:
        cmd = render_commands(plan.model_copy(update={"engine": "sglang"}))[0]
        return cmd.argv, cmd.env

    (a_argv, a_env), (b_argv, b_env) = flags(base), flags(tuned)
    a_flags, b_flags = _pairs(a_argv), _pairs(b_argv)
    lines = [f"# {base.hardware} / {base.variant} / {base.quant} / {base.recipe}: sglang serve flags and env",
             "# - baseline only, + tuned only"]
    lines += [f"- {f}" for f in a_flags if f not in b_flags] + [f"+ {f}" for f in b_flags if f not in a_flags]
    lines += [f"- {k}={a_env[k]}" for k in sorted(a_env) if b_env.get(k) != a_env[k]]
    lines += [f"+ {k}={b_env[k]}" for k in sorted(b_env) if a_env.get(k) != b_env[k]]
    return "\n".join(lines) + "\n"


def _pairs(argv: list[str]) -> list[str]:
    """argv as one '--flag value' line per flag, so a diff shows changed flags, not shifted tokens."""
    out: list[str] = []
    for tok in argv[2:]:
        if tok.startswith("--") or not out:
            out.append(tok)
        else:
            out[-1] += " " + tok
    return sorted(out)


def patch(rel: str, old: str | None, new: str) -> str:
    """A git-style patch adding (or replacing) the overlay file; `git apply` takes it."""
    head = f"diff --git a/{rel} b/{rel}\n" + ("new file mode 100644\n" if old is None else "")
    body = difflib.unified_diff((old or "").splitlines(True), new.splitlines(True),
                                "/dev/null" if old is None else f"a/{rel}", f"b/{rel}")
    return head + "".join(body)


def _vals(vals) -> str:
    return ", ".join("-" if v is None else f"{v:.4g}" for v in vals)


def report_md(overlay, base, final: dict[str, Any], name: str, td_path: Path, td_request: dict[str, Any]) -> str:
    """The ready-to-file report: what changed, why, the numbers, how to reproduce."""
    ev, v = overlay.evidence, final["verdict"]
    rows = [f"| `{k}` | {overlay.baseline.get(k)} | {val if val is not None else '(derived again)'} |"
            for k, val in overlay.keys.items()]
    b, t = ev.baseline_summary, ev.tuned_summary
    nums = [f"| {label} | {b.get(key, '-') if not isinstance(b.get(key), float) else f'{b[key]:.4g}'} | "
            f"{t.get(key, '-') if not isinstance(t.get(key), float) else f'{t[key]:.4g}'} |"
            for label, key in (("concurrency", "concurrency"), ("output tok/s/GPU", "per_gpu"),
                               ("tok/s/user", "per_user"), (f"TTFT p{final['slo']['percentile']:g} ms", "ttft_ms"),
                               (f"TPOT p{final['slo']['percentile']:g} ms", "tpot_ms"), ("goodput req/s", "goodput"))]
    acc = final.get("accuracy")
    return "\n".join([
        f"# Tuned defaults for {base.hardware} / {base.variant} / {base.quant} / {base.recipe}", "",
        "## What changes", "", "| key | baseline | tuned |", "|---|---|---|", *rows, "",
        "## Why", "",
        f"Objective {ev.objective} ({ev.unit}) under SLO {json.dumps(ev.slo['limits_ms'])} ms at "
        f"p{ev.slo['percentile']:g}; engine {ev.engine} {ev.engine_version}.",
        f"Repeats: baseline {_vals(ev.baseline_scores)}, tuned {_vals(ev.tuned_scores)} {ev.unit}. {v['why']}.",
        (f"Accuracy gate (GSM8K, n={acc['baseline']['n']}): baseline {acc['baseline']['accuracy']:.3f}, "
         f"tuned {acc['tuned']['accuracy']:.3f}, tolerance {acc['tolerance']} — passed." if acc else
         "Accuracy gate: not run (no knob that changes numerics was tuned)."), "",
        "## Numbers (first repeat, best point meeting the SLO)", "", "| metric | baseline | tuned |",
        "|---|---:|---:|", *nums, "",
        "## How to reproduce", "",
        f"Workload: {workload_text(ev.workload)}. Command (inputs in `{td_path}/tune.json`):", "",
        f"    {command_line(td_request, str(td_path))}", "",
        f"Evidence: tune directory `{td_path}` (sha256 {ev.digest[:16]}…), machine "
        f"{ev.hardware.get('gpus') or ev.hardware.get('machine', '?')}, {ev.date}.",
        f"Apply: copy `{name}` into `hardware_profiles/tuned/` (or `git apply {Path(name).stem}.patch`); "
        f"`dsv4ctl explain max_running_requests --hw {base.hardware} --variant {base.variant} "
        f"--recipe {base.recipe}` then shows it as its own layer.", ""])


def run(td_path: Path, out_dir: Path | None) -> dict[str, Path]:
    """Build, guard and write everything; returns what was written."""
    from dsv4ctl.paths import tuned_dir
    from dsv4ctl.schema import TunedOverlay  # noqa: F401 (the model the YAML is checked against)
    from dsv4ctl.tune import guard

    td = tunedir.load(td_path)
    overlay, base, tuned = build_overlay(td)
    name = overlay_name(base)
    guard.check_static(overlay, name)
    guard.check_rules(overlay, name)
    data = overlay.model_dump(mode="json")
    data["when"] = overlay.when.model_dump(mode="json", exclude_none=True)  # keys keep their nulls (resets)
    text = "# written by `dsv4ctl propose`; evidence below\n" + yaml.safe_dump(data, sort_keys=False)
    target_dir = Path(out_dir) if out_dir else tuned_dir()
    pdir = td.path / "propose"
    try:
        target_dir.mkdir(parents=True, exist_ok=True)
        pdir.mkdir(exist_ok=True)
        target = target_dir / name
        old = target.read_text(encoding="utf-8") if target.exists() else None
        (pdir / name).write_text(text, encoding="utf-8")
        target.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise UserError(f"cannot write the overlay: {exc.strerror}", where=str(target_dir),
                        fix="pass a writable --out-dir") from None
    written = {"overlay": target, "report": pdir / "report.md", "patch": pdir / f"{Path(name).stem}.patch",
               "sglang": pdir / "sglang-flags.diff"}
    written["report"].write_text(report_md(overlay, base, td.final(), name, td.path, td.request), encoding="utf-8")
    written["patch"].write_text(patch(f"hardware_profiles/tuned/{name}", old, text), encoding="utf-8")
    written["sglang"].write_text(sglang_diff(base, tuned), encoding="utf-8")
    return written
