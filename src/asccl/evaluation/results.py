"""The results folder: what ``asccl evaluate`` reads, and :func:`scan_results` to index it.

Layout (any SPFEM repo can produce it by copying or linking its outputs)::

    <root>/
      sources/<emotion>/<clip>.mp4                      the input each result was made from
      references/<setting>/<emotion>/<clip>.mp4         optional: the driving reference video
      ground_truth/<setting>/<emotion>/<clip>.mp4       optional: the target the result should be
      ground_truth/<setting>/<emotion>/<clip>.landmarks.npy   optional: its (N, 68, 2) landmarks
      <method>/<setting>/<emotion>/<clip>.mp4           a result (or <clip>/ of PNG/JPG frames)

e.g. ``baseline/inter_id/happy/W901_001.mp4`` made from ``sources/happy/W901_001.mp4``.

- ``<method>``: any folder name other than ``sources``, ``references`` and ``ground_truth``
  (``baseline``, ``asccl``, ``dsm``, ``dsm_asccl``...).
- ``ground_truth/``: mirrors a method folder (``<setting>/<emotion>/<clip>``, the same clip
  names): the clip each result should equal, e.g. the source's sentence actually spoken in
  the target emotion (MEAD's emotional take, synthetic ground truth). Needed only for
  ``real_set = "ground_truth"`` (FID/FAD against the targets); its absence then is a
  one-line error naming the folder and an example path.
- ``<setting>``: ``inter_id`` (reference of the same identity), ``cross_id`` (reference of
  another identity) or ``single`` (models without a reference input, e.g. GANmut).
- ``<emotion>``: one of the paper's seven, :data:`~asccl.data.clips.PAPER_EMOTIONS` (the
  *target* emotion of the result; its source is usually a neutral clip, filed under the
  same emotion and clip name).
- ``<clip>``: a video file (``.mp4``, ``.avi``, ``.mov``, ``.mkv``, ``.webm``) or a folder
  of ``.png``/``.jpg`` frames (in natural order: the numbers in a name compare as numbers,
  ``2.png`` before ``10.png``; see :func:`frame_files`). A result and its source share the
  clip name (``W901_001``); frames are compared by index, so a result must be frame-aligned
  with its source (same length and frame rate; a shorter or longer one is compared over
  the frames both have, and the report says so; another frame rate is not scored).
- One name, one clip: two clips of the same name in one folder (``A_001.mp4`` beside a
  stale ``A_001.mkv`` or a frame folder ``A_001/``) are a layout problem naming both, and
  neither is used; a result whose source (or ground truth) is such a name has none.

Frames are expected to be face crops, aligned the way ArcFace expects (insightface's 112x112
alignment, or a tight square crop around it): the evaluation only centre-crops to a square
and resizes (112 for ArcFace, 224 for SyncNet, 299 for Inception).

:func:`scan_results` lists methods, settings, emotions and clips, and reports (never
raises on) layout problems: unknown emotion or setting folder names, empty levels, files
that are neither videos nor frame folders, a method/setting missing emotions the other
methods have, results without a matching source, clip names used twice in one folder.
"""

from __future__ import annotations

import itertools
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from asccl.data.clips import PAPER_EMOTIONS
from asccl.data.errors import DataError
from asccl.io import atomic_write

#: Settings: reference of the same identity, of another identity, or no reference at all.
SETTINGS = ("inter_id", "cross_id", "single")
VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
SOURCES = "sources"
REFERENCES = "references"
GROUND_TRUTH = "ground_truth"
#: a clip's landmarks beside it (``<clip>.landmarks.npy``, ``(N, 68, 2)`` pixels): read by
#: the ground-truth metrics for ground-truth clips, never listed as a clip
LANDMARKS_SUFFIX = ".landmarks.npy"
#: top-level folders that are not methods
NOT_METHODS = (SOURCES, REFERENCES, GROUND_TRUTH)


@dataclass(frozen=True)
class ResultClip:
    """One result with the files it is compared against (``None`` where absent)."""

    method: str
    setting: str
    emotion: str
    name: str
    path: Path
    source: Path | None
    reference: Path | None = None


