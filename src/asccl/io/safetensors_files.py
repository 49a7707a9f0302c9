"""safetensors files: the header checked before the library reads one (truncation,
malformed entries, ``__metadata__``), and a writer whose bytes depend only on its inputs
(the metadata first, its keys sorted)."""

from __future__ import annotations

import json
import os
import struct
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .atomic import write_bytes_atomic
from .errors import CheckpointError, first_line

if TYPE_CHECKING:
    from torch import Tensor

#: A safetensors header larger than this is refused as malformed (the library's own limit).
_MAX_HEADER = 100_000_000


def looks_like_safetensors(head: bytes) -> bool:
    """8-byte little-endian header length, then the header's opening brace."""
    if len(head) < 9 or head[8:9] != b"{":
        return False
    return struct.unpack("<Q", head[:8])[0] <= _MAX_HEADER


def safetensors_header(path: Path, size: int) -> tuple[dict[str, Any], dict[str, str]]:
    """``({name: {dtype, shape, data_offsets}}, metadata)`` of a safetensors file, checked
    for truncation and malformed entries before the library reads it."""
    try:
        with open(path, "rb") as handle:
            prefix = handle.read(8)
            if len(prefix) < 8:
                raise CheckpointError(path, f"not a readable safetensors file (only {size} bytes)")
            (length,) = struct.unpack("<Q", prefix)
            if length > _MAX_HEADER:
                raise CheckpointError(
                    path,
                    f"not a readable safetensors file (header length {length} is implausible)",
                )
            if length > size - 8:
                raise CheckpointError(
                    path,
                    f"truncated safetensors file: its header needs {length} bytes, "
                    f"only {size - 8} follow",
                )
            raw = handle.read(length)
    except OSError as exc:
        raise CheckpointError(path, f"cannot be read ({exc.strerror or exc})") from None
    try:
        header = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(
            path, f"not a readable safetensors file (its header is not JSON: {exc})"
        ) from None
    if not isinstance(header, dict):
        raise CheckpointError(
            path, "not a readable safetensors file (its header is not a JSON object)"
        )
    metadata = header.pop("__metadata__", None) or {}
    if not isinstance(metadata, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()
    ):
        raise CheckpointError(path, "malformed safetensors header (__metadata__ is not str -> str)")
    end = 0
    for name, entry in header.items():
        offsets = entry.get("data_offsets") if isinstance(entry, dict) else None
        if (
            not isinstance(offsets, list)
            or len(offsets) != 2
            or not all(isinstance(o, int) and o >= 0 for o in offsets)
            or offsets[0] > offsets[1]
        ):
            raise CheckpointError(path, f"malformed safetensors header: entry {name!r}")
        end = max(end, offsets[1])
    available = size - 8 - length
    if end > available:
        raise CheckpointError(
            path,
            f"truncated safetensors file: its tensors need {end} bytes of data, "
            f"only {available} are there",
        )
    return header, metadata


def read_safetensors(path: Path, size: int) -> dict[str, Tensor]:
    """``{name: tensor}`` of the safetensors file ``path`` (``size`` bytes), its header checked
    by :func:`safetensors_header` first."""
    from safetensors.torch import load_file

    safetensors_header(path, size)
    try:
        return load_file(str(path))
    except Exception as exc:  # SafetensorError and friends: the header was checked above
        raise CheckpointError(
            path, f"not a readable safetensors file ({first_line(exc)})"
        ) from None


def safetensors_bytes(tensors: Mapping[str, Tensor], metadata: Mapping[str, str]) -> bytes:
    """A safetensors file's bytes with ``__metadata__`` first and its keys sorted.

    safetensors' own writer emits the metadata in hash-map order, which changes from one
    process to the next; the tensors' entries and data are already in a fixed order.
    """
    from safetensors.torch import save

    raw = save(dict(tensors))
    (length,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + length])
    header.pop("__metadata__", None)
    ordered = {"__metadata__": {k: str(metadata[k]) for k in sorted(metadata)}} if metadata else {}
    text = json.dumps({**ordered, **header}, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)  # the data starts 8-byte aligned, as the library writes
    return struct.pack("<Q", len(text)) + text + raw[8 + length :]


def save_safetensors(
    tensors: Mapping[str, Tensor], path: str | os.PathLike, metadata: Mapping[str, str]
) -> Path:
    """Write ``tensors`` (contiguous CPU) and ``metadata`` to ``path`` atomically, byte for
    byte the same for the same inputs (see :func:`safetensors_bytes`)."""
    return write_bytes_atomic(path, safetensors_bytes(tensors, metadata))
