"""User-facing errors: one line naming the file, the field and the fix; exit code 2.

Raise `UserError` anywhere in the control plane for bad input. `cli.main` turns it (and YAML /
pydantic errors that escaped a loader) into one red line and exit code 2 — never a traceback.
"""

from __future__ import annotations


class UserError(Exception):
    """Bad input that the user can fix. `where` is a file (and field), `fix` says what to do."""

    exit_code = 2

    def __init__(self, message: str, *, where: str | None = None, fix: str | None = None):
        super().__init__(message)
        self.message = message
        self.where = where
        self.fix = fix

    def one_line(self) -> str:
        head = f"{self.where}: " if self.where else ""
        tail = f" (fix: {self.fix})" if self.fix else ""
        # cli prints this through Rich: escape so layer labels like "overrides[hw=b200]" survive.
        from rich.markup import escape

        return escape(_visible(f"{head}{self.message}{tail}"))


def _visible(text: str) -> str:
    """Control characters (a newline in a YAML key, a tab in a path) as escapes: the error stays one
    line, and a terminal escape sequence from a hostile file is shown, never run."""
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in text)


def did_you_mean(name: str, choices: list[str]) -> str:
    """' (did you mean 'x'?)' for the closest choice, or the list of choices when none is close."""
    import difflib

    close = difflib.get_close_matches(name, choices, n=1, cutoff=0.5)
    if close:
        return f"did you mean '{close[0]}'?"
    return "choose one of: " + ", ".join(sorted(choices))


def pydantic_one_line(exc, source: str) -> UserError:
    """The first pydantic validation error as a UserError naming the file and the field."""
    err = exc.errors()[0]
    loc = [str(p) for p in err.get("loc", ())]
    field = ".".join(loc) or "<root>"
    msg = err.get("msg", "invalid value").removeprefix("Value error, ")
    kind = err.get("type")
    if kind == "extra_forbidden":
        fix = "remove the key or check its spelling"
    elif kind == "string_pattern_mismatch" and loc[-1:] == ["[key]"]:
        fix = "an environment variable name is letters, digits and _, not starting with a digit"
    else:
        fix = "correct the value"
    return UserError(msg, where=f"{source}: field '{field}'", fix=fix)
