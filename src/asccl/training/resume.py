"""What a run's weights depend on, saved in each checkpoint and compared on resume.

:func:`run_settings` flattens a trainer's config (every setting but the ones it may
change on resume) into ``{dotted key: JSON text}``; a resume whose settings differ is
refused by :func:`check_resume` in one line naming the keys, old -> new, and how to start
over. Harmless changes (workers, logging cadence, device, threads, more steps...) are each
config's ``RESUMABLE_CHANGES``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from asccl.config import ConfigError

#: a value for :func:`run_settings`' ``changes`` that removes the key
OMIT = object()
#: how a refused resume tells the user to start over
START_OVER = "use --resume false to train from scratch, or another --out"


def file_digest(path: str | os.PathLike) -> str:
    """The first 16 hex digits of a file's SHA-256; ``"missing"`` if it cannot be read."""
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    except OSError:
        return "missing"
    return digest.hexdigest()[:16]


def weights_digest(path: str | os.PathLike) -> str:
    """The first 16 hex digits of a SHA-256 over a safetensors file's header metadata and
    tensors (not its bytes: a file written again with the same weights keeps its digest);
    other files: :func:`file_digest`."""
    import torch
    from safetensors import safe_open

    digest = hashlib.sha256()
    try:
        with safe_open(str(path), framework="pt") as handle:
            digest.update(json.dumps(handle.metadata(), sort_keys=True).encode())
            for key in sorted(handle.keys()):
                tensor = handle.get_tensor(key)
                digest.update(f"{key} {tensor.dtype} {tuple(tensor.shape)}".encode())
                digest.update(tensor.contiguous().view(torch.uint8).numpy().tobytes())
    except Exception:  # not a safetensors file (e.g. the authors' .pth): its bytes
        return file_digest(path)
    return digest.hexdigest()[:16]


def data_settings(data: Path) -> dict[str, str]:
    """The data folder (resolved) and a digest of its ``pairs.csv``: the items a run
    shuffles."""
    return {"data": str(Path(data).resolve()), "data_pairs_csv": file_digest(data / "pairs.csv")}


def run_settings(config: Any, resumable: Iterable[str], **changes: Any) -> dict[str, str]:
    """``{dotted key: JSON text}`` of the dataclass ``config``: every field but
    ``resumable``, nested dataclasses as ``table.key``; ``changes`` replace or add keys
    (a value :data:`OMIT` removes one)."""
    values = dataclasses.asdict(config)
    for key in resumable:
        values.pop(key, None)
    for key, value in changes.items():
        if value is OMIT:
            values.pop(key, None)
        else:
            values[key] = dataclasses.asdict(value) if dataclasses.is_dataclass(value) else value
    flat: dict[str, str] = {}

    def add(prefix: str, value: Any) -> None:
        if isinstance(value, dict):
            for key, item in value.items():
                add(f"{prefix}{key}.", item)
        else:
            flat[prefix[:-1]] = json.dumps(value, default=str)

    add("", values)
    return flat


def settings_differences(saved: Mapping[str, str], now: Mapping[str, str]) -> list[str]:
    """``["key old -> new", ...]`` for every key whose value differs (``unset`` if absent)."""
    return [
        f"{key} {saved.get(key, 'unset')} -> {now.get(key, 'unset')}"
        for key in sorted(set(saved) | set(now))
        if saved.get(key) != now.get(key)
    ]


def check_resume(
    folder: Path, saved: Mapping[str, str], now: Mapping[str, str], step: int, total: int | None
) -> None:
    """Refuse (:class:`ConfigError`, one line) to resume from the checkpoint ``folder`` at
    ``step`` with settings ``saved`` if this run's are ``now`` or it stops at ``total``
    steps (``None``: not known yet)."""
    changed = settings_differences(saved, now)
    if changed:
        raise ConfigError(
            f"{folder}: cannot resume, this run's settings differ: {'; '.join(changed)}; "
            f"{START_OVER}"
        )
    if total is not None and step > total:
        raise ConfigError(
            f"{folder}: cannot resume, it is past this run's steps = {total}; {START_OVER}"
        )
