"""What a tune shows: the live candidate table (Rich), the Pareto plot (tok/s/GPU vs tok/s/user
with the SLO line) and report.md with the baseline's and the winner's numbers side by side."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from dsv4ctl.bench.report.plots import _plt
from dsv4ctl.tune.measure import workload_text


def _fmt(v: Any, spec: str = ".1f") -> str:
    return "-" if v is None else format(v, spec)


def _best_point(result: dict[str, Any]) -> dict[str, Any]:
    ok = [p for p in result.get("points", []) if p.get("slo_met")]
    return max(ok, key=lambda p: p["per_gpu"], default=(result.get("points") or [{}])[-1])


def short(label: str) -> str:
    """max_running_requests=32 → mrr=32: a candidate's label that fits the table."""
    return " ".join(f"{''.join(w[0] for w in kv.split('=')[0].split('_'))}={kv.split('=', 1)[1]}" if "=" in kv else kv
                    for kv in label.split())


def table(results: list[dict[str, Any]], counts: dict[str, int], unit: str, title: str = "tune"):
    """One row per candidate (fits 80 columns): what it changed, its score and its best point."""
    from rich.table import Table

    t = Table(title=f"{title}  launched {counts.get('launched', 0)}, resumed {counts.get('resumed', 0)}, "
                    f"rejected {counts.get('rejected', 0)}, failed {counts.get('failed', 0)}",
              title_justify="left")
    for col, just in (("candidate", "left"), (f"score {unit}", "right"), ("conc", "right"),
                      ("tok/s/GPU", "right"), ("tok/s/user", "right"), ("SLO", "center")):
        t.add_column(col, justify=just, overflow="fold")
    for r in results:
        p = _best_point(r)
        slo = "fail" if r.get("status") != "ok" else ("met" if p.get("slo_met") else "miss")
        t.add_row(short(r["label"])[:30], _fmt(r.get("score"), ".3g"), str(p.get("concurrency", "-")),
                  _fmt(p.get("per_gpu")), _fmt(p.get("per_user")), slo)
    return t


class Live:
    """The table, redrawn after every finished candidate (stderr; nothing when not a terminal)."""

    def __init__(self, unit: str, counts: dict[str, int], enabled: bool):
        self.unit, self.counts, self.rows = unit, counts, []
        self.live = None
        if enabled:
            from rich.live import Live as RichLive

            from dsv4ctl.console import err

            self.live = RichLive(table([], counts, unit), console=err, refresh_per_second=2, transient=False)

    def __enter__(self) -> Live:
        if self.live:
            self.live.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        if self.live:
            self.live.__exit__(*exc)

    def add(self, result: dict[str, Any]) -> None:
        self.rows.append(result)
        if self.live:
            self.live.update(table(self.rows, self.counts, self.unit))


