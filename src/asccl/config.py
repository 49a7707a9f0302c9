"""Typed configuration: dataclasses loaded from TOML, overridden from the command line.

Every command has a dataclass of settings. :func:`load_config` builds it from an optional
TOML file and ``--key value`` overrides (dotted keys reach nested dataclasses); an unknown
key is an error that lists the valid ones. :func:`save_config` writes the resolved
config as JSON next to a command's outputs.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
import types
import typing
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TypeVar

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

T = TypeVar("T")


class ConfigError(ValueError):
    """A config file or override is invalid; the message names the file or key."""


def load_config(
    cls: type[T], path: str | os.PathLike | None = None, overrides: Sequence[str] = ()
) -> T:
    """Build ``cls`` from the TOML file ``path`` (optional) and CLI ``overrides``.

    Args:
        cls: a dataclass type.
        path: TOML file whose tables/keys mirror the dataclass fields.
        overrides: ``["--key", "value", "--other=value", "--nested.key", "value"]``;
            values are parsed as TOML literals (``3``, ``1e-4``, ``true``, ``[1, 2]``)
            and fall back to plain strings.
    """
    data: dict[str, Any] = {}
    if path is not None:
        file = Path(path)
        if not file.is_file():
            raise ConfigError(f"{file}: no such config file")
        try:
            data = tomllib.loads(file.read_text())
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{file}: invalid TOML ({exc})") from exc
    for key, value in _parse_overrides(overrides):
        target = data
        *parents, leaf = key.split(".")
        for part in parents:
            target = target.setdefault(part, {})
        target[leaf] = value
    return _build(cls, data, where=str(path) if path else "command line")


def save_config(config: Any, path: str | os.PathLike) -> Path:
    """Write a dataclass config as JSON (atomically)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(dataclasses.asdict(config), indent=2, default=str) + "\n")
    os.replace(tmp, path)
    return path


def _parse_overrides(args: Sequence[str]) -> list[tuple[str, Any]]:
    pairs: list[tuple[str, Any]] = []
    items = list(args)
    while items:
        flag = items.pop(0)
        if not flag.startswith("--"):
            raise ConfigError(f"expected --key value, got {flag!r}")
        key = flag[2:]
        if "=" in key:
            key, raw = key.split("=", 1)
        elif items and not items[0].startswith("--"):
            raw = items.pop(0)
        else:
            raise ConfigError(f"option --{key} needs a value")
        pairs.append((key.replace("-", "_"), _parse_value(raw)))
    return pairs


def _parse_value(raw: str) -> Any:
    try:
        return tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        return raw


def _build(cls: type[T], data: dict[str, Any], where: str) -> T:
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a table for {cls.__name__}, got {data!r}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ConfigError(
            f"{where}: unknown key(s) {unknown} for {cls.__name__}; valid: {sorted(fields)}"
        )
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for name, value in data.items():
        kwargs[name] = _convert(hints[name], value, f"{where}: {name}")
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{where}: {exc}") from exc


def _convert(hint: Any, value: Any, where: str) -> Any:
    origin = typing.get_origin(hint)
    if dataclasses.is_dataclass(hint):
        return _build(hint, value, where)
    if origin in (typing.Union, types.UnionType):
        options = [a for a in typing.get_args(hint) if a is not type(None)]
        if value is None or len(options) != 1:
            return value
        return _convert(options[0], value, where)
    if origin is typing.Literal:
        choices = typing.get_args(hint)
        if value not in choices:
            raise ConfigError(f"{where} must be one of {list(choices)}, got {value!r}")
        return value
    if origin is tuple and isinstance(value, list):
        return tuple(value)
    if hint is Path and isinstance(value, str):
        return Path(value)
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if hint in (int, float, str, bool) and not isinstance(value, hint):
        raise ConfigError(f"{where} must be {hint.__name__}, got {value!r}")
    return value
