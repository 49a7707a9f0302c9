"""What a config class's keys are, for people: ``--help`` listings and "did you mean".

:func:`config_keys` walks a config dataclass (nested configs as dotted keys, ``a.b``) and
gives each key's type, default and one-line description; :func:`describe_keys` renders
them for a command's ``--help``; :func:`did_you_mean` finds the keys closest to a typo.

A field's description is its ``field(metadata={"help": ...})`` when given, else its
doc-comment: the comment lines just above the field, or a comment at the end of the field's
first line (``#:`` as Sphinx reads attribute docs, or a plain ``#``)::

    lr: float = 1e-4  #: Adam's learning rate
    #: passes over the training pairs
    epochs: int = 50

else its entry in the class docstring's ``Attributes:`` section (Google style). Comments
are read from the class's source with :mod:`ast` and :mod:`tokenize` (both stable across
Python versions); where there is no source (an install stripped of ``.py`` files) only
metadata and docstrings describe keys, and the keys are listed all the same. Nothing here
imports torch.
"""

from __future__ import annotations

import ast
import dataclasses
import difflib
import functools
import inspect
import io
import json
import re
import textwrap
import tokenize
import types
import typing
from pathlib import Path
from typing import Any

__all__ = ["ConfigKey", "config_keys", "describe_keys", "did_you_mean", "field_docs"]

#: comments at the end of a line that are tool directives, not descriptions
_PRAGMAS = re.compile(r"^(fmt|noqa|type|pragma|pylint|ruff|isort|mypy)\b")
#: abbreviations whose full stop does not end a sentence
_ABBREVIATIONS = ("e.g.", "i.e.", "etc.", "cf.", "vs.", "approx.")


@dataclasses.dataclass(frozen=True)
class ConfigKey:
    """One key of a config: ``key`` dotted (``metric.backbone``), ``type`` and ``default``
    as text (``default`` a TOML literal, or None: unset), ``help`` its description (may be
    empty), ``table``: a nested config (set by its own keys, or from a TOML file)."""

    key: str
    type: str
    default: str | None
    help: str
    table: bool = False


def config_keys(cls: type, base: Any = None, prefix: str = "") -> list[ConfigKey]:
    """Every key of the config dataclass ``cls``, nested configs' keys after their table.

    Args:
        cls: a dataclass type.
        base: an instance whose values are the defaults (a nested config's default, e.g.
            ``ExperimentConfig.icface``'s ``model = "icface"``); None: the class defaults.
        prefix: dotted prefix of the keys (``"train."``).
    """
    hints = typing.get_type_hints(cls)
    docs = field_docs(cls)
    keys = []
    for spec in dataclasses.fields(cls):
        if not spec.init:
            continue
        hint = hints[spec.name]
        default = getattr(base, spec.name) if base is not None else _default(spec)
        key = f"{prefix}{spec.name}"
        inner = _config_class(hint)
        if inner is not None:
            keys.append(ConfigKey(key, _type_text(hint), None, docs.get(spec.name, ""), True))
            nested = default if isinstance(default, inner) else None
            keys.extend(config_keys(inner, nested, f"{key}."))
        else:
            text = None if default is None else _toml_literal(default)
            keys.append(ConfigKey(key, _type_text(hint), text, docs.get(spec.name, "")))
    return keys


def describe_keys(cls: type, width: int = 88) -> str:
    """The keys of ``cls`` for a ``--help`` epilog: one ``key: type = default`` line each,
    its description indented below (wrapped to ``width``)."""
    lines = []
    for item in config_keys(cls):
        if item.table:
            head = f"  {item.key}: {item.type} (a [{item.key}] table, or a TOML file's name)"
        elif item.default is None:
            head = f"  {item.key}: {item.type} (unset by default)"
        else:
            head = f"  {item.key}: {item.type} = {item.default}"
        lines.append(head)
        if item.help:
            lines += textwrap.wrap(item.help, width, initial_indent=" " * 6,
                                   subsequent_indent=" " * 6)  # fmt: skip
    return "\n".join(lines)


