"""The study's videos on the server side: where each item's files are, made browser-playable.

Paths come from the study definition, relative to the results folder; one that is absolute,
has a ``..`` or otherwise leaves the folder is refused (links placed inside the folder are
followed: results folders may link their outputs). Clips a browser cannot play (PNG/JPG frame
folders, ``.avi``, ``.mkv``, ``.mov``) are encoded to H.264 MP4 once, into a media cache.
Nothing here reaches the client: the web app serves these files under opaque URLs.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from asccl.evaluation.results import scan_results
from asccl.study.definition import StudyDefinition

#: Browsers play these as they are; other clips are encoded to MP4 into the media cache.
PLAYABLE_SUFFIXES = (".mp4", ".webm")


def _inside(root: Path, relative: str, what: str) -> Path:
    """``root / relative`` when ``relative`` stays inside ``root`` (no absolute path, no
    ``..``); links placed inside the folder are followed (results folders may link)."""
    rel = Path(relative)
    if rel.is_absolute() or ".." in rel.parts or not relative:
        raise ValueError(f"{what}: {relative!r} is not a path inside {root}")
    path = Path(os.path.normpath(root / rel))
    if os.path.commonpath([path, root]) != str(root):
        raise ValueError(f"{what}: {relative!r} leaves {root}")
    return path


def playable(path: Path, cache: Path) -> Path:
    """``path`` itself when a browser plays it, else its H.264 MP4 in ``cache`` (made once:
    the cached file is named by a hash of the path, size and modification time)."""
    if path.is_file() and path.suffix.lower() in PLAYABLE_SUFFIXES:
        return path
    from asccl.data.video import probe_video, write_video
    from asccl.evaluation.results import read_frames

    stat = path.stat()
    tag = hashlib.sha256(f"{path}|{stat.st_size}|{stat.st_mtime_ns}".encode()).hexdigest()[:24]
    out = cache / f"{tag}.mp4"
    if out.is_file():
        return out
    fps = 25.0 if path.is_dir() else probe_video(path).fps
    frames = read_frames(path)
    h, w = frames.shape[1] // 2 * 2, frames.shape[2] // 2 * 2  # libx264 needs even sizes
    write_video(out, (f[:h, :w] for f in frames), fps=fps, preset="veryfast")  # atomic
    return out


@dataclass(frozen=True)
class ItemMedia:
    """Server-side only: the files of one item (the method names and paths never leave)."""

    by_method: dict[str, Path]
    source: Path | None
    reference: Path | None


def study_media(study: StudyDefinition, results_root: Path, cache: Path) -> dict[str, ItemMedia]:
    """``item id -> ItemMedia``, every file checked to exist inside ``results_root`` and made
    playable (see :func:`playable`); an item's source is the one
    :func:`~asccl.evaluation.results.scan_results` matches (``None`` when it has none or the
    name is ambiguous). Raises ``FileNotFoundError`` naming a missing file."""
    from tqdm import tqdm

    root = Path(os.path.abspath(results_root))
    # the sources as the results index takes them: a name two clips share (``c0.mp4`` beside
    # ``c0.mkv``) is ambiguous and has none, as in every other stage
    sources = scan_results(root).sources
    media = {}
    for item in tqdm(study.items, desc="study videos", unit="item", leave=False, disable=None):
        where = f"item {item.id!r}"
        paths = {m: _inside(root, v, where) for m, v in zip(item.methods, item.videos, strict=True)}
        reference = _inside(root, item.reference, where) if item.reference else None
        for path in [*paths.values(), *([reference] if reference else [])]:
            if not path.exists():
                raise FileNotFoundError(f"{path}: video of study {where} not found")
        source = sources.get(item.emotion, {}).get(item.clip)
        media[item.id] = ItemMedia(
            by_method={m: playable(p, cache) for m, p in paths.items()},
            source=playable(source, cache) if source else None,
            reference=playable(reference, cache) if reference else None,
        )
    return media
