"""Files of aligned frame pairs: the authors' nested JSON, and asccl's flat CSV table.

Authors' JSON (their released ``aligned_path.json``)::

    {"M035": {"angry": {"001_001": [[0, 1, 2, ...], [0, 1, 1, ...]]},
              "disgusted": {"001_028": [[...], [...]]}}}

speaker -> emotion -> ``"<neutral sentence>_<emotional sentence>"`` -> [neutral frame
indices, emotional frame indices]. Disgusted keys follow each speaker's numbering on disk
(``001_028`` or ``001_001``: :func:`asccl.data.pairing.resolve_numbering`); ``asccl data
pairs --preset authors`` forms the authors' list of clip pairs. asccl's CSV keeps one row
per clip pair with the DTW cost, the alignment diagnostics (``q_*`` columns) and the frames
as space-separated integers.
Both writers replace the file atomically; both readers validate and raise
:class:`~asccl.data.errors.DataError` naming the file and the offending entry.
"""

from __future__ import annotations

import csv
import io
import json
import os
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from asccl.data.clips import AlignedPair
from asccl.data.errors import DataError
from asccl.io import write_text_atomic

#: Leading and trailing columns of the pairs table; ``q_<name>`` quality columns go between.
TABLE_HEAD: tuple[str, ...] = (
    "speaker", "emotion", "neutral_clip", "emotional_clip", "num_pairs", "dtw_cost",
)  # fmt: skip
TABLE_TAIL: tuple[str, ...] = ("neutral_frames", "emotional_frames")
QUALITY_PREFIX = "q_"


def write_authors_json(pairs: Iterable[AlignedPair], path: str | os.PathLike) -> Path:
    """Write ``pairs`` in the authors' nested layout (costs and diagnostics are dropped).

    The key is built from the last path component of each clip id, so
    ``"M003/neutral/level_1/001"`` and ``"M003/angry/level_3/001"`` give ``"001_001"``.
    Returns ``path``.
    """
    tree: dict[str, dict[str, dict[str, list[list[int]]]]] = {}
    for pair in pairs:
        key = f"{_sentence(pair.neutral_clip)}_{_sentence(pair.emotional_clip)}"
        by_key = tree.setdefault(pair.speaker, {}).setdefault(pair.emotion, {})
        if key in by_key:
            raise ValueError(f"two pairs map to {pair.speaker}/{pair.emotion}/{key}")
        by_key[key] = [pair.neutral_frames.tolist(), pair.emotional_frames.tolist()]
    return write_text_atomic(path, json.dumps(tree))


def read_authors_json(path: str | os.PathLike) -> list[AlignedPair]:
    """Read the authors' nested JSON; ``neutral_clip``/``emotional_clip`` are sentence ids."""
    path = Path(path)
    text = _read_text(path)
    try:
        tree = json.loads(text)
    except json.JSONDecodeError as err:
        raise DataError(path, f"not valid JSON ({err})") from None
    if not isinstance(tree, dict):
        raise DataError(path, f"expected an object speaker -> emotion -> pairs, got {_kind(tree)}")
    pairs = []
    for speaker, emotions in tree.items():
        if not isinstance(emotions, dict):
            problem = f"expected an object emotion -> pairs, got {_kind(emotions)}"
            raise DataError(path, f"{speaker}: {problem}")
        for emotion, by_key in emotions.items():
            where = f"{speaker}/{emotion}"
            if not isinstance(by_key, dict):
                problem = f"expected an object key -> frame lists, got {_kind(by_key)}"
                raise DataError(path, f"{where}: {problem}")
            for key, lists in by_key.items():
                sentences = key.split("_")
                if len(sentences) != 2 or not all(sentences):
                    raise DataError(path, f"{where}/{key}: key is not '<neutral>_<emotional>'")
                if not (isinstance(lists, list) and len(lists) == 2):
                    problem = "expected [[neutral frames], [emotional frames]]"
                    raise DataError(path, f"{where}/{key}: {problem}")
                problem = _frames_problem(lists[0], lists[1])
                if problem:
                    raise DataError(path, f"{where}/{key}: {problem}")
                pairs.append(AlignedPair(speaker, emotion, *sentences, *map(np.array, lists)))
    return pairs


