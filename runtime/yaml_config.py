"""Read YAML configuration into pydantic models with errors that name the file, the place and the fix."""

from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from ticketsmith.runtime.errors import ConfigError

ModelT = TypeVar("ModelT", bound=BaseModel)


def read_yaml(path: Path) -> Any:
    """Parse a YAML file, turning I/O and syntax errors into a ConfigError."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot be read ({exc})") from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(
            f"{path}:{where}: invalid YAML: {problem}. Fix the syntax (indentation, quotes, colons)."
        ) from None


def format_location(loc: tuple[int | str, ...]) -> str:
    """Render a pydantic error location as a YAML path such as `categories[2].subcategories`."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out or "(top level)"


_FIXES = {
    "too_short": "must not be empty: list at least one entry",
    "missing": "is required: add it",
    "extra_forbidden": "is not a known key: check its spelling (see configs/ for the expected keys)",
    "string_pattern_mismatch": (
        "is not a valid label: no quotes, backslashes or control characters, no leading or trailing spaces"
    ),
    "string_too_long": "is too long: keep labels under 80 characters",
}


def describe_error(error: ErrorDetails) -> str:
    """One line per problem: the place, what is wrong and how to fix it."""
    place = format_location(tuple(error["loc"]))
    fix = _FIXES.get(error["type"])
    if fix is None:
        return f"  {place}: {error['msg'].removeprefix('Value error, ')}"
    return f"  {place}: {fix}"


def validate_yaml(path: Path, model: type[ModelT]) -> ModelT:
    """Load `path` and validate it as `model`; every problem is listed with its place."""
    data = read_yaml(path)
    if data is None:
        raise ConfigError(f"{path}: the file is empty; see configs/ in the repository for an example")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        lines = [describe_error(err) for err in exc.errors()]
        raise ConfigError(f"{path}: invalid {model.__name__}:\n" + "\n".join(lines)) from None


def load_with_overrides(
    model: type[ModelT], config_path: Path | None, path_keys: tuple[str, ...], overrides: dict[str, Any]
) -> ModelT:
    """`model` from an optional YAML file (its `path_keys` taken relative to the file) with the
    non-None `overrides` (command-line flags) on top."""
    values: dict[str, Any] = {}
    if config_path is not None:
        data = read_yaml(config_path)
        if not isinstance(data, dict):
            raise ConfigError(f"{config_path}: expected a mapping of settings, e.g. `n_threads: 2`")
        for key in path_keys:
            if isinstance(data.get(key), str):
                data[key] = str((config_path.parent / data[key]).resolve())
        values.update(data)
    values.update({k: v for k, v in overrides.items() if v is not None})
    try:
        return model(**values)
    except ValidationError as exc:
        where = str(config_path) if config_path else "settings"
        lines = [describe_error(e) for e in exc.errors()]
        raise ConfigError(f"{where}: invalid {model.__name__}:\n" + "\n".join(lines)) from None