@dataclass
class ResultsIndex:
    """Everything :func:`scan_results` found, and the problems it saw (one line each)."""

    root: Path
    clips: list[ResultClip] = field(default_factory=list)
    sources: dict[str, dict[str, Path]] = field(default_factory=dict)  # emotion -> name -> path
    problems: list[str] = field(default_factory=list)
    #: ``references/`` and ``ground_truth/``: setting -> emotion -> name -> path
    references: dict[str, dict[str, dict[str, Path]]] = field(default_factory=dict)
    ground_truth: dict[str, dict[str, dict[str, Path]]] | None = None  # None: no folder
    #: emotion -> clip names of ``sources/<emotion>/`` used by two or more clips (no source)
    ambiguous_sources: dict[str, set[str]] = field(default_factory=dict)

    def real_clips(self, real_set: str, setting: str, emotion: str) -> dict[str, Path]:
        """``{name: path}`` of the real set FID/FAD compare ``setting``/``emotion``'s
        results with: every source of the emotion, or the setting's references or ground
        truth of the emotion (see ``EvalConfig.real_set``)."""
        if real_set == "sources":
            return dict(self.sources.get(emotion, {}))
        tree = self.references if real_set == "references" else (self.ground_truth or {})
        return dict(tree.get(setting, {}).get(emotion, {}))

    @property
    def methods(self) -> list[str]:
        return sorted({c.method for c in self.clips})

    @property
    def settings(self) -> list[str]:
        return [s for s in SETTINGS if any(c.setting == s for c in self.clips)]

    @property
    def emotions(self) -> list[str]:
        return [e for e in PAPER_EMOTIONS if any(c.emotion == e for c in self.clips)]

    def select(
        self, method: str | None = None, setting: str | None = None, emotion: str | None = None
    ) -> list[ResultClip]:
        """Clips matching every given field, in (method, setting, emotion, name) order."""
        return [
            c
            for c in self.clips
            if (method is None or c.method == method)
            and (setting is None or c.setting == setting)
            and (emotion is None or c.emotion == emotion)
        ]


def scan_results(root: str | os.PathLike) -> ResultsIndex:
    """Index a results folder (see the module docstring for the layout).

    Raises:
        DataError: ``root`` is not a folder, or holds no method folder at all.
    """
    root = Path(root)
    if not root.is_dir():
        raise DataError(root, "results folder not found")
    index = ResultsIndex(root=root)
    sources = root / SOURCES
    if not sources.is_dir():
        index.problems.append(f"{sources}: no sources folder; CSIM, FID/FAD need it")
    else:
        for emotion_dir in _subdirs(sources):
            if emotion_dir.name not in PAPER_EMOTIONS:
                index.problems.append(_unknown_emotion(emotion_dir))
                continue
            index.sources[emotion_dir.name] = dict(_clips_in(emotion_dir, index.problems))
            index.ambiguous_sources[emotion_dir.name] = _names_used_twice(emotion_dir)
    for name in (REFERENCES, GROUND_TRUTH):
        tree = _scan_mirror(root / name, index.problems)
        if name == REFERENCES:
            index.references = tree
        elif (root / name).is_dir():
            index.ground_truth = tree
    methods = [d for d in _subdirs(root) if d.name not in NOT_METHODS]
    if not methods:
        example = root / "baseline" / "inter_id" / "happy" / "W901_001.mp4"
        raise DataError(root, "no method folders (expected <method>/<setting>/<emotion>/<clip>, "
                        f"e.g. {example})")  # fmt: skip
    for method_dir in methods:
        settings = _subdirs(method_dir)
        if not settings:
            index.problems.append(f"{method_dir}: method folder holds no setting folder")
        for setting_dir in settings:
            if setting_dir.name not in SETTINGS:
                hint = ""
                if setting_dir.name in PAPER_EMOTIONS:  # <method>/<emotion>/<clip>
                    example = method_dir / "inter_id" / setting_dir.name / "<clip>.mp4"
                    hint = (f"; the setting level is missing: expected <method>/<setting>/"
                            f"<emotion>/<clip>, e.g. {example}")  # fmt: skip
                index.problems.append(f"{setting_dir}: unknown setting {setting_dir.name!r}; "
                                      f"valid: {list(SETTINGS)}{hint}")  # fmt: skip
                continue
            _scan_setting(index, method_dir.name, setting_dir)
    _report_missing_emotions(index)
    return index


