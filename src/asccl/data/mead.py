"""Index MEAD as distributed: ``<speaker>/video/<view>/<emotion>/level_<n>/NNN.mp4`` and
``<speaker>/audio/<emotion>/level_<n>/NNN.m4a`` (each speaker's ``video.tar`` and
``audio.tar`` extracted in place).

Unknown or malformed names are reported, never guessed: :func:`index_mead` returns the
clips it understood and one :class:`~asccl.data.errors.DataError` per thing it did not; a
root with no clip at all is one error saying what was expected at which level (a root one
level too high or too low is named as such). A
name whose bytes are not UTF-8 is one of those (reported with the bytes escaped, e.g.
``\\xff01.mp4``); a root path that is not UTF-8 is refused whole.
"""

from __future__ import annotations

import re
from pathlib import Path

from asccl.data.clip_index import require_utf8
from asccl.data.clips import MEAD_EMOTIONS, Clip
from asccl.data.errors import DataError

SPEAKER = re.compile(r"^[MW]\d{3}$")
LEVEL = re.compile(r"^level_(\d)$")
SENTENCE = re.compile(r"^(\d{3})\.(mp4|m4a)$")
MEAD_VIEWS = ("front", "down", "left_30", "left_60", "right_30", "right_60", "top")
#: the layout, as told to a user whose root holds no clip
MEAD_LAYOUT = "<root>/<speaker>/video/{view}/<emotion>/level_<n>/<NNN>.mp4 (audio: "
MEAD_LAYOUT += "<root>/<speaker>/audio/<emotion>/level_<n>/<NNN>.m4a)"


def index_mead(
    root: str | Path, *, view: str = "front", speakers: list[str] | None = None
) -> tuple[list[Clip], list[DataError]]:
    """List MEAD clips under ``root``, matching each video with its audio.

    Args:
        root: folder holding the speaker folders (``M003``, ``W015``, ...).
        view: camera view folder (``front``, as ASCCL uses).
        speakers: restrict to these speakers (default: every speaker folder).

    Returns:
        ``(clips, problems)``: clips sorted by id; a clip missing its video or its audio is
        kept (the other path is ``None``) and also reported.

    Raises:
        DataError: ``root`` is not a folder, or not valid UTF-8; an unknown view; no clip
            found (the message says what was expected where, with an example path).
    """
    root = Path(root)
    require_utf8(root, "MEAD root")
    if not root.is_dir():
        raise DataError(root, "MEAD root is not a folder")
    if view not in MEAD_VIEWS:
        raise DataError(root, f"unknown MEAD view {view!r}; valid: {', '.join(MEAD_VIEWS)}")
    problems: list[DataError] = []
    found: dict[tuple[str, str, int, str], dict[str, Path]] = {}
    for speaker_dir in sorted(p for p in root.iterdir() if p.is_dir()):
        speaker = speaker_dir.name
        if _not_utf8(speaker_dir, problems):
            continue
        if not SPEAKER.match(speaker):
            problems.append(DataError(speaker_dir, "not a MEAD speaker folder (like M003, W015)"))
            continue
        if speakers is not None and speaker not in speakers:
            continue
        media = {"video": speaker_dir / "video" / view, "audio": speaker_dir / "audio"}
        for kind, folder in media.items():
            if not folder.is_dir():
                problems.append(DataError(folder, f"missing {kind} folder (extract {kind}.tar)"))
                continue
            for emotion_dir in sorted(folder.iterdir()):
                _scan_emotion(speaker, kind, emotion_dir, found, problems)
    clips = []
    for (speaker, emotion, level, sentence), files in sorted(found.items()):
        clip = Clip(
            dataset="mead",
            speaker=speaker,
            emotion=emotion,
            intensity=level,
            sentence=sentence,
            clip_id=f"{speaker}/{emotion}/level_{level}/{sentence}",
            video=files.get("video"),
            audio=files.get("audio"),
        )
        for kind in ("video", "audio"):
            if kind not in files:
                other = files["audio" if kind == "video" else "video"]
                problems.append(DataError(other, f"no matching {kind} file for {clip.clip_id}"))
        clips.append(clip)
    if not clips:
        raise DataError(root, _no_clips(root, view, speakers, problems))
    return clips, problems


