"""The clip index file: one CSV row per clip (the contract between indexing and the rest)."""

from __future__ import annotations

import csv
import os
import tempfile
from dataclasses import fields, replace
from pathlib import Path

from asccl.data.clips import Clip
from asccl.data.errors import DataError

COLUMNS = [f.name for f in fields(Clip)]


def write_clip_index(clips: list[Clip], path: str | Path) -> Path:
    """Write ``clips`` as CSV (columns: the :class:`Clip` fields), atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    with os.fdopen(fd, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=COLUMNS)
        writer.writeheader()
        for clip in clips:
            row = {name: getattr(clip, name) for name in COLUMNS}
            writer.writerow({k: "" if v is None else v for k, v in row.items()})
    os.chmod(tmp, 0o644)  # mkstemp creates 0600
    os.replace(tmp, path)
    return path


def read_clip_index(path: str | Path) -> list[Clip]:
    """Read a clip index written by :func:`write_clip_index`."""
    path = Path(path)
    if not path.is_file():
        raise DataError(path, "no clip index here: run `asccl data index` first")
    with path.open(newline="") as handle:
        reader = csv.DictReader(handle)
        if reader.fieldnames != COLUMNS:
            raise DataError(path, f"not a clip index (columns {reader.fieldnames})")
        clips = []
        for line, row in enumerate(reader, start=2):
            try:
                clips.append(
                    Clip(
                        dataset=row["dataset"],
                        speaker=row["speaker"],
                        emotion=row["emotion"],
                        intensity=int(row["intensity"]),
                        sentence=row["sentence"],
                        clip_id=row["clip_id"],
                        video=Path(row["video"]) if row["video"] else None,
                        audio=Path(row["audio"]) if row["audio"] else None,
                        fps=float(row["fps"]) if row["fps"] else None,
                        num_frames=int(row["num_frames"]) if row["num_frames"] else None,
                    )
                )
            except (ValueError, KeyError) as exc:
                raise DataError(path, f"line {line}: {exc}") from exc
    return clips


def with_video_info(clip: Clip, fps: float, num_frames: int) -> Clip:
    """``clip`` with its probed frame rate and frame count."""
    return replace(clip, fps=fps, num_frames=num_frames)