def _scan_setting(index: ResultsIndex, method: str, setting_dir: Path) -> None:
    emotion_dirs = _subdirs(setting_dir)
    if not emotion_dirs:
        hint = ""
        clips = list(_clips_in(setting_dir))
        if clips:  # <method>/<setting>/<clip>
            example = setting_dir / "happy" / clips[0][1].name
            hint = (f" but {len(clips)} clip(s): the emotion level is missing: expected "
                    f"<method>/<setting>/<emotion>/<clip>, e.g. {example}")  # fmt: skip
        index.problems.append(f"{setting_dir}: setting folder holds no emotion folder{hint}")
    for emotion_dir in emotion_dirs:
        emotion = emotion_dir.name
        if emotion not in PAPER_EMOTIONS:
            index.problems.append(_unknown_emotion(emotion_dir))
            continue
        clips = list(_clips_in(emotion_dir, index.problems))
        if not clips:
            index.problems.append(f"{emotion_dir}: no clips")
        for name, path in clips:
            source = index.sources.get(emotion, {}).get(name)
            if source is None and name in index.ambiguous_sources.get(emotion, ()):
                index.problems.append(
                    f"{path}: its source {SOURCES}/{emotion}/{name} is ambiguous (two or more "
                    "clips of that name, listed above): CSIM and LSE fallback audio skip it"
                )
            elif source is None:
                index.problems.append(
                    f"{path}: no matching source {SOURCES}/{emotion}/{name} (video or frame "
                    "folder); CSIM and LSE fallback audio skip it"
                )
            reference = index.references.get(setting_dir.name, {}).get(emotion, {}).get(name)
            index.clips.append(
                ResultClip(method, setting_dir.name, emotion, name, path, source, reference)
            )


def _scan_mirror(folder: Path, problems: list[str]) -> dict[str, dict[str, dict[str, Path]]]:
    """``references/`` or ``ground_truth/``: ``{setting: {emotion: {name: path}}}``; folder
    names that are no setting or emotion are reported."""
    tree: dict[str, dict[str, dict[str, Path]]] = {}
    for setting_dir in _subdirs(folder):
        if setting_dir.name not in SETTINGS:
            layout = f"{folder.name}/<setting>/<emotion>/<clip>"
            problems.append(f"{setting_dir}: unknown setting {setting_dir.name!r}; valid: "
                            f"{list(SETTINGS)} ({layout})")  # fmt: skip
            continue
        for emotion_dir in _subdirs(setting_dir):
            if emotion_dir.name not in PAPER_EMOTIONS:
                problems.append(_unknown_emotion(emotion_dir))
                continue
            clips = dict(_clips_in(emotion_dir, problems))
            tree.setdefault(setting_dir.name, {})[emotion_dir.name] = clips
    return tree


def _report_missing_emotions(index: ResultsIndex) -> None:
    for setting in index.settings:
        wanted = {c.emotion for c in index.select(setting=setting)}
        for method in index.methods:
            have = {c.emotion for c in index.select(method=method, setting=setting)}
            if not have:
                continue
            missing = [e for e in PAPER_EMOTIONS if e in wanted - have]
            if missing:
                index.problems.append(
                    f"{index.root / method / setting}: missing emotion(s) {missing} that "
                    "other methods have; its Average row is over fewer emotions"
                )
            absent = [e for e in PAPER_EMOTIONS if e not in wanted]
            if absent and method == index.methods[0]:
                index.problems.append(
                    f"{setting}: no method has emotion(s) {absent}; averages are over "
                    f"{len(PAPER_EMOTIONS) - len(absent)} of the paper's {len(PAPER_EMOTIONS)}"
                )


