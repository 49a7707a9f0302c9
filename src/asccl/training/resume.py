"""What a run's weights depend on, saved in each checkpoint and compared on resume.

:func:`run_settings` flattens a trainer's config (every setting but the ones it may
change on resume) into ``{dotted key: JSON text}``; a resume whose settings differ is
refused by :func:`check_resume` in one line naming the keys, old -> new, and how to start
over. Harmless changes (workers, logging cadence, device, threads, more steps...) are each
config's ``RESUMABLE_CHANGES``. The data keys say what training reads: the pairs as parsed
(:func:`data_settings`) and, once the dataset has opened the stores, their crop size and
recorded settings (:func:`crop_settings`), and a digest of the videos the stores were cut
from (:func:`sources_digest`, from each store's recorded ``"sources"``), so a run is not
resumed on crops remade from changed videos; a checkpoint of an older asccl, which
recorded ``pairs.csv``'s bytes, is compared on those, and one without the sources key is
compared without it (:func:`comparable`).
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


#: the key of the pairs' digest (:func:`pairs_digest`)
PAIRS_KEY = "data_pairs"
#: what an older asccl recorded instead: a digest of ``pairs.csv``'s bytes
#: (:func:`file_digest`), and nothing of the crops
LEGACY_PAIRS_KEY = "data_pairs_csv"
#: the keys of the crop stores' settings (:func:`crop_settings`), known once the dataset
#: has opened the stores: a check made before (``TrainingRun``'s first) skips them
CROPS_PREFIX = "data_crops."
#: the key of the digest of the crop stores' input videos (:func:`sources_digest`); a
#: checkpoint of an older asccl has none and is compared without it
SOURCES_KEY = f"{CROPS_PREFIX}sources"
#: what each data key names in a refusal, by prefix
DATA_NAMES = {
    PAIRS_KEY: "the pairs in pairs.csv",
    f"{CROPS_PREFIX}size": "the crop size",
    f"{CROPS_PREFIX}settings": "the crop settings",
    SOURCES_KEY: "the videos the crops were cut from",
    "data": "the data folder",
}


def pairs_digest(path: str | os.PathLike) -> str:
    """The first 16 hex digits of a SHA-256 over the rows of a pairs table as parsed, in
    order: speaker, emotion, the two clip ids and frame lists (what training reads; not
    the bytes: line ends, a byte order mark, number spelling or the DTW cost and quality
    columns do not change it). ``"missing"`` if it cannot be read (the dataset says why)."""
    from asccl.data.errors import DataError
    from asccl.data.pair_files import read_pairs_table

    try:
        pairs = read_pairs_table(path)
    except DataError:
        return "missing"
    digest = hashlib.sha256()
    for p in pairs:
        row = [p.speaker, p.emotion, p.neutral_clip, p.emotional_clip,
               p.neutral_frames.tolist(), p.emotional_frames.tolist()]  # fmt: skip
        digest.update(json.dumps(row).encode() + b"\n")
    return digest.hexdigest()[:16]


def data_settings(data: Path) -> dict[str, str]:
    """The data folder (resolved) and :func:`pairs_digest` of its ``pairs.csv``: the items
    a run shuffles (the crop stores' settings come later: :func:`crop_settings`)."""
    return {"data": str(Path(data).resolve()), PAIRS_KEY: pairs_digest(data / "pairs.csv")}


def crop_settings(size: int, recorded: Iterable[Mapping[str, Any] | None]) -> dict[str, str]:
    """The run-settings keys of the crop stores a run reads: their crop ``size`` and the
    settings each store ``recorded`` (``None``: none recorded; ``crop_size`` is left out,
    ``size`` says it), one key per setting: its value, or the sorted distinct values when
    the stores differ (``"unrecorded"`` for a store without it)."""
    records = [dict(r) if r is not None else None for r in recorded]
    keys = sorted({k for r in records if r for k in r} - {"crop_size"})
    merged: dict[str, Any] = {}
    for key in keys:
        values = {json.dumps(r.get(key, "unrecorded") if r else "unrecorded") for r in records}
        distinct = [json.loads(v) for v in sorted(values)]
        merged[key] = distinct[0] if len(distinct) == 1 else distinct
    flat = {f"{CROPS_PREFIX}size": json.dumps(size)}
    if not merged:
        flat[f"{CROPS_PREFIX}settings"] = json.dumps("unrecorded")
    flat.update({f"{CROPS_PREFIX}settings.{k}": json.dumps(v) for k, v in merged.items()})
    return flat


def sources_digest(sources: Iterable[tuple[str, str]]) -> str:
    """The first 16 hex digits of a SHA-256 over the sorted, distinct ``(clip id, input
    sha256)`` of the crop stores a run reads (the input: the sha256 its record gives its
    video, ``"unrecorded"`` for a store of an older asccl): it changes when a store is
    remade from another video, not when a store is merely rewritten."""
    digest = hashlib.sha256()
    for clip, sha in sorted(set(sources)):
        digest.update(json.dumps([clip, sha]).encode() + b"\n")
    return digest.hexdigest()[:16]


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


def comparable(saved: Mapping[str, str], now: Mapping[str, str]) -> tuple[dict, dict]:
    """``(saved, now)`` as they can be compared: crop keys absent from ``now`` (not known
    yet) dropped from ``saved``; :data:`SOURCES_KEY` absent from ``saved`` (a checkpoint of
    an older asccl) dropped from ``now``; for a checkpoint of an older asccl
    (:data:`LEGACY_PAIRS_KEY`, no crop keys) ``now`` with the digest of ``pairs.csv``'s
    bytes instead of the new keys."""
    saved, now = dict(saved), dict(now)
    for key in [k for k in saved if k.startswith(CROPS_PREFIX) and k not in now]:
        del saved[key]
    if SOURCES_KEY not in saved:  # older: the stores' other keys still say what it read
        now.pop(SOURCES_KEY, None)
    if LEGACY_PAIRS_KEY in saved and LEGACY_PAIRS_KEY not in now:
        for key in [k for k in now if k == PAIRS_KEY or k.startswith(CROPS_PREFIX)]:
            del now[key]
        if "data" in now:
            digest = file_digest(Path(json.loads(now["data"])) / "pairs.csv")
            now[LEGACY_PAIRS_KEY] = json.dumps(digest)  # as run_settings wrote it
    return saved, now


def check_resume(
    folder: Path, saved: Mapping[str, str], now: Mapping[str, str], step: int, total: int | None
) -> None:
    """Refuse (:class:`ConfigError`, one line) to resume from the checkpoint ``folder`` at
    ``step`` with settings ``saved`` if this run's are ``now`` (see :func:`comparable`) or
    it stops at ``total`` steps (``None``: not known yet). Changed data is named in words."""
    saved, now = comparable(saved, now)
    changed = settings_differences(saved, now)
    if changed:
        data = [
            name
            for prefix, name in DATA_NAMES.items()
            if any(c.startswith(prefix) and c[len(prefix)] in " ." for c in changed)
        ]
        if any(c.startswith(f"{LEGACY_PAIRS_KEY} ") for c in changed):
            data.insert(0, "the bytes of pairs.csv (a checkpoint of an older asccl)")
        other = f" (other data: {', '.join(data)})" if data else ""
        raise ConfigError(
            f"{folder}: cannot resume, this run's settings differ: {'; '.join(changed)}"
            f"{other}; {START_OVER}"
        )
    if total is not None and step > total:
        raise ConfigError(
            f"{folder}: cannot resume, it is past this run's steps = {total}; {START_OVER}"
        )
