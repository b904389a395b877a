"""The one way to read configuration: YAML files checked by pydantic models, errors naming file, entry and field."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

ModelT = TypeVar("ModelT", bound=BaseModel)

_ENV_REFERENCE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


class ConfigError(ValueError):
    """Configuration is invalid. Raised at load, before any work starts."""


def read_yaml(path: Path) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None


def describe_validation_error(path: Path, exc: ValidationError, data: Any = None) -> str:
    """One line per problem: file, entry (by its `code`/`name` when it has one), field, message."""
    lines = []
    for error in exc.errors():
        location = list(error["loc"])
        entry = _entry_label(data, location)
        field = ".".join(str(part) for part in location)
        lines.append(f"{path}: {entry}field '{field}': {error['msg']}")
    return "\n".join(lines)


def _entry_label(data: Any, location: list[Any]) -> str:
    node = data
    label = ""
    for part in location:
        try:
            node = node[part]
        except (KeyError, IndexError, TypeError):
            break
        if isinstance(node, dict):
            name = node.get("code") or node.get("name") or node.get("kind")
            if name is not None:
                label = f"entry '{name}': "
    return label


def load_model(path: Path, model: type[ModelT], *, data: Any = None) -> ModelT:
    raw = read_yaml(path) if data is None else data
    try:
        return model.model_validate(raw if raw is not None else {}, context={"path": path})
    except ValidationError as exc:
        raise ConfigError(describe_validation_error(path, exc, raw)) from None


def expand_env(value: str, *, where: str) -> str:
    """Replace ${NAME} with the environment's value; a missing variable is a config error naming `where`."""

    def substitute(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in os.environ:
            raise ConfigError(f"{where}: environment variable {name} is not set")
        return os.environ[name]

    return _ENV_REFERENCE.sub(substitute, value)
