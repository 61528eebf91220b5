"""The `dsv4ctl` Typer app. Thin: each command module registers its commands; `main` maps bad input
to one line and exit code 2."""

from __future__ import annotations

import importlib
import os
import sys

import typer

from dsv4ctl.errors import UserError

app = typer.Typer(
    name="dsv4ctl",
    help="Plan, validate, serve, benchmark and tune DeepSeek-V4 deployments.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

# Each module defines `register(app)`; they import heavy libraries (torch, matplotlib) lazily inside
# the commands, so `dsv4ctl plan` stays fast and torch-free.
COMMAND_MODULES = (
    "dsv4ctl.commands.planning",
    "dsv4ctl.commands.predicting",
    "dsv4ctl.commands.checking",
    "dsv4ctl.commands.serving",
    "dsv4ctl.commands.benching",
    "dsv4ctl.commands.runtime",
    "dsv4ctl.commands.tuning",
    "dsv4ctl.commands.firststeps",
)

for _name in COMMAND_MODULES:
    importlib.import_module(_name).register(app)


def _print_version(value: bool) -> None:
    # Eager: runs while the options are parsed, before click asks for a command ("Missing command").
    if value:
        from dsv4ctl import __version__

        print(f"dsv4ctl {__version__}")
        raise typer.Exit(0)


@app.callback()
def _root(version: bool = typer.Option(False, "--version", is_eager=True, callback=_print_version,
                                       help="Print the version and exit.")) -> None:
    """Plan, validate, serve, benchmark and tune DeepSeek-V4 deployments."""


def main(argv: list[str] | None = None) -> None:
    """Console-script entry: run the app; turn user errors into one line and exit code 2."""
    # We use no pydantic plugins; looking them up scans every installed distribution (~15 ms a start).
    os.environ.setdefault("PYDANTIC_DISABLE_PLUGINS", "1")
    from dsv4ctl import console

    try:
        app(args=argv, standalone_mode=True)
    except UserError as exc:
        console.err.print(f"[bold red]error:[/] {exc.one_line()}", highlight=False)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        console.err.print("[yellow]interrupted[/]")
        sys.exit(130)


if __name__ == "__main__":
    main()
