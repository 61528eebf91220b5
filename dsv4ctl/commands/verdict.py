"""The one exit-code policy of every command that takes a plan (plan, validate, render, serve).

A plan with error findings is not a success: exit 2, the errors on stderr, unless --force, which goes
on and says so. Warnings change nothing unless --strict (then exit 1). Output already written (plan -o)
stays written; the message says it has errors."""

from __future__ import annotations

from dsv4ctl.pipeline import CheckedPlan


def verdict(checked: CheckedPlan, command: str, *, force: bool = False, strict: bool = False,
            shown: bool = False) -> int:
    """The exit code for `checked` under the policy, after telling the user why on stderr. `shown`:
    the findings were already printed (a Rich plan summary), so only the verdict line follows."""
    code = checked.exit_code(strict)
    if code == 0:
        return 0
    from rich.markup import escape  # imported only when there is something to say (cold start)

    from dsv4ctl.console import err
    from dsv4ctl.validate.report import print_findings

    bad = checked.errors if code == 2 else checked.warnings
    if not shown:
        print_findings(bad, err)
    ids = ", ".join(dict.fromkeys(f.rule for f in bad))
    kind = "error" if code == 2 else "warning (--strict)"
    if force:
        err.print(f"[yellow]warning:[/] {command}: --force: going on despite {kind} findings ({escape(ids)})",
                  highlight=False)
        return 0
    err.print(f"[bold red]error:[/] {command}: the plan fails validation ({escape(ids)}) "
              "(fix: fix the plan (see above) or pass --force)", highlight=False)
    return code


def refuse_unless_ok(checked: CheckedPlan, command: str, *, force: bool, strict: bool = False) -> None:
    """For commands that act on a plan (render, serve): stop with the policy's exit code."""
    import typer

    code = verdict(checked, command, force=force, strict=strict)
    if code:
        raise typer.Exit(code)
