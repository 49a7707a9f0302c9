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
            and fall back to plain strings; a path or text field takes the text as typed
            (``--out 5`` is the folder ``5``).

    Path fields become :class:`~pathlib.Path` objects; an empty path, or one that is not
    valid UTF-8 (undecodable bytes in ``argv``), is refused.
    """
    data: dict[str, Any] = {}
    if path is not None:
        file = Path(path)
        if not file.is_file():
            raise ConfigError(f"{file}: no such config file")
        try:
            data = tomllib.loads(file.read_bytes().decode("utf-8"))
        except UnicodeDecodeError as exc:
            raise ConfigError(f"{file}: not UTF-8 text ({exc.reason} at byte {exc.start})") from exc
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
        pairs.append((key.replace("-", "_"), _CommandLine(_parse_value(raw), raw)))
    return pairs


@dataclasses.dataclass(frozen=True)
class _CommandLine:
    """An override's value: its TOML reading and the text as typed."""

    value: Any
    text: str


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
        text = None
        if isinstance(value, _CommandLine):
            value, text = value.value, value.text
        kwargs[name] = _convert(hints[name], value, f"{where}: {name}", text)
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{where}: {exc}") from exc


def _convert(hint: Any, value: Any, where: str, text: str | None = None) -> Any:
    """``value`` as a ``hint``; ``text``: the command-line text it was read from."""
    origin = typing.get_origin(hint)
    if dataclasses.is_dataclass(hint):
        return _build(hint, value, where)
    if origin in (typing.Union, types.UnionType):
        options = [a for a in typing.get_args(hint) if a is not type(None)]
        if value is None or len(options) != 1:
            return value
        return _convert(options[0], value, where, text)
    if origin is typing.Literal:
        choices = typing.get_args(hint)
        if value not in choices:
            raise ConfigError(f"{where} must be one of {list(choices)}, got {value!r}")
        return value
    if origin in (list, tuple):
        return _convert_items(hint, value, where, text)
    if hint is Path:
        return _path(value, text, where)
    if hint is str and text is not None and not isinstance(value, str):
        return text  # `--device 0`: the text as typed
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if hint in (int, float, str, bool) and (
        not isinstance(value, hint) or (hint is int and isinstance(value, bool))
    ):
        raise ConfigError(f"{where} must be {hint.__name__}, got {value!r}")
    return value


def _convert_items(hint: Any, value: Any, where: str, text: str | None = None) -> list | tuple:
    """A TOML array as ``list[X]``, ``tuple[X, ...]`` or ``tuple[X, Y]``, items converted; a
    single value is a one-item list (``--val-speakers W903``, not its characters)."""
    given = value
    if not isinstance(value, (list, tuple)):
        value = [value]
    else:
        text = None  # the text as typed belongs to a single value only
    args = typing.get_args(hint)
    if typing.get_origin(hint) is list or (len(args) == 2 and args[1] is Ellipsis):
        types_ = [args[0] if args else Any] * len(value)
    elif len(args) != len(value):
        raise ConfigError(f"{where} must have {len(args)} items, got {given!r}")
    else:
        types_ = list(args)
    items = [
        v if t is Any else _convert(t, v, f"{where}[{i}]", text)
        for i, (t, v) in enumerate(zip(types_, value, strict=True))
    ]
    return items if typing.get_origin(hint) is list else tuple(items)


def _path(value: Any, text: str | None, where: str) -> Path:
    """A path field: a string (or, from the command line, the text as typed) as a Path."""
    if isinstance(value, (str, Path)):
        raw = str(value)
    elif text is not None:
        raw = text  # `--out 5`, `--out 2024-01-01`: TOML reads a number or date; it is a name
    else:
        raise ConfigError(f"{where} must be a path (a string), got {value!r}")
    if not raw:
        raise ConfigError(f"{where} must be a path, got an empty string")
    try:
        raw.encode("utf-8")
    except UnicodeEncodeError:  # undecodable bytes in argv arrive as lone surrogates
        raise ConfigError(
            f"{where}: the path {raw!a} is not valid UTF-8; rename it or use another path"
        ) from None
    return Path(raw)
