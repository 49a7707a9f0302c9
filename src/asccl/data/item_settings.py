"""The settings and input files recorded with each item of stage 1, and whether an item
must be redone.

A pair file records its settings in its ``"settings"`` entry, a crop store in the sibling
``<store>.settings.json``. :func:`settings_change` says how the current settings differ
from recorded ones; :func:`_pair_state` / :func:`_crop_state` say whether an item on disk
is done, missing, made with other settings or from changed input files;
:func:`_note_redone` summarises the redos.

Each item also records the input files it read, in a ``"sources"`` entry beside (never
inside) its settings: ``{role: {"path", "size", "mtime_ns", "sha256"}}``
(:func:`fingerprint`; a pair's roles ``neutral_audio``, ``neutral_video``,
``emotional_audio``, ``emotional_video``, a crop store's ``video``). A rerun compares
them with the files now (:func:`sources_change`): another size is a change; the same size
and mtime is no change, whatever the path (nothing hashed, so a rerun over thousands of
clips, or of a tree moved or copied with its mtimes, stays fast and rewrites nothing);
the same size with another mtime (a copy without ``-p``) is hashed, and an equal hash keeps the
item and rewrites its record with the new mtime (atomically), so the next rerun does not
hash again. An item of an older asccl that recorded no sources follows make's rule: redone
when an input file is newer than the item.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from asccl.data.clips import AlignedPair, ClipPair
from asccl.data.errors import DataError
from asccl.data.runs import StageSummary
from asccl.io import write_text_atomic

#: the redo reason of an item whose recorded input files changed
SOURCE_CHANGED = "input changed"
#: the redo reason of an item of an older asccl (no sources recorded) older than an input
SOURCE_NEWER = "input newer"


def settings_change(recorded: Mapping[str, Any] | None, current: Mapping[str, Any]) -> str | None:
    """How ``current`` settings differ from those an item ``recorded``: ``None`` if not at
    all, ``"settings unknown"`` when nothing was recorded, else ``"key: old -> new; ..."``."""
    if recorded is None:
        return "settings unknown"
    keys = [k for k in (*current, *(k for k in recorded if k not in current))
            if recorded.get(k, "?") != current.get(k, "?")]  # fmt: skip
    if not keys:
        return None
    return "; ".join(f"{k}: {recorded.get(k, '?')} -> {current.get(k, '?')}" for k in keys)


def _note_redone(
    summary: StageSummary,
    changes: Counter[str],
    noun: str,
    examples: Mapping[str, str] | None = None,
) -> None:
    """One note per kind of settings or input change: how many items it made the run
    redo; ``examples`` names one input file per source reason (:data:`SOURCE_CHANGED`,
    :data:`SOURCE_NEWER`)."""
    examples = examples or {}
    for change, count in sorted(changes.items()):
        example = f" (e.g. {examples[change]})" if change in examples else ""
        if change == SOURCE_CHANGED:
            summary.notes.append(
                f"{count} {noun} whose input files changed since they were made{example}: redone"
            )
        elif change == SOURCE_NEWER:
            summary.notes.append(
                f"{count} {noun} of an older asccl (input files not recorded) older than an "
                f"input file{example}: redone"
            )
        elif change == "settings unknown":
            summary.notes.append(
                f"{count} {noun} made without recorded settings (an older asccl: settings "
                "unknown): redone"
            )
        else:
            summary.notes.append(f"{count} {noun} made with other settings ({change}): redone")


# ----------------------------------------------------------------------------- sources

_HASHES: dict[tuple[str, int, int], str] = {}  # (path, size, mtime_ns) -> sha256, per process


def fingerprint(path: str | os.PathLike) -> dict[str, Any]:
    """``{"path", "size", "mtime_ns", "sha256"}`` of an input file: its path as given, its
    size and mtime (taken before it is read) and the first 16 hex digits of its SHA-256,
    read in 1 MiB blocks (cached per process by path, size and mtime: a neutral clip read
    by several pairs is hashed once). :class:`DataError` if it cannot be read."""
    try:
        stat = os.stat(path)
        key = (str(path), stat.st_size, stat.st_mtime_ns)
        if key not in _HASHES:
            digest = hashlib.sha256()
            with open(path, "rb") as handle:
                for block in iter(lambda: handle.read(1 << 20), b""):
                    digest.update(block)
            _HASHES[key] = digest.hexdigest()[:16]
    except OSError as exc:
        raise DataError(path, f"cannot be read ({exc.strerror or exc})") from exc
    return {"path": str(path), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns,
            "sha256": _HASHES[key]}  # fmt: skip


def fingerprints(inputs: Mapping[str, str | os.PathLike | None]) -> dict[str, dict[str, Any]]:
    """``{role: fingerprint(path)}`` of an item's input files (roles without a file left
    out): the ``"sources"`` entry an item records."""
    return {role: fingerprint(path) for role, path in inputs.items() if path is not None}


def sources_change(
    recorded: Mapping[str, Any] | None,
    inputs: Mapping[str, str | os.PathLike | None],
    made_ns: int,
) -> tuple[str | None, str | None, dict[str, Any] | None]:
    """Whether an item's input files changed since it ``recorded`` their fingerprints.

    Args:
        recorded: the item's ``"sources"`` (``None``: an older asccl recorded none).
        inputs: ``{role: path}`` of the files the item would be made from now.
        made_ns: the item's mtime (ns), for make's rule when nothing was recorded.

    Returns:
        ``(reason, example, refreshed)``: ``reason`` ``None`` (unchanged),
        :data:`SOURCE_CHANGED` or :data:`SOURCE_NEWER`; ``example`` the input file at
        fault; ``refreshed`` the sources to record instead when some files were copied
        (same size and hash, other mtime), else ``None``.
    """
    now = {role: path for role, path in inputs.items() if path is not None}
    if recorded is None:  # make's rule: redone when an input is newer than the item
        for path in now.values():
            try:
                newer = os.stat(path).st_mtime_ns > made_ns
            except OSError:
                newer = True  # gone: the redo names it
            if newer:
                return SOURCE_NEWER, str(path), None
        return None, None, None
    if set(recorded) != set(now):
        gained = sorted(set(now) - set(recorded)) or sorted(now)
        return SOURCE_CHANGED, str(now[gained[0]]) if gained else "(no input)", None
    refreshed: dict[str, Any] = {}
    for role, path in now.items():
        old = recorded[role]
        try:
            stat = os.stat(path)
        except OSError:
            return SOURCE_CHANGED, str(path), None
        if not isinstance(old, dict) or stat.st_size != old.get("size"):
            return SOURCE_CHANGED, str(path), None
        if stat.st_mtime_ns == old.get("mtime_ns"):
            refreshed[role] = old  # unchanged (even under another root, `cp -p`): not read
            continue
        try:
            current = fingerprint(path)  # same size, other mtime: its content decides
        except DataError:
            return SOURCE_CHANGED, str(path), None
        if current["sha256"] != old.get("sha256"):
            return SOURCE_CHANGED, str(path), None
        refreshed[role] = current
    return None, None, refreshed if refreshed != dict(recorded) else None


def _sources_state(
    recorded: Mapping[str, Any] | None,
    inputs: Mapping[str, str | os.PathLike | None],
    item: Path,
    examples: dict[str, str] | None,
) -> tuple[str | None, dict[str, Any] | None]:
    """:func:`sources_change` for the item at ``item``: ``(reason, refreshed)``, the
    reason's example file kept in ``examples`` (the first one per reason)."""
    try:
        made_ns = item.stat().st_mtime_ns
    except OSError:
        return "missing", None
    reason, example, refreshed = sources_change(recorded, inputs, made_ns)
    if reason is not None and examples is not None and example is not None:
        examples.setdefault(reason, example)
    return reason, refreshed