#: keys an earlier asccl read, by their new name and what changed
RENAMED: dict[str, tuple[str, str]] = {
    "lse_jpeg_roundtrip": (
        "lse_codecs",
        "which covers every codec step of syncnet_python's run_pipeline, not only the JPEG one",
    ),
}


def did_you_mean(cls: type, key: str, style: str = "") -> str:
    """``"did you mean --lr? "`` (or ``'lr'?``) for the unknown dotted ``key`` of ``cls``,
    or ``""`` when no key is close. ``style``: the flag as typed (``--batchsize``): the
    suggestions are flags, with dashes unless it used underscores; empty: key names.

    Close means: the same last part under another table (``lr`` -> ``train.lr``), else a
    key of the same table whose name :func:`difflib.get_close_matches` finds (``lrr`` ->
    ``lr``), else such a name under any table (``maxsteps`` -> ``train.max_steps``)."""
    names = _walk_keys(cls)
    parent, _, leaf = key.rpartition(".")
    if leaf in RENAMED and f"{parent}.{RENAMED[leaf][0]}".lstrip(".") in names:
        new, why = RENAMED[leaf]
        new = f"{parent}.{new}".lstrip(".")
        flag = f"--{new.replace('_', '-') if '_' not in style else new}" if style else repr(new)
        return f"{key!r} is now {flag}, {why}. "
    found = [k for k in names if k != key and k.rpartition(".")[2] == leaf]
    if not found:
        siblings = [k.rpartition(".")[2] for k in names if k.rpartition(".")[0] == parent]
        close = difflib.get_close_matches(leaf, siblings, n=1, cutoff=0.6)
        found = [f"{parent}.{c}" if parent else c for c in close]
    if not found:
        leaves: dict[str, list[str]] = {}
        for name in names:
            leaves.setdefault(name.rpartition(".")[2], []).append(name)
        close = difflib.get_close_matches(leaf, list(leaves), n=1, cutoff=0.75)
        found = [name for match in close for name in leaves[match]]
    if not found:
        return ""
    if style:
        dashes = "_" not in style
        found = [f"--{k.replace('_', '-') if dashes else k}" for k in found[:3]]
    else:
        found = [repr(k) for k in found[:3]]
    return f"did you mean {' or '.join(found)}? "


def _walk_keys(cls: type, prefix: str = "") -> list[str]:
    """Every dotted key of ``cls`` (tables too), without reading any source."""
    keys = []
    hints = typing.get_type_hints(cls)
    for spec in dataclasses.fields(cls):
        keys.append(f"{prefix}{spec.name}")
        inner = _config_class(hints[spec.name])
        if inner is not None:
            keys.extend(_walk_keys(inner, f"{prefix}{spec.name}."))
    return keys


@functools.cache
def field_docs(cls: type) -> dict[str, str]:
    """``{field: one-line description}`` of the dataclass ``cls`` (and its dataclass bases):
    ``metadata["help"]``, else the ``#:`` doc-comment; fields without either are left out."""
    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if dataclasses.is_dataclass(klass):
            docs.update(_docstring_docs(klass))
            docs.update(_source_docs(klass))
    for spec in dataclasses.fields(cls):
        if spec.metadata.get("help"):
            docs[spec.name] = str(spec.metadata["help"])
    return {name: _first_sentence(text) for name, text in docs.items()}


def _source_docs(cls: type) -> dict[str, str]:
    """The ``#:`` comments of the fields defined in ``cls``'s own body, from its source."""
    try:
        source = textwrap.dedent(inspect.getsource(cls))
        tree = ast.parse(source)
        tokens = list(tokenize.generate_tokens(io.StringIO(source).readline))
    except (OSError, TypeError, SyntaxError, tokenize.TokenError):
        return {}  # no source: a stripped install, or a class made at run time
    comments: dict[int, tuple[str, bool]] = {}  # line -> (comment, alone on its line)
    for token in tokens:
        if token.type == tokenize.COMMENT:
            alone = not token.line[: token.start[1]].strip()
            comments[token.start[0]] = (token.string, alone)
    classdef = next((n for n in tree.body if isinstance(n, ast.ClassDef)), None)
    docs = {}
    for node in classdef.body if classdef is not None else ():
        if not (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)):
            continue
        above, line = [], node.lineno - 1
        while line in comments and comments[line][1]:  # comment lines right above it
            above.insert(0, _comment_text(comments[line][0]))
            line -= 1
        trailing = comments.get(node.lineno, ("", True))
        text = " ".join(t for t in above if t)
        if not text and not trailing[1]:
            text = _comment_text(trailing[0])
        if text:
            docs[node.target.id] = text
    return docs


