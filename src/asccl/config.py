"""Typed configuration: dataclasses loaded from TOML, overridden from the command line.

Every command has a frozen dataclass of settings; a command that runs others holds their
configs (``ExperimentConfig.ganmut`` is an ``SPFEMTrainConfig``, ``.eval`` an ``EvalConfig``).
:func:`load_config` builds it from an optional TOML file and ``--key value`` overrides
(dotted keys reach nested dataclasses: ``--train.lr 1e-4``); an unknown key is an error
that lists the valid ones. A nested config may come from its own file: ``eval =
"configs/eval/demo.toml"`` (or ``--eval FILE``), or a table ``[eval]`` with ``include =
"FILE"`` and keys that override the file's; paths are relative to the working directory,
as every path in a config. :func:`save_config` writes the resolved config as JSON next to
a command's outputs.

The checks every config class runs in its ``__post_init__`` (one
:class:`ConfigError` naming the key): :func:`require`, :func:`is_int`,
:func:`is_number`, :func:`is_device`, and the converters :func:`path_field` and
:func:`names_field`.

A command's ``--help`` lists its config's keys (:func:`describe_keys`): type, default and
the field's description (:mod:`asccl.config_keys`). An unknown key is an error naming the
flag (or the file) with the closest valid keys.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import re
import sys
import types
import typing
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TypeVar

from asccl.config_keys import config_keys, describe_keys, did_you_mean
from asccl.io import write_text_atomic

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

T = TypeVar("T")

__all__ = [
    "ConfigError",
    "config_keys",
    "describe_keys",
    "is_device",
    "is_int",
    "is_number",
    "load_config",
    "names_field",
    "path_field",
    "require",
    "save_config",
]


class ConfigError(ValueError):
    """A config file or override is invalid; the message names the file or key."""


# ------------------------------------------------------------ checks for __post_init__


def require(ok: bool, config: object, key: str, problem: str, *, name: str | None = None) -> None:
    """Raise ``ConfigError("<key> <problem>, got <value>")`` unless ``ok``; ``name``: what
    to call the key instead (a command-line flag such as ``-n``)."""
    if not ok:
        raise ConfigError(f"{name or key} {problem}, got {getattr(config, key)!r}")


def is_int(value: object, low: int | None = None, high: int | None = None) -> bool:
    """``value`` is an int (not a bool) in ``[low, high]`` (a missing bound: no limit)."""
    return (
        isinstance(value, int)
        and not isinstance(value, bool)
        and (low is None or value >= low)
        and (high is None or value <= high)
    )


def is_number(value: object) -> bool:
    """``value`` is a finite int or float (not a bool)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


_DEVICE = re.compile(r"^(cpu|mps|cuda(:\d+)?)$")


def is_device(value: object, *, auto: bool = False) -> bool:
    """``value`` is ``"cpu"``, ``"mps"``, ``"cuda"``, ``"cuda:N"`` (or ``"auto"`` if allowed)."""
    return isinstance(value, str) and (bool(_DEVICE.match(value)) or (auto and value == "auto"))


def path_field(
    config: object, key: str, *, optional: bool = False, name: str | None = None
) -> None:
    """Make ``config.<key>`` a :class:`~pathlib.Path` (frozen dataclasses too): a string or
    path-like is converted; ``None`` is kept when ``optional``; anything else, an empty
    path or one that is not valid UTF-8 is a :class:`ConfigError` naming ``key`` (or
    ``name``)."""
    value = getattr(config, key)
    if value is None and optional:
        return
    require(isinstance(value, (str, os.PathLike)), config, key, "must be a path", name=name)
    raw = os.fspath(value)
    require(isinstance(raw, str), config, key, "must be a path (text, not bytes)", name=name)
    _check_path_text(raw, name or key)
    object.__setattr__(config, key, Path(raw))


