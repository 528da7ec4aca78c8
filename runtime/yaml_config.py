"""Read YAML configuration into pydantic models with errors that name the file, the place and the fix.

Settings come from, highest first: command-line flags, TICKETSMITH_* environment variables, a YAML
file, the defaults (the twelve-factor order, so a systemd EnvironmentFile overrides a packaged YAML).
The YAML file is one pydantic-settings source among the others (`YamlLayer`), not a hand-made merge."""

import difflib
import types
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar, Union, get_args, get_origin

import yaml
from pydantic import BaseModel, ValidationError
from pydantic.fields import FieldInfo
from pydantic_core import ErrorDetails
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource

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


def _model_at(model: type[BaseModel], loc: tuple[int | str, ...]) -> type[BaseModel] | None:
    """The model that holds the key at `loc` (list indices and optional wrappers looked through)."""
    current: Any = model
    for part in loc:
        if isinstance(part, int):
            continue
        fields = getattr(current, "model_fields", None)
        if fields is None or part not in fields:
            return None
        current = _inner_model(fields[part].annotation)
    return current if isinstance(current, type) and issubclass(current, BaseModel) else None


def _inner_model(annotation: Any) -> Any:
    """The BaseModel inside `X | None`, `list[X]` or `tuple[X, ...]`, if any."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    if get_origin(annotation) in (list, tuple, Union, types.UnionType):
        for arg in get_args(annotation):
            found = _inner_model(arg)
            if found is not None:
                return found
    return None


def describe_error(error: ErrorDetails, model: type[BaseModel] | None = None) -> str:
    """One line per problem: the place, what is wrong and how to fix it; an unknown key gets the
    known key it most resembles."""
    place = format_location(tuple(error["loc"]))
    fix = _FIXES.get(error["type"])
    if error["type"] == "extra_forbidden" and model is not None and error["loc"]:
        owner = _model_at(model, tuple(error["loc"][:-1]))
        known = list(owner.model_fields) if owner is not None else []
        close = difflib.get_close_matches(str(error["loc"][-1]), known, n=1)
        if close:
            return f"  {place}: is not a known key: did you mean `{close[0]}`?"
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
        lines = [describe_error(err, model) for err in exc.errors()]
        raise ConfigError(f"{path}: invalid {model.__name__}:\n" + "\n".join(lines)) from None


def _yaml_mapping(config_path: Path) -> dict[str, Any]:
    data = read_yaml(config_path)
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{config_path}: expected a mapping of settings, e.g. `n_threads: 2`")
    return data


def _relative_to(data: dict[str, Any], base: Path, path_keys: tuple[str, ...]) -> dict[str, Any]:
    """Paths in a config file are relative to that file."""
    resolved = dict(data)
    for key in path_keys:
        if isinstance(resolved.get(key), str):
            resolved[key] = str((base / resolved[key]).resolve())
    return resolved


@dataclass(frozen=True)
class ConfigLayer:
    """The YAML values of one load, for the settings source below: a whole file, or a section of
    one (the worker's `runtime:`), with its paths already resolved."""

    values: dict[str, Any] = field(default_factory=dict)
    where: str = "settings"


_LAYER: ContextVar[ConfigLayer | None] = ContextVar("ticketsmith_config_layer", default=None)


def _layer_values() -> dict[str, Any]:
    layer = _LAYER.get()
    return layer.values if layer is not None else {}


class YamlLayer(PydanticBaseSettingsSource):
    """The settings source of the YAML values being loaded, below the environment."""

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return _layer_values().get(field_name), field_name, False

    def __call__(self) -> dict[str, Any]:
        return dict(_layer_values())


def _validated(model: type[ModelT], layer: ConfigLayer, overrides: dict[str, Any]) -> ModelT:
    flags = {k: v for k, v in overrides.items() if v is not None}
    token = _LAYER.set(layer)
    try:
        if issubclass(model, BaseSettings):
            return model(**flags)  # its sources: flags, environment, YamlLayer, defaults
        return model(**{**layer.values, **flags})  # no environment: the file, then the flags on top
    except ValidationError as exc:
        lines = [describe_error(e, model) for e in exc.errors()]
        raise ConfigError(f"{layer.where}: invalid {model.__name__}:\n" + "\n".join(lines)) from None
    finally:
        _LAYER.reset(token)


def load_with_overrides(
    model: type[ModelT], config_path: Path | None, path_keys: tuple[str, ...], overrides: dict[str, Any]
) -> ModelT:
    """`model` from an optional YAML file (its `path_keys` taken relative to the file) under the
    non-None `overrides` (command-line flags) and, for settings models, the environment."""
    if config_path is None:
        return _validated(model, ConfigLayer(), overrides)
    values = _relative_to(_yaml_mapping(config_path), config_path.parent, path_keys)
    return _validated(model, ConfigLayer(values, str(config_path)), overrides)


def load_section(
    model: type[ModelT],
    section: dict[str, Any],
    base: Path | None,
    path_keys: tuple[str, ...],
    where: str,
    overrides: dict[str, Any],
) -> ModelT:
    """`model` from a section of a larger YAML file (paths relative to that file's folder `base`),
    in the same order of precedence as a file of its own."""
    values = _relative_to(section, base, path_keys) if base is not None else dict(section)
    return _validated(model, ConfigLayer(values, where), overrides)