def _docstring_docs(cls: type) -> dict[str, str]:
    """The entries of ``cls``'s own docstring's ``Attributes:`` section: ``name: text`` (or
    ``a, b: text`` for several), continuation lines indented further."""
    lines = inspect.cleandoc(cls.__dict__.get("__doc__") or "").splitlines()
    starts = [i for i, line in enumerate(lines) if line.strip() == "Attributes:"]
    docs: dict[str, str] = {}
    if not starts:
        return docs
    names: list[str] = []
    indent = None
    for line in lines[starts[0] + 1 :]:
        if not line.strip():
            continue
        depth = len(line) - len(line.lstrip())
        indent = depth if indent is None else indent
        if depth < indent or (depth == indent and ":" not in line):
            break  # the section ended
        if depth == indent:
            head, text = line.strip().split(":", 1)
            names = [n.strip().split(" ")[0] for n in head.split(",")]
            for name in names:
                docs[name] = text.strip()
        else:
            for name in names:
                docs[name] = f"{docs[name]} {line.strip()}"
    return docs


def _comment_text(comment: str) -> str:
    """A comment as a description (``#:`` or ``#``); tool directives and rules (``# ---``)
    are none."""
    text = comment[2:] if comment.startswith("#:") else comment[1:]
    text = text.strip()
    return "" if _PRAGMAS.match(text) or not re.search(r"\w", text) else text


def _first_sentence(text: str) -> str:
    """The first sentence of ``text`` (a full stop before a capital, quote or bracket,
    not after ``e.g.`` and the like), on one line; reST's double backquotes made single."""
    text = " ".join(text.split()).replace("``", "`")
    for match in re.finditer(r"\.\s+(?=[A-Z\"'`(])", text):
        head = text[: match.start() + 1]
        if not head.endswith(_ABBREVIATIONS):
            return head
    return text


def _config_class(hint: Any) -> type | None:
    """The dataclass a field holds (``X`` or ``X | None``), else None."""
    options = [a for a in typing.get_args(hint) if a is not type(None)] or [hint]
    if len(options) == 1 and dataclasses.is_dataclass(options[0]):
        return options[0]
    return None


def _default(spec: dataclasses.Field) -> Any:
    """A field's default value (made by its factory); None when it has none."""
    if spec.default_factory is not dataclasses.MISSING:
        return spec.default_factory()
    return None if spec.default is dataclasses.MISSING else spec.default


def _type_text(hint: Any) -> str:
    """A type as users write it: ``int``, ``path``, ``"mel" | "mfcc"``, ``list[str]``."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return " | ".join(_type_text(a) for a in args if a is not type(None))
    if origin is typing.Literal:
        return " | ".join(json.dumps(a) for a in args)
    if origin in (list, tuple) and (origin is list or (len(args) == 2 and args[1] is Ellipsis)):
        return f"list[{_type_text(args[0]) if args else 'any'}]"
    if origin is tuple:
        return f"[{', '.join(_type_text(a) for a in args)}]"
    if origin is dict or hint is dict or dataclasses.is_dataclass(hint):
        return "table"
    if hint is Path:
        return "path"
    if hint is Any:
        return "any"
    return getattr(hint, "__name__", str(hint))


def _toml_literal(value: Any) -> str:
    """``value`` as TOML writes it: ``"runs/mead"``, ``1e-05``, ``true``, ``[32, 16]``."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, (list, tuple)):
        return f"[{', '.join(_toml_literal(v) for v in value)}]"
    if isinstance(value, dict):
        items = (f"{json.dumps(str(k))} = {_toml_literal(v)}" for k, v in value.items())
        return f"{{{', '.join(items)}}}"
    return json.dumps(str(value), ensure_ascii=False)