def names_field(
    config: object,
    key: str,
    *,
    optional: bool = False,
    problem: str = 'must be a list of names, e.g. ["a", "b"]',
    name: str | None = None,
    empty: str | None = None,
) -> None:
    """Make ``config.<key>`` a tuple of non-empty strings: one string is a one-item tuple,
    a list becomes a tuple; ``None`` is kept when ``optional``; else a ConfigError.

    An empty list is an empty tuple, unless ``empty`` says what to give instead: then it
    is ``ConfigError("<key> is empty: <empty>")`` (not ``got ()``: the loader has already
    made the list a tuple), e.g. ``empty='name at least one held-out speaker, e.g.
    ["W021"]'``. Pass it wherever an empty list means nothing (no "all" or "none")."""
    value = getattr(config, key)
    if value is None and optional:
        return
    if isinstance(value, str):
        value = (value,)
    require(isinstance(value, (list, tuple)) and all(isinstance(v, str) and v for v in value),
            config, key, problem, name=name)  # fmt: skip
    if empty is not None and len(value) == 0:
        raise ConfigError(f"{name or key} is empty: {empty}")
    object.__setattr__(config, key, tuple(value))


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
            (``--out 5`` is the folder ``5``). A nested config's key given a file name
            (``--eval configs/eval/demo.toml``) reads that table from the file first;
            the dotted keys of that table then override it, whatever their order
            (``--eval.sub FILE2`` too: a deeper file is read after a shallower one).
            Such a file replaces the whole table: whatever ``path`` set in ``[eval]``
            is dropped, not merged.

    Path fields become :class:`~pathlib.Path` objects; an empty path, or one that is not
    valid UTF-8 (undecodable bytes in ``argv``), is refused.
    """
    data: dict[str, Any] = {}
    where = "command line"
    if path is not None:
        file, where = Path(path), str(path)
        data = _expand(cls, read_toml(file), where, (file.resolve(),))
    pairs = _parse_overrides(overrides)
    for key, value in pairs:
        _check_override_key(cls, key, value.flag)
    # includes first, shallower before deeper (`--eval FILE` before `--eval.sub FILE2`, which
    # it would replace), then every other key on top, in the order given (a stable sort)
    pairs.sort(key=lambda pair: (not _is_include(cls, *pair), pair[0].count(".")))
    for key, value in pairs:
        *parents, leaf = key.split(".")
        target = data
        for depth, part in enumerate(parents):
            prefix = ".".join(parents[: depth + 1])
            target = target.setdefault(part, {})
            if not isinstance(target, dict) or _is_plain_field(cls, prefix):
                raise ConfigError(f"--{prefix} is not a table: --{key} has nothing to set")
        if _is_include(cls, key, value):
            value = _include(_field_type(cls, key), value.text, f"--{key}", ())
        target[leaf] = value
    return _build(cls, data, where)


def read_toml(file: Path) -> dict[str, Any]:
    """``file``'s TOML table; a missing or unreadable file, bad UTF-8 or bad TOML is one
    ConfigError."""
    if file.is_dir():
        raise ConfigError(f"{file}: is a folder, not a config file")
    if not file.is_file():
        raise ConfigError(f"{file}: no such config file")
    try:
        return tomllib.loads(file.read_bytes().decode("utf-8"))
    except OSError as exc:
        raise ConfigError(f"{file}: cannot read it ({exc.strerror or exc})") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{file}: not UTF-8 text ({exc.reason} at byte {exc.start})") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{file}: invalid TOML ({exc})") from exc


#: the key of a nested config's table that names a file to read the table from first
INCLUDE = "include"


def _config_class(hint: Any) -> type | None:
    """The dataclass a field holds (``X`` or ``X | None``), else None."""
    options = [a for a in typing.get_args(hint) if a is not type(None)] or [hint]
    if len(options) == 1 and dataclasses.is_dataclass(options[0]):
        return options[0]
    return None


def _field_type(cls: Any, key: str) -> type | None:
    """The nested config class at dotted ``key`` of ``cls``, else None."""
    for part in key.split("."):
        if cls is None or part not in {f.name for f in dataclasses.fields(cls)}:
            return None
        cls = _config_class(typing.get_type_hints(cls)[part])
    return cls


def _is_plain_field(cls: Any, key: str) -> bool:
    """Dotted ``key`` of ``cls`` is a setting, not a nested config."""
    *parents, leaf = key.split(".")
    owner = _field_type(cls, ".".join(parents)) if parents else cls
    if owner is None or leaf not in {f.name for f in dataclasses.fields(owner)}:
        return False
    return _config_class(typing.get_type_hints(owner)[leaf]) is None


def _is_include(cls: Any, key: str, value: Any) -> bool:
    """``--key FILE`` where ``key`` is a nested config: its table comes from FILE."""
    return _field_type(cls, key) is not None and isinstance(value, _CommandLine)


def _expand(cls: Any, table: Any, where: str, seen: tuple[Path, ...]) -> Any:
    """``table`` with every nested config given as a file name (``eval = "FILE"``) or as
    ``{include = "FILE", key = value...}`` replaced by the file's table (the keys beside
    ``include`` override it); a file that includes itself is refused."""
    if not isinstance(table, dict):
        return table
    table = _Table(table, getattr(table, "source", None))
    for f in dataclasses.fields(cls):
        inner = _config_class(typing.get_type_hints(cls)[f.name])
        value = table.get(f.name)
        if inner is None or value is None:
            continue
        here = f"{where}: {f.name}"
        if isinstance(value, dict) and INCLUDE in value:
            rest = {k: v for k, v in value.items() if k != INCLUDE}
            base = _include(inner, value[INCLUDE], f"{here}.{INCLUDE}", seen)
            table[f.name] = _merge(base, _expand(inner, rest, here, seen))
        elif isinstance(value, str):
            table[f.name] = _include(inner, value, here, seen)
        else:
            table[f.name] = _expand(inner, value, here, seen)
    return table


def _include(cls: Any, name: Any, where: str, seen: tuple[Path, ...]) -> dict[str, Any]:
    if not isinstance(name, str) or not name:
        raise ConfigError(f"{where} must be a config file name or a table, got {name!r}")
    file = Path(name)
    if file.resolve() in seen:
        raise ConfigError(f"{where}: {file} includes itself")
    table = _expand(cls, read_toml(file), str(file), (*seen, file.resolve()))
    return _Table(table, str(file))


class _Table(dict):
    """A table read from an included file (``source``): errors in it name the file."""

    def __init__(self, items: dict[str, Any], source: str | None = None) -> None:
        super().__init__(items)
        self.source = source


def _merge(base: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    """``base`` with ``changes`` on top; tables merge key by key."""
    merged = _Table(base, getattr(base, "source", None))
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            value = _merge(merged[key], value)
        merged[key] = value
    return merged


def save_config(config: Any, path: str | os.PathLike) -> Path:
    """Write a dataclass config as JSON (atomically)."""
    text = json.dumps(dataclasses.asdict(config), indent=2, default=str) + "\n"
    return write_text_atomic(path, text)


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
        value = _CommandLine(_parse_value(raw), raw, f"--{key}")
        pairs.append((key.replace("-", "_"), value))
    return pairs


def _check_override_key(cls: Any, key: str, flag: str) -> None:
    """An override whose dotted ``key`` is no key of ``cls`` is a :class:`ConfigError`
    naming the ``flag`` as typed, with the closest keys (``--lrr``: did you mean ``--lr``?)."""
    owner = cls
    for part in key.split("."):
        names = sorted(f.name for f in dataclasses.fields(owner))
        if part not in names:
            hint = did_you_mean(cls, key, style=flag)
            raise ConfigError(
                f"{flag}: unknown key(s) {[part]} for {owner.__name__}; {hint}valid: {names}"
            )
        owner = _config_class(typing.get_type_hints(owner)[part])
        if owner is None:
            return  # a plain setting: a deeper part is refused as "not a table" later


@dataclasses.dataclass(frozen=True)
class _CommandLine:
    """An override's value: its TOML reading and the text as typed."""

    value: Any
    text: str
    flag: str = ""  #: the option as typed (``--batch-size``)