def _as_sources(value: Any) -> dict[str, Any] | None:
    """A recorded ``"sources"`` entry, ``None`` when absent or not a mapping."""
    return value if isinstance(value, dict) else None


# ----------------------------------------------------------------------------- pairs


def pair_inputs(pair: ClipPair) -> dict[str, Path | None]:
    """``{role: path}`` of the files a :class:`~asccl.data.clips.ClipPair`'s alignment
    reads: both clips' audio (the features) and video (the frame count)."""
    return {
        "neutral_audio": pair.neutral.audio,
        "neutral_video": pair.neutral.video,
        "emotional_audio": pair.emotional.audio,
        "emotional_video": pair.emotional.video,
    }


def load_pair_record(path: Path) -> AlignedPair:
    """Read one ``pairs/.../<key>.json``; :class:`DataError` if it is not valid."""
    return _read_pair(path)[0]


def _read_pair(path: Path) -> tuple[AlignedPair, dict[str, Any] | None]:
    """A pair file's pair and the settings it recorded (``None``: not recorded)."""
    pair, settings, _, _ = _parse_pair(path)
    return pair, settings


def _parse_pair(
    path: Path,
) -> tuple[AlignedPair, dict[str, Any] | None, dict[str, Any] | None, dict[str, Any]]:
    """A pair file's pair, recorded settings and sources (``None``: not recorded), and the
    whole record as read."""
    try:
        whole = json.loads(path.read_text())
        record = dict(whole)
        settings = record.pop("settings", None)
        sources = record.pop("sources", None)
        pair = AlignedPair(**record)
    except (OSError, ValueError, TypeError, AttributeError) as exc:
        raise DataError(path, f"not a valid aligned pair ({exc})") from exc
    return pair, settings if isinstance(settings, dict) else None, _as_sources(sources), whole