def _no_clips(root: Path, view: str, speakers: list[str] | None, problems: list) -> str:
    """Why ``root`` gave no clip, level by level, with the layout and an example path."""
    layout, top = MEAD_LAYOUT.format(view=view), root  # top: where the speakers should be
    found = _speaker_folders(root)
    if found and speakers is not None and not set(speakers) & {p.name for p in found}:
        names = ", ".join(p.name for p in found[:10]) + (", ..." if len(found) > 10 else "")
        why = f"none of the speakers asked for ({', '.join(speakers)}) is here (found: {names})"
    elif found:
        first = problems[0] if problems else f"no files under video/{view} or audio"
        why = f"speaker folders found, but no clip in them (first problem: {first})"
    elif (above := _speaker_ancestor(root)) is not None:
        where = "one speaker's folder" if above.name == root.name else f"inside {above.name}"
        why = (f"{root} is {where} (the root is too low): give the folder holding the "
               f"speaker folders, {above.parent}")  # fmt: skip
        top = above.parent
    elif (below := _nested_speaker_folders(root)) is not None:
        depth = len(below.relative_to(root).parts)
        levels = "one level" if depth == 1 else f"{depth} levels"
        why = f"the speaker folders are {levels} down, in {below}: give that as the root"
        top = below
    elif any(root.iterdir()):
        why = "no speaker folder (M003, W015, ...) at the top level"
    else:
        why = "the folder is empty"
    example = top / "M003" / "video" / view / "angry" / "level_1" / "001.mp4"
    return f"no MEAD clips: {why}; expected {layout}, e.g. {example}"


def _speaker_folders(folder: Path) -> list[Path]:
    """``folder``'s sub-folders named like MEAD speakers (``M003``), sorted."""
    try:
        return sorted(p for p in folder.iterdir() if SPEAKER.match(p.name) and p.is_dir())
    except OSError:
        return []


def _speaker_ancestor(root: Path) -> Path | None:
    """The speaker folder ``root`` is (or is inside, up to 5 levels: ``M003/video/front/
    angry/level_1``), recognised by its name and its ``video``/``audio`` folders."""
    for folder in [root, *list(root.resolve().parents)[:5]]:
        if SPEAKER.match(folder.name) and any(
            (folder / kind).is_dir() for kind in ("video", "audio")
        ):
            return folder
    return None


def _nested_speaker_folders(root: Path, depth: int = 2, budget: int = 2000) -> Path | None:
    """The first folder at most ``depth`` levels under ``root`` that holds speaker folders
    (a root one or two levels too high), looking at ``budget`` folders at most."""
    level = [root]
    for _ in range(depth):
        children = []
        for folder in level:
            try:
                children += sorted(p for p in folder.iterdir() if p.is_dir())
            except OSError:
                continue
            if len(children) > budget:
                return None
        for child in children:
            if _speaker_folders(child):
                return child
        level = children
    return None


def _scan_emotion(
    speaker: str,
    kind: str,
    emotion_dir: Path,
    found: dict[tuple[str, str, int, str], dict[str, Path]],
    problems: list[DataError],
) -> None:
    emotion = emotion_dir.name
    if _not_utf8(emotion_dir, problems):
        return
    if not emotion_dir.is_dir() or emotion not in MEAD_EMOTIONS:
        problems.append(
            DataError(emotion_dir, f"unknown MEAD emotion; valid: {', '.join(MEAD_EMOTIONS)}")
        )
        return
    for level_dir in sorted(emotion_dir.iterdir()):
        if _not_utf8(level_dir, problems):
            continue
        level = LEVEL.match(level_dir.name)
        if not level_dir.is_dir() or not level:
            problems.append(DataError(level_dir, "expected a level_<n> folder"))
            continue
        suffix = ".mp4" if kind == "video" else ".m4a"
        try:
            files = sorted(level_dir.iterdir())
        except OSError as exc:
            problems.append(DataError(level_dir, f"unreadable folder ({exc.strerror})"))
            continue
        for file in files:
            if _not_utf8(file, problems):
                continue
            name = SENTENCE.match(file.name)
            if not name or file.suffix != suffix:
                problems.append(DataError(file, f"expected NNN{suffix}"))
                continue
            key = (speaker, emotion, int(level.group(1)), name.group(1))
            found.setdefault(key, {})[kind] = file


def _not_utf8(path: Path, problems: list[DataError]) -> bool:
    """Whether ``path``'s name is not valid UTF-8; if so, it is added to ``problems``."""
    try:
        require_utf8(path, "name")
    except DataError as err:
        problems.append(err)
        return True
    return False