def pareto(results: list[dict[str, Any]], slo: dict[str, Any], path: Path, winner_id: str | None) -> Path:
    """Every measured point (x: tok/s/user, y: tok/s/GPU), the Pareto front, and the SLO's TPOT
    limit as the vertical line x = 1000 / tpot (points left of it decode too slowly per user)."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    pts = [(p["per_user"], p["per_gpu"], r["id"]) for r in results for p in r.get("points", [])
           if p.get("per_user") and p.get("per_gpu")]
    ax.scatter([x for x, _, _ in pts], [y for _, y, _ in pts], s=14, alpha=0.5, label="candidate points")
    front = sorted(pts, key=lambda t: -t[0])
    best_y, line = -1.0, []
    for x, y, _ in front:
        if y > best_y:
            line.append((x, y))
            best_y = y
    if line:
        ax.plot([x for x, _ in line], [y for _, y in line], "k--", lw=1, label="Pareto front")
    for cid, style, name in (("baseline", "s", "baseline"), (winner_id, "*", "winner")):
        own = [(x, y) for x, y, i in pts if i == cid]
        if cid and own:
            ax.scatter([x for x, _ in own], [y for _, y in own], marker=style, s=90, label=name)
    tpot = (slo.get("limits_ms") or {}).get("tpot")
    if tpot:
        ax.axvline(1000.0 / tpot, color="red", lw=1, label=f"SLO tpot {tpot:g} ms (p{slo['percentile']:g})")
    ax.set(xlabel="output tok/s per user", ylabel="output tok/s per GPU", title="tune: throughput vs interactivity")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _side_row(name: str, side: dict[str, Any] | None, unit: str) -> str:
    if not side:
        return f"| {name} | - | - | - |"
    scores = ", ".join(_fmt(s, ".4g") for s in side["scores"])
    acc = side.get("accuracy")
    acc_text = f"{acc['accuracy']:.3f} ± {acc['stderr']:.3f} (n={acc['n']})" if acc else "not run"
    return f"| {name} | {scores} {unit} | `{' '.join(side['sets']) or '(plan as is)'}` | {acc_text} |"


def markdown(request: dict[str, Any], results: list[dict[str, Any]], counts: dict[str, int],
             final: dict[str, Any] | None, unit: str, path: Path) -> str:
    """report.md of a tune directory."""
    lines = [f"# Tune: {request['plan']['hw']} / {request['plan']['variant']} / {request['plan']['recipe']}",
             "", f"- engine: {request['engine']}; knobs: {', '.join(request['knobs']) or '(none)'}",
             f"- workload: {workload_text(request['load'])}", f"- command: `{command_line(request, str(path))}`",
             f"- SLO: {request['slo_text']}; objective: {request['objective']} ({unit})",
             f"- candidates: launched {counts.get('launched', 0)}, resumed {counts.get('resumed', 0)}, "
             f"rejected before launch (error findings) {counts.get('rejected', 0)}, failed {counts.get('failed', 0)}",
             "", "| candidate | score | best conc | tok/s/GPU | tok/s/user | SLO |", "|---|---:|---:|---:|---:|---|"]
    for r in sorted(results, key=lambda r: -(r.get("score") or -1)):
        p = _best_point(r)
        lines.append(f"| {r['label']} | {_fmt(r.get('score'), '.4g')} | {p.get('concurrency', '-')} | "
                     f"{_fmt(p.get('per_gpu'))} | {_fmt(p.get('per_user'))} | "
                     f"{'met' if p.get('slo_met') else r.get('status')} |")
    lines += ["", "![Pareto](pareto.png)", ""]
    if final:
        v = final["verdict"]
        lines += ["## Baseline vs winner (same run, each repeated)", "",
                  "| side | scores | sets | GSM8K |", "|---|---|---|---|",
                  _side_row("baseline", final["baseline"], unit), _side_row("winner", final["tuned"], unit), "",
                  f"Verdict: {'better' if v['beyond_noise'] else 'NOT better'} beyond noise — {v['why']}."]
        if final.get("accuracy"):
            a = final["accuracy"]
            lines.append(f"Accuracy gate: drop {a['drop']:+.3f} vs tolerance {a['tolerance']} — "
                         f"{'passed' if a['passed'] else 'FAILED'}.")
    return "\n".join(lines) + "\n"


def command_line(request: dict[str, Any], out: str) -> str:
    """The `dsv4ctl tune` command that reproduces a tune directory's request."""
    import shlex

    p, w = request["plan"], request["load"]["workload"]
    argv = ["dsv4ctl", "tune", "--hw", p["hw"], "--variant", p["variant"], "--recipe", p["recipe"]]
    for key, val in p["toggles"].items():
        flag = "--" + key.replace("_", "-")
        argv += [flag if val else f"--no-{flag[2:]}"] if isinstance(val, bool) else [flag, str(val)]
    argv += [a for s in p["sets"] for a in ("--set", s)]
    if request["engine"] != "endpoint":
        argv += ["--engine", request["engine"]]
    if request["knobs"]:
        ranges = request.get("knob_ranges") or {}
        argv += ["--knobs", ",".join(k + (f"={ranges[k][0]:g}:{ranges[k][1]:g}" if k in ranges else "")
                                     for k in request["knobs"])]
    argv += ["--workload", w["workload"], "-n", str(w["num_prompts"]), "--input-len", str(w["input_len"]),
             "--output-len", str(w["output_len"]), "-c", ",".join(map(str, request["load"]["concurrencies"])),
             "--objective", request["objective"], "--repeats", str(request["repeats"])]
    limits = request["slo"]["limits_ms"]
    if limits:
        argv += ["--slo", ",".join(f"{k}={v:g}ms" for k, v in limits.items()),
                 "--slo-percentile", f"{request['slo']['percentile']:g}"]
    if request.get("gate"):
        g = request["gate"]
        argv += ["--gsm8k", g["data"], "--gsm8k-n", str(g["n"]), "--gsm8k-shots", str(g["shots"])]
    return shlex.join([*argv, "--out", out])
