"""Reading data files: YAML via safe_load, validated by a model; every failure is one UserError line."""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from dsv4ctl.errors import UserError, pydantic_one_line

M = TypeVar("M", bound=BaseModel)


def _loader():
    import yaml

    # The C loader is ~5x faster; plan cold start reads a dozen files.
    return getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def load_yaml(path: Path) -> Any:
    """Parse one YAML file; malformed YAML names the file and line."""
    import yaml

    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise UserError(f"cannot read ({exc.strerror})", where=str(path), fix="check the path") from None
    try:
        return yaml.load(text, Loader=_loader())  # noqa: S506 - CSafeLoader/SafeLoader only
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        problem = getattr(exc, "problem", None) or "malformed YAML"
        raise UserError(f"malformed YAML ({problem})", where=where, fix="fix the YAML syntax") from None


def validate(model: type[M], data: Any, source: str) -> M:
    """Validate `data` against `model`; the first error becomes a one-line UserError."""
    if not isinstance(data, dict):
        raise UserError("the file must be a mapping at the top level", where=source, fix="write `key: value` pairs")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise pydantic_one_line(exc, source) from None


def load_model(model: type[M], path: Path, **extra: Any) -> M:
    data = load_yaml(path)
    if isinstance(data, dict):
        data = {**extra, **data}
    return validate(model, data, str(path))


def load_named(model: type[M], path: Path) -> M:
    """A data file whose `name` field must equal its file name (profiles, recipes): the file name is
    what users type after --hw / --recipe."""
    obj = load_model(model, path)
    if obj.name != path.stem:
        raise UserError(f"name '{obj.name}' differs from the file name", where=f"{path}: field 'name'",
                        fix=f"set name: {path.stem}")
    return obj