def _pair_state(
    path: Path,
    settings: dict[str, Any],
    inputs: Mapping[str, str | os.PathLike | None],
    examples: dict[str, str] | None = None,
) -> str | None:
    """``None`` if ``path`` is a valid pair made with ``settings`` from the ``inputs``
    (:func:`pair_inputs`) as they are now; ``"missing"`` if it is absent or unreadable;
    else how its settings differ (:func:`settings_change`) or :data:`SOURCE_CHANGED` /
    :data:`SOURCE_NEWER` (an example file in ``examples``). A pair whose inputs were
    only copied (same content) gets its record's sources rewritten, atomically."""
    if not path.is_file():
        return "missing"
    try:
        _, recorded, sources, whole = _parse_pair(path)
    except DataError:
        return "missing"
    change = settings_change(recorded, settings)
    if change is not None:
        return change
    reason, refreshed = _sources_state(sources, inputs, path, examples)
    if reason is None and refreshed is not None:
        write_text_atomic(path, json.dumps({**whole, "sources": refreshed}))
    return reason


# ----------------------------------------------------------------------------- crops


def crop_settings_path(store: Path) -> Path:
    """The file beside a crop store that records the settings it was made with (and, in
    its ``"sources"`` entry, the video it was cropped from)."""
    return store.with_name(f"{store.name}.settings.json")


def _read_crop_record(store: Path) -> dict[str, Any] | None:
    """The whole record beside ``store``; ``None`` if none (or unreadable) is."""
    try:
        recorded = json.loads(crop_settings_path(store).read_text())
    except (OSError, ValueError):
        return None
    return recorded if isinstance(recorded, dict) else None


def read_crop_settings(store: Path) -> dict[str, Any] | None:
    """The settings recorded beside ``store`` (not its ``"sources"``: those are not
    settings); ``None`` if none (or unreadable) are."""
    recorded = _read_crop_record(store)
    if recorded is None:
        return None
    return {k: v for k, v in recorded.items() if k != "sources"}


def read_crop_sources(store: Path) -> dict[str, Any] | None:
    """The input files recorded beside ``store`` (``{"video": {"path", "size",
    "mtime_ns", "sha256"}}``); ``None`` if none are (an older asccl)."""
    recorded = _read_crop_record(store)
    return None if recorded is None else _as_sources(recorded.get("sources"))


def read_crop_record(store: Path) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    """``(settings, sources)`` recorded beside ``store`` in one read
    (:func:`read_crop_settings`, :func:`read_crop_sources`)."""
    recorded = _read_crop_record(store)
    if recorded is None:
        return None, None
    settings = {k: v for k, v in recorded.items() if k != "sources"}
    return settings, _as_sources(recorded.get("sources"))


def _crop_state(
    path: Path,
    settings: dict[str, Any],
    frames: int | None,
    video: str | os.PathLike | None,
    examples: dict[str, str] | None = None,
) -> str | None:
    """``None`` if ``path`` is a complete store made with ``settings`` from ``video`` as
    it is now; ``"missing"`` if it is absent or broken; else how its settings differ
    (:func:`settings_change`) or :data:`SOURCE_CHANGED` / :data:`SOURCE_NEWER` (an
    example file in ``examples``). A store whose video was only copied (same content) gets
    its record's sources rewritten, atomically."""
    from asccl.data.crop_store import validate_clip_crops

    if not path.exists():
        return "missing"
    record = _read_crop_record(path)
    change = settings_change(read_crop_settings(path), settings)
    if change is not None:
        return change
    if not validate_clip_crops(path, expected_frames=frames):
        return "missing"
    sources = _as_sources(record.get("sources")) if record else None
    reason, refreshed = _sources_state(sources, {"video": video}, path, examples)
    if reason is None and refreshed is not None and record is not None:
        text = json.dumps({**record, "sources": refreshed}, sort_keys=True)
        write_text_atomic(crop_settings_path(path), text)
    return reason