def _unknown_emotion(path: Path) -> str:
    return f"{path}: unknown emotion folder {path.name!r}; valid: {list(PAPER_EMOTIONS)}"


def _subdirs(folder: Path) -> list[Path]:
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def _clip_name(path: Path) -> str | None:
    """The clip name of a video or frame folder under a clip folder, else ``None``."""
    if path.name.startswith(".") or path.name.endswith(LANDMARKS_SUFFIX):
        return None  # hidden, or a clip's landmarks (ground truth: <clip>.landmarks.npy)
    if path.is_file() and path.suffix.lower() in VIDEO_SUFFIXES:
        return path.stem
    return path.name if path.is_dir() else None


def _names_used_twice(folder: Path) -> set[str]:
    """Clip names of two or more clips directly under ``folder``."""
    names = [_clip_name(p) for p in folder.iterdir()] if folder.is_dir() else []
    return {n for n in names if n is not None and names.count(n) > 1}


def _clips_in(folder: Path, problems: list[str] | None = None) -> Iterator[tuple[str, Path]]:
    """``(clip name, path)`` of the videos and frame folders directly under ``folder``;
    any other file is skipped and, given ``problems``, reported there. A name used by two
    or more clips (``A_001.mp4`` and ``A_001.mkv``, or ``A_001/``) is ambiguous: none of
    them is yielded, and ``problems`` gets one line naming them all."""
    if not folder.is_dir():
        return
    by_name: dict[str, list[Path]] = {}
    for path in sorted(folder.iterdir()):
        name = _clip_name(path)
        if name is not None:
            by_name.setdefault(name, []).append(path)
        elif problems is not None and not (
            path.name.startswith(".") or path.name.endswith(LANDMARKS_SUFFIX)
        ):
            problems.append(
                f"{path}: not a video ({', '.join(VIDEO_SUFFIXES)}) nor a frame folder; ignored"
            )
    for name, paths in by_name.items():
        if len(paths) == 1:
            yield name, paths[0]
        elif problems is not None:
            problems.append(
                f"{folder / name}: {len(paths)} clips of the same name "
                f"({', '.join(p.name for p in paths)}): which one is meant is ambiguous, "
                "neither is used (remove or rename the others)"
            )


_NUMBERS = re.compile(r"(\d+)")


def frame_order_key(name: str) -> tuple:
    """Natural-order key of a frame file name: its digit runs compare as numbers, the text
    between them as text (``frame_2.png`` < ``frame_10.png``; ``7.png`` = ``007.png``)."""
    parts = _NUMBERS.split(Path(name).stem)
    return tuple(int(p) if i % 2 else p for i, p in enumerate(parts))


def frame_files(folder: str | os.PathLike) -> list[Path]:
    """The ``.png``/``.jpg`` frames of a frame folder, in frame order.

    The order is natural: names are compared by :func:`frame_order_key`, so numbered
    frames come in numeric order whether zero-padded (``00000.png``) or not (``0.png``,
    ``1.png``, ..., ``10.png``; a plain text sort would read ``0, 1, 10, 11, 2``). Names
    without digits sort as text. Two files with the same key (``1.png`` beside
    ``01.png``, or ``5.png`` beside ``5.jpg``) leave the order undefined: refused.

    Raises:
        DataError: two frames of the same frame number, naming both.
    """
    folder = Path(folder)
    files = [p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES]
    files.sort(key=lambda p: (frame_order_key(p.name), p.name))
    for a, b in itertools.pairwise(files):
        if frame_order_key(a.name) == frame_order_key(b.name):
            raise DataError(b, f"same frame number as {a.name}: the frame order is undefined "
                            "(number frames once, e.g. 00000.png, 00001.png...)")  # fmt: skip
    return files


