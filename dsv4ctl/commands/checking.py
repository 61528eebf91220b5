"""`dsv4ctl validate PLAN.yaml` and `dsv4ctl rules`: re-check a (possibly hand-edited) plan file,
and print or regenerate the rule catalog (docs/rules.md)."""

from __future__ import annotations

from pathlib import Path

import typer

RULES_DOC = Path("docs") / "rules.md"


def validate_cmd(
    plan_file: Path = typer.Argument(..., help="Plan file written by `dsv4ctl plan -o`."),
    strict: bool = typer.Option(False, "--strict", help="Exit 1 on warnings."),
    fmt: str = typer.Option("table", "--format", help="table or json."),
) -> None:
    """Re-run every rule on a plan file (or every guardrail on a tuned overlay). Exit 0 clean,
    1 warnings (--strict), 2 errors."""
    from dsv4ctl.errors import UserError
    from dsv4ctl.pipeline import check_plan
    from dsv4ctl.schema import load_plan

    if fmt not in ("table", "json"):
        raise UserError(f"unknown format '{fmt}'", where="--format", fix="use table or json")
    if _is_overlay(plan_file):
        return _validate_overlay(plan_file, fmt)
    checked = check_plan(load_plan(plan_file))
    if fmt == "json":
        from dsv4ctl.console import emit_data

        emit_data({"findings": [f.model_dump(mode="json") for f in checked.findings], "memory": checked.sizing}, "json")
    else:
        _print_report(checked)
    raise typer.Exit(checked.exit_code(strict))


def _is_overlay(path: Path) -> bool:
    """A tuned overlay names its cell under `when:`; a plan file names `hardware:`."""
    from dsv4ctl.schema import load_yaml

    data = load_yaml(path)
    return isinstance(data, dict) and "when" in data and "hardware" not in data


def _validate_overlay(path: Path, fmt: str) -> None:
    from dsv4ctl.console import emit_data, out
    from dsv4ctl.tune.guard import check

    overlay = check(path)  # a failed guardrail is one line and exit 2
    keys = {k: {"baseline": overlay.baseline.get(k), "tuned": v} for k, v in overlay.keys.items()}
    if fmt == "json":
        emit_data({"overlay": str(path), "ok": True, "keys": keys}, "json")
    else:
        out.print(f"[green]ok[/] {path}: {len(keys)} tunable key(s), evidence beyond noise, no rule breached",
                  highlight=False)


def _print_report(checked) -> None:
    from dsv4ctl.console import out
    from dsv4ctl.validate.report import print_findings, print_memory

    print_memory(checked.plan, out)
    if checked.findings:
        print_findings(checked.findings, out)
    else:
        out.print("[green]no findings: the plan validates clean[/]")


def rules_cmd(
    write: bool = typer.Option(False, "--write", help="Regenerate docs/rules.md instead of printing."),
    rule_id: str = typer.Argument(None, help="Show one rule."),
) -> None:
    """Print the rule catalog (or one rule), or regenerate docs/rules.md with --write."""
    from dsv4ctl.errors import UserError, did_you_mean
    from dsv4ctl.paths import REPO_ROOT
    from dsv4ctl.validate import RULES, rule_catalog_markdown

    if rule_id is not None:
        r = RULES.get(rule_id.upper())
        if r is None:
            raise UserError(f"unknown rule '{rule_id}'", where="RULE_ID", fix=did_you_mean(rule_id.upper(), list(RULES)))
        print(f"{r.id} ({r.severity}): {r.title}\n\n{r.doc}\n\nFix: {r.fix}")
        return
    text = rule_catalog_markdown()
    if write:
        (REPO_ROOT / RULES_DOC).write_text(text, encoding="utf-8")
        print(f"wrote {RULES_DOC} ({len(RULES)} rules)")
    else:
        print(text, end="")


def register(app: typer.Typer) -> None:
    """Add this module's commands to the root app."""
    app.command("validate")(validate_cmd)
    app.command("rules")(rules_cmd)
