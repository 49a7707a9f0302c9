"""The clip index file: one CSV row per clip (the contract between indexing and the rest),
and the checks a clip passes before it enters it (:func:`probe_clip`).

Rules a clip's video and audio must meet to be indexed (else the clip is reported, file and
reason, and left out, so it is never paired):

* Frame rate in :data:`FPS_RANGE`, 20-60 fps. MEAD is filmed at 30 fps, RAVDESS at 29.97;
  talking-face data in general at 24-60. Below 20 fps the one-to-one frame pairs of the
  DTW alignment lose the lip motion between frames; above 60 a rate is not a camera's:
  1000 fps is what FFmpeg reports for a stream with a millisecond time base and no
  declared rate, i.e. a broken header.
* At least :data:`MIN_DURATION_S` = 0.5 s of video (15 frames at 30 fps): MEAD's and
  RAVDESS's sentences last 1.5-5 s; a 1-frame "clip" is a still image, not speech.
* An audio track with samples (duration > 0).
* Video and audio equally long: ``|num_frames / fps - audio duration|`` at most
  :func:`duration_tolerance` = ``2 / fps + 0.07`` s (0.137 s at 30 fps). Two frames: the
  video's length is a whole number of frames, and its cut may fall up to a frame from the
  audio's at either end. 0.07 s: an AAC track's declared length can include its encoder
  delay and the padding of its last frame, up to 2112 + 1024 samples = 66 ms at 48 kHz
  (MEAD's and RAVDESS's rate). The bundled demo clips differ by under one frame. A larger
  gap means the frame rate or frame count is wrong, or the files are not the same take:
  every DTW frame pair would then point at the wrong frame.

Paths go into ``clips.csv`` as UTF-8: a path whose bytes are not UTF-8 is refused
(:func:`require_utf8`), naming it with the bad bytes escaped.
"""

from __future__ import annotations

import csv
import io
import os
from dataclasses import fields, replace
from pathlib import Path

from asccl.data.clips import Clip
from asccl.data.errors import DataError, printable_path
from asccl.io import write_text_atomic

__all__ = [
    "COLUMNS",
    "FPS_RANGE",
    "MIN_DURATION_S",
    "duration_tolerance",
    "probe_clip",
    "read_clip_index",
    "require_utf8",
    "with_video_info",
    "write_clip_index",
]

COLUMNS = [f.name for f in fields(Clip)]

#: Lowest and highest video frame rate accepted, inclusive (see the module docstring).
FPS_RANGE: tuple[float, float] = (20.0, 60.0)
#: Shortest video accepted, in seconds.
MIN_DURATION_S = 0.5
#: Audio codec slack in seconds: AAC encoder delay + last-frame padding at 48 kHz.
AUDIO_SLACK_S = 0.07


def duration_tolerance(fps: float) -> float:
    """Largest accepted ``|video - audio|`` duration gap in seconds: 2 frames + 0.07 s."""
    return 2.0 / fps + AUDIO_SLACK_S


def require_utf8(path: str | os.PathLike, what: str = "path") -> None:
    """Raise :class:`DataError` (``path`` printed with ``\\xNN`` escapes) when ``path``
    holds bytes that are not UTF-8 (kept by Python as lone surrogates)."""
    try:
        os.fspath(path).encode("utf-8")
    except UnicodeEncodeError:
        raise DataError(
            path, f"{what} is not valid UTF-8 (bytes shown as \\xNN): rename it, or reach it "
            "through a symlink with a UTF-8 name"
        ) from None  # fmt: skip


def probe_clip(clip: Clip) -> Clip:
    """``clip`` with its video's frame rate and count, once its video and audio pass the
    rules of this module's docstring (frame rate, length, audio present and as long).

    Reads headers only (:func:`~asccl.data.video.probe_video`,
    :func:`~asccl.data.video.probe_audio`); a clip without an audio file gets the video
    checks only.

    Raises:
        DataError: naming the file at fault (the video, or the audio for an unreadable or
            empty track) and the problem; a length mismatch names the video and, in the
            problem, the audio.
    """
    from asccl.data.video import probe_audio, probe_video

    if clip.video is None:
        raise DataError(clip.clip_id, "no video file to probe")
    info = probe_video(clip.video)
    low, high = FPS_RANGE
    if not low <= info.fps <= high:
        raise DataError(
            clip.video,
            f"frame rate {info.fps:g} fps outside {low:g}-{high:g} fps (MEAD: 30, RAVDESS: "
            "29.97; a broken header?)",
        )
    video_s = info.duration
    if video_s < MIN_DURATION_S:
        raise DataError(
            clip.video,
            f"video too short: {info.num_frames} frame(s) at {info.fps:g} fps = {video_s:.3f} "
            f"s, under {MIN_DURATION_S:g} s",
        )
    if clip.audio is not None:
        audio_s = probe_audio(clip.audio).duration
        if audio_s <= 0:
            raise DataError(clip.audio, "audio track is empty (0 s of sound)")
        gap, tolerance = video_s - audio_s, duration_tolerance(info.fps)
        if abs(gap) > tolerance:
            raise DataError(
                clip.video,
                f"video {video_s:.3f} s ({info.num_frames} frames at {info.fps:g} fps) is "
                f"{'longer' if gap > 0 else 'shorter'} than its audio "
                f"{printable_path(clip.audio)} ({audio_s:.3f} s) by {abs(gap):.3f} s, more "
                f"than the {tolerance:.3f} s allowed (2 frames + {AUDIO_SLACK_S:g} s)",
            )
    return with_video_info(clip, info.fps, info.num_frames)


def write_clip_index(clips: list[Clip], path: str | Path) -> Path:
    """Write ``clips`` as UTF-8 CSV (columns: the :class:`Clip` fields), atomically.

    Raises:
        DataError: a clip's path is not valid UTF-8 (nothing is written).
    """
    path = Path(path)
    for clip in clips:
        for file in (clip.video, clip.audio):
            if file is not None:
                require_utf8(file)
    buffer = io.StringIO(newline="")
    writer = csv.DictWriter(buffer, fieldnames=COLUMNS)
    writer.writeheader()
    for clip in clips:
        row = {name: getattr(clip, name) for name in COLUMNS}
        writer.writerow({k: "" if v is None else v for k, v in row.items()})
    return write_text_atomic(path, buffer.getvalue())


def read_clip_index(path: str | Path) -> list[Clip]:
    """Read a clip index written by :func:`write_clip_index`."""
    path = Path(path)
    if not path.is_file():
        raise DataError(path, "no clip index here: run `asccl data index` first")
    with path.open(newline="", encoding="utf-8-sig") as handle:  # Excel's BOM dropped
        try:
            return _read_rows(path, csv.DictReader(handle))
        except UnicodeDecodeError as exc:
            raise DataError(path, f"not UTF-8 text (byte {exc.start}): not a clip index") from None


def _read_rows(path: Path, reader: csv.DictReader) -> list[Clip]:
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