def _to_rgb8(image) -> np.ndarray:
    """``(H, W, 3)`` uint8 RGB of a PIL image; 16-bit grey (modes ``I;16*``, ``I``) keeps
    its high byte (``v >> 8``: 65535 -> 255, 256 levels per 8-bit step, as PIL does
    itself for 16-bit RGB PNGs), where ``convert("RGB")`` would clip it to white."""
    if image.mode == "I" or image.mode.startswith("I;16"):
        values = np.asarray(image).astype(np.int64)
        if values.size and (values.min() < 0 or values.max() > 65535):
            raise DataError(
                getattr(image, "filename", "") or "frame",
                f"mode {image.mode} values {values.min()}..{values.max()} are not 16-bit",
            )
        grey = (values >> 8).astype(np.uint8)
        return np.repeat(grey[..., None], 3, axis=2)
    return np.asarray(image.convert("RGB"))


def read_frames(path: str | os.PathLike, max_frames: int = 0) -> np.ndarray:
    """``(N, H, W, 3)`` uint8 RGB frames of a clip (video or frame folder, its frames in
    :func:`frame_files` order; 16-bit grey frames scaled by ``v >> 8``), the first
    ``max_frames`` of them when ``max_frames > 0``.

    Raises:
        DataError: unreadable or empty clip, or frames of undefined order (the message
            names the file).
    """
    from asccl.data.video import iter_frames

    path = Path(path)
    frames: list[np.ndarray] = []
    if path.is_dir():
        from PIL import Image, UnidentifiedImageError

        for file in frame_files(path)[: max_frames or None]:
            try:
                with Image.open(file) as image:
                    frames.append(_to_rgb8(image))
            except (OSError, UnidentifiedImageError) as err:
                raise DataError(file, f"unreadable frame ({err})") from None
    else:
        stream = iter_frames(path)
        try:
            for frame in stream:
                frames.append(frame)
                if max_frames and len(frames) >= max_frames:
                    break
        finally:
            stream.close()
    if not frames:
        raise DataError(path, "no frames")
    if len({f.shape for f in frames}) != 1:
        raise DataError(path, "frames of different sizes")
    return np.stack(frames)


def make_demo_results(
    mead_root: str | os.PathLike,
    out: str | os.PathLike,
    *,
    speaker: str = "W901",
    emotions: tuple[str, ...] = ("angry", "happy", "sad"),
    sentences: tuple[str, ...] = ("001", "002", "003"),
    frame_folder_frames: int = 0,
) -> Path:
    """A small results folder from a MEAD-layout tree (e.g. the bundled ``demo_data/MEAD``).

    Stand-ins, not model outputs: ``baseline/inter_id/<emotion>/<spk>_<NNN>.mp4`` is the
    level-3 emotional clip (copied), ``asccl/...`` the same clip as a PNG frame folder (its
    first ``frame_folder_frames`` frames, 0 = all; no audio, so LSE uses the source's),
    ``sources/<emotion>/`` the neutral level-1 clip of the same sentence, and
    ``references/inter_id/<emotion>/`` the emotional clip again. Existing files are kept.
    """
    import shutil

    from PIL import Image

    front = Path(mead_root) / speaker / "video" / "front"
    out = Path(out)
    for emotion in emotions:
        for sentence in sentences:
            clip = front / emotion / "level_3" / f"{sentence}.mp4"
            neutral = front / "neutral" / "level_1" / f"{sentence}.mp4"
            if not clip.is_file() or not neutral.is_file():
                raise DataError(clip, f"demo clip or its neutral source {neutral} not found")
            name = f"{speaker}_{sentence}.mp4"
            targets = {
                out / "baseline" / "inter_id" / emotion / name: clip,
                out / "sources" / emotion / name: neutral,
                out / REFERENCES / "inter_id" / emotion / name: clip,
            }
            for target, origin in targets.items():
                if not target.exists():
                    with atomic_write(target) as tmp:
                        shutil.copyfile(origin, tmp)
            frames_dir = out / "asccl" / "inter_id" / emotion / Path(name).stem
            if not frames_dir.is_dir():
                with atomic_write(frames_dir, folder=True) as tmp:
                    for i, frame in enumerate(read_frames(clip, frame_folder_frames)):
                        Image.fromarray(frame).save(tmp / f"{i:05d}.png")
    return out