def _parse_value(raw: str) -> Any:
    try:
        return tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        return raw


def _build(
    cls: type[T], data: dict[str, Any], where: str, base: Any = None, cli: str = "command line"
) -> T:
    """``cls`` from the table ``data``; keys it does not give keep ``base``'s values (the
    default of the field it fills, e.g. ``ExperimentConfig.icface``'s ``model = "icface"``),
    else the class defaults. ``where``: the file (and table) the keys come from; ``cli``:
    what to call the command line's keys of this table, so that a bad override's error
    names the command line, not the file beside it."""
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a table for {cls.__name__}, got {data!r}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        hint = did_you_mean(cls, unknown[0])
        raise ConfigError(
            f"{where}: unknown key(s) {unknown} for {cls.__name__}; {hint}valid: {sorted(fields)}"
        )
    hints = typing.get_type_hints(cls)
    kwargs = {}
    from_cli = set()
    for name, value in data.items():
        text = None
        if isinstance(value, _CommandLine):
            value, text = value.value, value.text
            from_cli.add(name)
        inner = _config_class(hints[name])
        if inner is not None and isinstance(value, dict):
            here, source = f"{where}: {name}", getattr(value, "source", None)
            here = f"{here} (from {source})" if source else here
            default = getattr(base, name) if base is not None else _default(fields[name])
            default = default if isinstance(default, inner) else None
            kwargs[name] = _build(inner, value, here, default, f"{cli}: {name}")
        else:
            key_where = f"{cli if name in from_cli else where}: {name}"
            kwargs[name] = _convert(hints[name], value, key_where, text)
    if base is not None:
        kwargs = {f: getattr(base, f) for f, spec in fields.items() if spec.init} | kwargs
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{_blamed(str(exc), data, from_cli, where, cli)}: {exc}") from exc


def _blamed(message: str, data: dict[str, Any], from_cli: set[str], where: str, cli: str) -> str:
    """Where a check's ``message`` comes from: the command line when the first key of the
    table it names was given there (``lr must be ...`` after ``--lr -1``), else the file."""
    first = None
    for key in data:
        found = re.search(rf"(?<![\w.'\"]){re.escape(key)}(?![\w'\"])", message)
        if found and (first is None or found.start() < first[0]):
            first = (found.start(), key)
    return cli if first is not None and first[1] in from_cli else where


def _default(spec: dataclasses.Field) -> Any:
    """A field's default value (made by its factory), or None."""
    if spec.default_factory is not dataclasses.MISSING:
        return spec.default_factory()
    return None if spec.default is dataclasses.MISSING else spec.default


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
    _check_path_text(raw, where)
    return Path(raw)


def _check_path_text(raw: str, where: str) -> None:
    """Refuse an empty path, or one that is not valid UTF-8."""
    if not raw:
        raise ConfigError(f"{where} must be a path, got an empty string")
    try:
        raw.encode("utf-8")
    except UnicodeEncodeError:  # undecodable bytes in argv arrive as lone surrogates
        raise ConfigError(
            f"{where}: the path {raw!a} is not valid UTF-8; rename it or use another path"
        ) from None
