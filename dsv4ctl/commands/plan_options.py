"""The plan options shared by `plan`, `explain` and `serve` ("the same options as plan").

A command declares `toggles: Toggles` (and `cli: CliOverrides` for serve's key overrides) and is
wrapped by `@model_options`: each field of the model becomes one Typer option (name, type, bounds and
help from the schema, so no list of toggles is kept here), and the command receives the validated model.
"""

from __future__ import annotations

import functools
import inspect
import typing
from typing import Annotated, Any, Callable, Literal, Optional, get_args, get_origin

import typer
from pydantic import BaseModel

from dsv4ctl.schema.recipe import CliOverrides, Toggles

HwOpt = Annotated[str, typer.Option("--hw", help="Hardware profile (dsv4ctl profiles list).")]
VariantOpt = Annotated[str, typer.Option("--variant", help="flash | pro (| tiny | mini for the runtime).")]
RecipeOpt = Annotated[str, typer.Option("--recipe", help="low-latency | balanced | max-throughput | cp | pd-disagg.")]
SetOpt = Annotated[Optional[list[str]], typer.Option("--set", help="key=value, role.key=value or env.NAME=value.")]
ForceOpt = Annotated[bool, typer.Option("--force", help="Go on although the plan has error findings (says so).")]
StrictOpt = Annotated[bool, typer.Option("--strict", help="Warnings fail too (exit 1).")]

OPTION_MODELS: tuple[type[BaseModel], ...] = (Toggles, CliOverrides)


def flag_of(field: str) -> str:
    return "--" + field.replace("_", "-")


def _base_type(annotation: Any) -> tuple[type, list[str]]:
    """(the Typer type, the Literal choices) of a field's `X | None` annotation."""
    args = [a for a in get_args(annotation) if a is not type(None)] or [annotation]
    inner = args[0]
    if get_origin(inner) is Literal:
        return str, [str(c) for c in get_args(inner)]
    return inner, []


def _bounds(info: Any) -> str:
    """The schema's bounds as help text (the schema checks them: one line, not a usage box)."""
    low = next((m.ge for m in info.metadata if getattr(m, "ge", None) is not None), None)
    high = next((m.le for m in info.metadata if getattr(m, "le", None) is not None), None)
    if low is None and high is None:
        return ""
    return f" {low if low is not None else ''}..{high if high is not None else ''}."


def field_params(model: type[BaseModel]) -> list[inspect.Parameter]:
    """One keyword-only Typer parameter per model field."""
    params = []
    for name, info in model.model_fields.items():
        kind, choices = _base_type(info.annotation)
        flag = flag_of(name)
        decl = f"{flag}/--no-{flag[2:]}" if kind is bool else flag
        help_ = (info.description or "") + (f" One of: {' | '.join(choices)}." if choices else "") + _bounds(info)
        option = typer.Option(decl, help=help_)
        params.append(inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=None,
                                        annotation=Annotated[Optional[kind], option]))
    return params


def build_model(model: type[BaseModel], raw: dict[str, Any]) -> BaseModel:
    """The model from option values; a bad choice is a one-line UserError naming the option."""
    from pydantic import ValidationError

    from dsv4ctl.errors import UserError

    try:
        return model(**raw)
    except ValidationError as exc:
        err = exc.errors()[0]
        name = str(err["loc"][0])
        got = repr(raw[name])
        got = got if len(got) <= 40 else got[:40] + "…"
        fix = "pick one of the listed values" if err["type"] == "literal_error" else "see --help for the range"
        raise UserError(f"{err['msg']} (got {got})", where=flag_of(name), fix=fix) from None


def model_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Expand fn's parameters typed with an OPTION_MODELS model into one option per field."""
    sig = inspect.signature(fn)
    hints = typing.get_type_hints(fn, include_extras=True)
    models = {n: hints[n] for n in sig.parameters if hints.get(n) in OPTION_MODELS}
    params: list[inspect.Parameter] = []
    for p in sig.parameters.values():
        if p.name in models:
            params += field_params(models[p.name])
        else:
            params.append(p.replace(kind=inspect.Parameter.KEYWORD_ONLY, annotation=hints[p.name]))

    @functools.wraps(fn)
    def wrapper(**kwargs: Any) -> Any:
        for name, model in models.items():
            kwargs[name] = build_model(model, {f: kwargs.pop(f) for f in model.model_fields})
        return fn(**kwargs)

    wrapper.__signature__ = sig.replace(parameters=params)  # type: ignore[attr-defined]
    wrapper.__annotations__ = {p.name: p.annotation for p in params}
    return wrapper
