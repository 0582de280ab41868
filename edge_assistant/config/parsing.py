"""A table's values, from TOML or the environment, checked and converted to its dataclass:
every problem is a `ConfigError` that names the key."""

from __future__ import annotations

import dataclasses
import re
import types
import typing
from typing import Any, Mapping

from .rules import ConfigError

ENV_PREFIX = "EDGE_ASSISTANT_"


def environment_overrides(
    table_name: str, table_type: type, environ: Mapping[str, str]
) -> dict[str, Any]:
    overrides = {}
    hints = typing.get_type_hints(table_type)
    for table_field in dataclasses.fields(table_type):
        variable = f"{ENV_PREFIX}{table_name}_{table_field.name}".upper()
        if variable in environ:
            key = f"{table_name}.{table_field.name}"
            overrides[table_field.name] = _parse_env(variable, key, environ[variable], hints[table_field.name])
    return overrides


def _parse_env(variable: str, key: str, text: str, hint: Any) -> Any:
    text = text.strip()
    try:
        if hint is bool:
            lowered = text.lower()
            if lowered in ("1", "true", "yes", "on"):
                return True
            if lowered in ("0", "false", "no", "off"):
                return False
            raise ValueError("expected true or false")
        if hint is int:
            return int(text)
        if hint is float:
            return float(text)
        if hint == (str | int):
            return int(text) if re.fullmatch(r"-?\d+", text) else text
        if typing.get_origin(hint) is tuple:
            return [item.strip() for item in text.split(",") if item.strip()]
        return text
    except ValueError as error:
        raise ConfigError(f"{key}: environment variable {variable}={text!r}: {error}") from None


def build_table(table_name: str, table_type: type, values: dict[str, Any]) -> Any:
    hints = typing.get_type_hints(table_type)
    fields = {f.name: f for f in dataclasses.fields(table_type)}
    for name in values:
        if name not in fields:
            raise ConfigError(
                f"{table_name}.{name}: unknown key (known: {', '.join(fields)})"
            )
    converted = {}
    for name, value in values.items():
        key = f"{table_name}.{name}"
        value = _coerce(key, value, hints[name])
        check = fields[name].metadata.get("check")
        if check is not None and not check[0](value):
            raise ConfigError(f"{key}: {check[1]}, got {value!r}")
        converted[name] = value
    return table_type(**converted)


def _coerce(key: str, value: Any, hint: Any) -> Any:
    origin = typing.get_origin(hint)
    if hint is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{key}: must be true or false, got {value!r}")
    if hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ConfigError(f"{key}: must be an integer, got {value!r}")
    if hint is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise ConfigError(f"{key}: must be a number, got {value!r}")
    if hint is str:
        if isinstance(value, str):
            return value
        raise ConfigError(f"{key}: must be a string, got {value!r}")
    if origin in (types.UnionType, typing.Union):
        if isinstance(value, (str, int)) and not isinstance(value, bool):
            return value
        raise ConfigError(f"{key}: must be a device name or index, got {value!r}")
    if origin is tuple and dataclasses.is_dataclass(typing.get_args(hint)[0]):
        return _build_tables(key, typing.get_args(hint)[0], value)
    if origin is tuple:
        if isinstance(value, list) and all(isinstance(item, str) for item in value):
            return tuple(value)
        raise ConfigError(f"{key}: must be a list of strings, got {value!r}")
    raise AssertionError(f"unsupported config type for {key}: {hint}")


def _build_tables(key: str, table_type: type, value: Any) -> tuple:
    """An array of tables (``[[home.devices]]``), each checked like a table of its own."""
    if not isinstance(value, list) or not all(isinstance(item, dict) for item in value):
        raise ConfigError(f"{key}: must be an array of tables like [[{key}]]")
    tables = []
    for index, item in enumerate(value):
        table = build_table(f"{key}[{index}]", table_type, dict(item))
        problem = table.problem() if hasattr(table, "problem") else None
        if problem is not None:
            raise ConfigError(f"{key}[{index}].{problem[0]}: {problem[1]}")
        tables.append(table)
    return tuple(tables)
