"""Typer options generated from a pydantic options model (Toggles, CliOverrides, bench options).

A command declares a parameter typed with such a model and is wrapped by `@model_options`: each field
becomes one Typer option (name, type, default, choices and help from the model; short flags, env vars
and positional arguments from a `CliFlag` in the field's metadata), and the command receives the
validated model. So no command keeps its own list of the model's fields."""

from __future__ import annotations

import functools
import inspect
import types
import typing
from typing import Annotated, Any, Callable, Literal, Optional, get_args, get_origin

import typer
from pydantic import BaseModel
from pydantic_core import PydanticUndefined

from dsv4ctl.schema.base import CliFlag


def flag_of(field: str) -> str:
    return "--" + field.replace("_", "-")


def _base_type(annotation: Any) -> tuple[Any, list[str], bool]:
    """(the Typer type, the Literal choices, whether None is allowed) of a field's annotation."""
    args = get_args(annotation) if get_origin(annotation) in (typing.Union, types.UnionType) else ()
    inner = [a for a in args if a is not type(None)] or [annotation]
    kind = inner[0]
    if get_origin(kind) is Literal:
        return str, [str(c) for c in get_args(kind)], bool(args)
    return kind, [], bool(args)


def _bounds(info: Any) -> str:
    """The schema's bounds as help text (the schema checks them: one line, not a usage box)."""
    low = next((m.ge for m in info.metadata if getattr(m, "ge", None) is not None), None)
    high = next((m.le for m in info.metadata if getattr(m, "le", None) is not None), None)
    if low is None and high is None:
        return ""
    return f" {low if low is not None else ''}..{high if high is not None else ''}."


def _param(name: str, info: Any) -> inspect.Parameter:
    kind, choices, optional = _base_type(info.annotation)
    cli = next((m for m in info.metadata if isinstance(m, CliFlag)), CliFlag())
    text = (info.description or "").rstrip(".")
    help_ = (f"{text}." if text else "") + (f" One of: {' | '.join(choices)}." if choices else "") + _bounds(info)
    required = info.default is PydanticUndefined
    if cli.argument:
        marker = typer.Argument(help=help_)
    else:
        flag = flag_of(name)
        decls = [f"{flag}/--no-{flag[2:]}" if kind is bool else flag, *([cli.short] if cli.short else [])]
        marker = typer.Option(*decls, help=help_, envvar=cli.envvar)
    default = inspect.Parameter.empty if required else info.default
    return inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default,
                             annotation=Annotated[Optional[kind] if optional else kind, marker])


def field_params(model: type[BaseModel]) -> list[inspect.Parameter]:
    """One keyword-only Typer parameter per model field."""
    return [_param(name, info) for name, info in model.model_fields.items()]


def build_model(model: type[BaseModel], raw: dict[str, Any]) -> BaseModel:
    """The model from option values; a bad value is a one-line UserError naming the option."""
    from pydantic import ValidationError

    from dsv4ctl.errors import UserError

    try:
        return model(**raw)
    except ValidationError as exc:
        err = exc.errors()[0]
        name = str(err["loc"][0])
        got = repr(raw.get(name))
        got = got if len(got) <= 40 else got[:40] + "…"
        fix = "pick one of the listed values" if err["type"] == "literal_error" else "see --help"
        raise UserError(f"{err['msg']} (got {got})", where=flag_of(name), fix=fix) from None


def _is_model(hint: Any) -> bool:
    return isinstance(hint, type) and issubclass(hint, BaseModel)


def model_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Expand fn's parameters typed with a pydantic model into one option per field."""
    sig = inspect.signature(fn)
    hints = typing.get_type_hints(fn, include_extras=True)
    models = {n: hints[n] for n in sig.parameters if _is_model(hints.get(n))}
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
