"""Reading data files: bounded safe YAML, validated by a model; every failure is one UserError line."""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from dsv4ctl.errors import UserError, pydantic_one_line

M = TypeVar("M", bound=BaseModel)


def load_yaml(path: Path) -> Any:
    """Parse one YAML file through the project's one bounded reader (dsv4rt.yaml_io: size, alias
    expansion and nesting bounded, safe tags only); every failure names the file (and the line)."""
    import yaml

    from dsv4rt import yaml_io

    try:
        return yaml_io.loads(yaml_io.read_text(path))
    except OSError as exc:
        raise UserError(f"cannot read ({exc.strerror or exc})", where=str(path), fix="check the path") from None
    except UnicodeDecodeError:
        raise UserError("not a UTF-8 text file (binary, or UTF-16?)", where=str(path),
                        fix="save it as UTF-8 YAML") from None
    except yaml_io.YamlLimitError as exc:
        raise UserError(f"YAML over a limit: {exc}", where=str(path), fix="write the values out plainly") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        problem = " ".join(str(getattr(exc, "problem", None) or "malformed YAML").split())
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