def write_pairs_table(pairs: Iterable[AlignedPair], path: str | os.PathLike) -> Path:
    """Write one CSV row per pair; quality keys (union, first-seen order) become ``q_*``.

    Returns ``path``. NaN costs are written as ``nan``; floats round-trip exactly."""
    pairs = list(pairs)
    quality_keys = list(dict.fromkeys(k for p in pairs for k in p.quality))
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow([*TABLE_HEAD, *(QUALITY_PREFIX + k for k in quality_keys), *TABLE_TAIL])
    for p in pairs:
        quality = [repr(float(p.quality[k])) if k in p.quality else "" for k in quality_keys]
        writer.writerow(
            [
                p.speaker,
                p.emotion,
                p.neutral_clip,
                p.emotional_clip,
                len(p),
                repr(float(p.dtw_cost)),
                *quality,
                " ".join(map(str, p.neutral_frames.tolist())),
                " ".join(map(str, p.emotional_frames.tolist())),
            ]
        )
    return write_text_atomic(path, buffer.getvalue())


def read_pairs_table(path: str | os.PathLike) -> list[AlignedPair]:
    """Read a table written by :func:`write_pairs_table` (empty ``q_*`` cells are absent keys).

    A clip pair on two lines (a row copied by hand) is refused: training would use its
    frame pairs twice. A leading byte order mark (Excel's UTF-8 CSV) is dropped."""
    path = Path(path)
    reader = csv.DictReader(io.StringIO(_read_text(path), newline=""))
    columns = reader.fieldnames or []
    missing = [c for c in (*TABLE_HEAD, *TABLE_TAIL) if c not in columns]
    if missing:
        raise DataError(path, f"not a pairs table: missing column(s) {', '.join(missing)}")
    quality_columns = [c for c in columns if c.startswith(QUALITY_PREFIX)]
    pairs = []
    first_line: dict[tuple[str, str], int] = {}  # (neutral, emotional) clip -> its line
    for row in reader:
        where = f"line {reader.line_num}"
        if None in row or any(v is None for v in row.values()):
            raise DataError(path, f"{where}: expected {len(columns)} fields")
        try:
            neutral = [int(v) for v in row["neutral_frames"].split()]
            emotional = [int(v) for v in row["emotional_frames"].split()]
            num_pairs = int(row["num_pairs"])
            dtw_cost = float(row["dtw_cost"])
            quality = {c[len(QUALITY_PREFIX) :]: float(row[c]) for c in quality_columns if row[c]}
        except ValueError as err:
            raise DataError(path, f"{where}: {err}") from None
        problem = _frames_problem(neutral, emotional)
        if not problem and num_pairs != len(neutral):
            problem = f"num_pairs is {num_pairs} but the frame lists hold {len(neutral)}"
        if problem:
            raise DataError(path, f"{where}: {problem}")
        clips = (row["neutral_clip"], row["emotional_clip"])
        if clips in first_line:  # a hand edit: training would use its frames twice
            raise DataError(
                path, f"lines {first_line[clips]} and {reader.line_num} both pair {clips[0]} "
                f"with {clips[1]}: keep one"
            )  # fmt: skip
        first_line[clips] = reader.line_num
        pair = AlignedPair(
            row["speaker"],
            row["emotion"],
            row["neutral_clip"],
            row["emotional_clip"],
            np.array(neutral),
            np.array(emotional),
            dtw_cost,
            quality,
        )
        pairs.append(pair)
    return pairs


def _frames_problem(neutral: object, emotional: object) -> str | None:
    """What is wrong with two frame lists, or None: equally long, non-empty, integer, >= 0,
    monotone non-decreasing."""
    for side, frames in (("neutral", neutral), ("emotional", emotional)):
        if not isinstance(frames, list):
            return f"{side} frames are {_kind(frames)}, not a list"
        if not frames:
            return f"{side} frame list is empty"
        bad = next((v for v in frames if type(v) is not int), None)  # bool is not a frame
        if bad is not None:
            return f"{side} frame index {bad!r} is not an integer"
        if min(frames) < 0:
            return f"{side} frame index {min(frames)} is negative"
        drop = next((k for k in range(1, len(frames)) if frames[k] < frames[k - 1]), None)
        if drop is not None:
            return (
                f"{side} frames decrease at position {drop} ({frames[drop - 1]} -> {frames[drop]})"
            )
    if len(neutral) != len(emotional):
        return f"frame lists differ in length ({len(neutral)} vs {len(emotional)})"
    return None


def _sentence(clip: str) -> str:
    """``"M003/angry/level_3/001"`` -> ``"001"``; a bare sentence id is returned as is."""
    return clip.replace("\\", "/").rstrip("/").rsplit("/", 1)[-1]


def _kind(value: object) -> str:
    return "null" if value is None else type(value).__name__


def _read_text(path: Path) -> str:
    """The file's text; a UTF-8 byte order mark (Excel writes one) is dropped."""
    try:
        return path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise DataError(path, "no such file") from None
    except UnicodeDecodeError:
        raise DataError(path, "not UTF-8 text") from None
    except OSError as err:
        raise DataError(path, f"cannot be read ({err.strerror or err})") from None
