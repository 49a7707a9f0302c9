"""The settings recorded with each item of stage 1, and whether an item must be redone.

A pair file records its settings in its ``"settings"`` entry, a crop store in the sibling
``<store>.settings.json``. :func:`settings_change` says how the current settings differ
from recorded ones; :func:`_pair_state` / :func:`_crop_state` say whether an item on disk
is done, missing or made with other settings; :func:`_note_redone` summarises the redos.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from asccl.data.clips import AlignedPair
from asccl.data.errors import DataError
from asccl.data.runs import StageSummary


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


def _note_redone(summary: StageSummary, changes: Counter[str], noun: str) -> None:
    """One note per kind of settings change: how many items it made the run redo."""
    for change, count in sorted(changes.items()):
        if change == "settings unknown":
            summary.notes.append(
                f"{count} {noun} made without recorded settings (an older asccl: settings "
                "unknown): redone"
            )
        else:
            summary.notes.append(f"{count} {noun} made with other settings ({change}): redone")


# ----------------------------------------------------------------------------- pairs


def load_pair_record(path: Path) -> AlignedPair:
    """Read one ``pairs/.../<key>.json``; :class:`DataError` if it is not valid."""
    return _read_pair(path)[0]


def _read_pair(path: Path) -> tuple[AlignedPair, dict[str, Any] | None]:
    """A pair file's pair and the settings it recorded (``None``: not recorded)."""
    try:
        record = json.loads(path.read_text())
        settings = record.pop("settings", None)
        return AlignedPair(**record), settings if isinstance(settings, dict) else None
    except (OSError, ValueError, TypeError, AttributeError) as exc:
        raise DataError(path, f"not a valid aligned pair ({exc})") from exc


def _pair_state(path: Path, settings: dict[str, Any]) -> str | None:
    """``None`` if ``path`` is a valid pair made with ``settings``; ``"missing"`` if it
    is absent or unreadable; else how its settings differ (:func:`settings_change`)."""
    if not path.is_file():
        return "missing"
    try:
        _, recorded = _read_pair(path)
    except DataError:
        return "missing"
    return settings_change(recorded, settings)


# ----------------------------------------------------------------------------- crops


def crop_settings_path(store: Path) -> Path:
    """The file beside a crop store that records the settings it was made with."""
    return store.with_name(f"{store.name}.settings.json")


def read_crop_settings(store: Path) -> dict[str, Any] | None:
    """The settings recorded beside ``store``; ``None`` if none (or unreadable) are."""
    try:
        recorded = json.loads(crop_settings_path(store).read_text())
    except (OSError, ValueError):
        return None
    return recorded if isinstance(recorded, dict) else None


def _crop_state(path: Path, settings: dict[str, Any], frames: int | None) -> str | None:
    """``None`` if ``path`` is a complete store made with ``settings``; ``"missing"`` if
    it is absent or broken; else how its settings differ (:func:`settings_change`)."""
    from asccl.data.crop_store import validate_clip_crops

    if not path.exists():
        return "missing"
    change = settings_change(read_crop_settings(path), settings)
    if change is not None:
        return change
    return None if validate_clip_crops(path, expected_frames=frames) else "missing"
