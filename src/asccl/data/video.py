"""Read (and, for tests and demos, write) video files with PyAV, which bundles FFmpeg; probe
a video's frame rate and count (:func:`probe_video`) and an audio track's duration
(:func:`probe_audio`) from their headers.

Frames come out as ``(H, W, 3)`` uint8 RGB arrays, upright: a stream's display matrix (the
rotation tag a phone writes when it stores a portrait clip sideways) is applied as players
apply it (:class:`_Upright`), and :func:`probe_video` reports the upright size. Every problem
with an input file is a :class:`~asccl.data.errors.DataError` whose message is one line
naming the file.
"""

from __future__ import annotations

import itertools
import math
import os
import struct
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from asccl.data.errors import DataError
from asccl.io import atomic_write
from asccl.optional import require

if TYPE_CHECKING:
    import av

# PyAV is imported where a function first needs it, not here: modules that only reach
# this one through asccl.data.crops (training, the metric, the benchmarks) then import
# without it, e.g. on a machine that carries no PyAV. A missing PyAV still fails at the
# first read or write, as asccl.optional.MissingDependencyError (one line: what to install).
_NEEDS_AV = "reading and writing video needs PyAV"

__all__ = [
    "AudioInfo",
    "VideoInfo",
    "iter_frames",
    "probe_audio",
    "probe_video",
    "scaled_size",
    "write_video",
]


@dataclass(frozen=True)
class VideoInfo:
    """What :func:`probe_video` learns about a file's first video stream.

    Attributes:
        fps: frames per second (the stream's average rate).
        num_frames: number of frames (the container's count, else one counted by demuxing).
        width, height: frame size in pixels as displayed (after the stream's rotation
            tag, as :func:`iter_frames` yields them), before any ``scale_to``.
    """

    fps: float
    num_frames: int
    width: int
    height: int

    @property
    def duration(self) -> float:
        """``num_frames / fps``, in seconds."""
        return self.num_frames / self.fps


def _open_media(path: Path, kind: str) -> av.container.InputContainer:
    """Open ``path`` for reading, turning every way it can fail into a :class:`DataError`."""
    if not path.exists():
        raise DataError(path, "no such file")
    if path.is_dir():
        raise DataError(path, f"is a directory, not {kind} file")
    if path.stat().st_size == 0:
        raise DataError(path, "empty file")
    av = require("av", _NEEDS_AV)

    try:
        return av.open(str(path))
    except (av.error.FFmpegError, OSError) as err:
        raise DataError(path, f"cannot open as {kind} ({_one_line(err)})") from err


def _open(path: Path) -> av.container.InputContainer:
    """Open ``path`` and check it has a video stream; :class:`DataError` otherwise."""
    container = _open_media(path, "a video")
    if not container.streams.video:
        found = [s.type for s in container.streams]
        container.close()
        if not found:
            raise DataError(path, "no readable streams (truncated or not a media file?)")
        raise DataError(path, f"no video stream (only {', '.join(found)})")
    return container


def _one_line(err: BaseException) -> str:
    """FFmpeg's reason without the file name it repeats, on one line."""
    text = getattr(err, "strerror", None) or str(err) or type(err).__name__
    return " ".join(str(text).split())


def _fps(stream: av.video.stream.VideoStream) -> float | None:
    for rate in (stream.average_rate, stream.guessed_rate, stream.base_rate):
        if rate:
            return float(rate)
    return None


@dataclass(frozen=True)
class _Upright:
    """How to turn a decoded frame upright, from its display matrix: transpose (a 90 or 270
    degree tag), then mirror rows and/or columns.

    FFmpeg's display matrix ``[a b u; c d v; x y w]`` maps a stored pixel ``(p, q)``
    (column, row) to the displayed ``(a p + c q + x, b p + d q + y)``. Up to sign, it is
    the identity (0, 180 degrees, mirrors) or swaps the axes (90, 270 degrees); the signs
    of ``a, d`` (or ``b, c``) say which axes run backwards. This is what the ``ffmpeg``
    CLI's autorotate does (``transpose=cclock`` for PyAV's ``frame.rotation == 90``, which
    counts counter-clockwise; ``clock`` for -90; ``hflip``/``vflip`` for 180 and mirrors).
    """

    transpose: bool = False
    flip_rows: bool = False  # upside down
    flip_cols: bool = False  # left-right

    @property
    def identity(self) -> bool:
        return not (self.transpose or self.flip_rows or self.flip_cols)

    def size(self, width: int, height: int) -> tuple[int, int]:
        """The displayed ``(width, height)`` of a stored ``width x height`` frame."""
        return (height, width) if self.transpose else (width, height)

    def apply(self, frame: np.ndarray) -> np.ndarray:
        """``(H, W, 3)`` stored frame -> displayed frame (a contiguous copy unless identity)."""
        if self.identity:
            return frame
        if self.transpose:
            frame = frame.transpose(1, 0, 2)
        if self.flip_rows:
            frame = frame[::-1]
        if self.flip_cols:
            frame = frame[:, ::-1]
        return np.ascontiguousarray(frame)


def _upright(path: Path, frame: av.VideoFrame) -> _Upright:
    """The :class:`_Upright` for ``frame``'s display matrix (side data); identity if none.

    Raises:
        DataError: the matrix turns by an angle that is not a multiple of 90 degrees (more
            than 1 degree off, FFmpeg's own tolerance), or is degenerate.
    """
    from av.sidedata.sidedata import Type

    matrix = next((sd for sd in frame.side_data if sd.type == Type.DISPLAYMATRIX), None)
    if matrix is None:
        return _Upright()
    a, b, _, c, d = struct.unpack("=9i", bytes(matrix))[:5]  # 16.16 fixed point, native order
    if math.hypot(a, c) == 0 or math.hypot(b, d) == 0:
        raise DataError(path, f"degenerate display matrix {(a, b, c, d)} (rotation tag)")
    # counter-clockwise degrees, as FFmpeg's av_display_rotation_get and PyAV's frame.rotation
    angle = -math.degrees(math.atan2(b / math.hypot(b, d), a / math.hypot(a, c)))
    quarter = round(angle / 90)
    if abs(angle - 90 * quarter) > 1.0:
        raise DataError(
            path, f"video is tagged to display rotated by {angle:g} degrees; only multiples "
            "of 90 are supported (re-encode it upright)"
        )  # fmt: skip
    if quarter % 2:
        return _Upright(transpose=True, flip_rows=b < 0, flip_cols=c < 0)
    return _Upright(flip_rows=d < 0, flip_cols=a < 0)


def _first_upright(
    path: Path, container: av.container.InputContainer, stream: av.video.stream.VideoStream
) -> tuple[_Upright, int]:
    """Decode up to the first frame for its :class:`_Upright`; when the container lists no
    frame count, or lists more frames than its stream lasts (an MP4 edit list that starts
    after some packets: ``ffmpeg -ss .. -c copy``), also count the video packets that
    decode (demuxing to the end, decoding no more; packets marked discard left out).

    Returns:
        ``(upright, packets)``: ``packets`` is 0 unless counted. Identity when the first
        frame does not decode: :func:`iter_frames` reports that, saying where.

    Raises:
        DataError: the packets cannot be demuxed; as :func:`_upright`.
    """
    av = require("av", _NEEDS_AV)

    upright, packets, count = None, 0, stream.frames <= 0 or _lists_cut_frames(stream)
    try:
        for packet in container.demux(stream):
            packets += packet.size > 0 and not packet.is_discard  # the last packet is empty
            if upright is None:
                try:
                    frame = next(iter(packet.decode()), None)
                except av.error.FFmpegError:
                    upright = _Upright()  # cut or corrupt frame data: a header probe still
                else:  # succeeds, and reading the frames says what is wrong
                    upright = None if frame is None else _upright(path, frame)
            if upright is not None and not count:
                break
    except av.error.FFmpegError as err:
        raise DataError(path, f"corrupt video stream ({_one_line(err)})") from err
    return upright or _Upright(), packets if count else 0


def _lists_cut_frames(stream: av.video.stream.VideoStream) -> bool:
    """Whether the container lists over a frame more than its stream's duration holds (an
    edit list cut the rest: their packets are there, marked discard)."""
    rate = _fps(stream)
    if not (stream.duration and stream.time_base and rate):
        return False
    return stream.frames > stream.duration * stream.time_base * rate + 1


def probe_video(path: str | os.PathLike) -> VideoInfo:
    """Frame rate, frame count and size of the first video stream of ``path``.

    The count is the container's when it records one (MP4, AVI); Matroska/WebM record none
    (``stream.frames == 0``), and an MP4 cut by an edit list lists more than it plays (its
    leading packets marked discard); then the packets that decode are counted by demuxing, which
    reads the file but decodes nothing more than the first frame. That first frame is
    decoded for the stream's rotation tag (PyAV exposes the display matrix only on decoded
    frames), so ``width, height`` are the upright size :func:`iter_frames` yields.

    Raises:
        DataError: missing, empty or unreadable file, no video stream, no frames, no frame
            rate, or a rotation tag that is not a multiple of 90 degrees.
    """
    path = Path(path)
    container = _open(path)
    try:
        stream = container.streams.video[0]
        fps = _fps(stream)
        upright, packets = _first_upright(path, container, stream)
        num_frames = packets if packets else stream.frames
        width, height = upright.size(stream.codec_context.width, stream.codec_context.height)
    finally:
        container.close()
    if num_frames <= 0:
        raise DataError(path, "video stream has no frames")
    if fps is None:
        raise DataError(path, "video stream has no frame rate")
    return VideoInfo(fps=fps, num_frames=num_frames, width=width, height=height)


def frame_times(path: str | os.PathLike) -> np.ndarray:
    """``(N,)`` float64: the presentation time, in seconds, of each frame of the first video
    stream of ``path``, in presentation order, on the container's clock (its start time, the
    earliest of its streams', subtracted: as the ffmpeg CLI offsets an input).

    Read from the packets' timestamps (demuxed, nothing decoded); empty packets (an AVI's
    dropped-frame markers) and packets the demuxer marks for discarding (an MP4 edit list
    that starts after them: the decoder drops their frames, as the ffmpeg CLI does) are
    skipped. ``[]`` when some packet carries no timestamp (raw bitstreams): the caller then
    assumes ``i / fps``.

    Raises:
        DataError: as :func:`probe_video`, or a stream that cannot be demuxed.
    """
    path = Path(path)
    container = _open(path)
    av = require("av", _NEEDS_AV)
    try:
        stream = container.streams.video[0]
        start = Fraction(container.start_time or 0, 1_000_000)  # AV_TIME_BASE units
        ticks = []
        for packet in container.demux(stream):
            if packet.size == 0 or packet.is_discard:
                continue  # the flush packet, an empty (dropped-frame) one, or one cut off
            if packet.pts is None:
                return np.zeros(0)
            ticks.append(packet.pts)
        base = stream.time_base
    except av.error.FFmpegError as err:
        raise DataError(path, f"corrupt video stream ({_one_line(err)})") from err
    finally:
        container.close()
    return np.array([float(t * base - start) for t in sorted(ticks)], np.float64)


@dataclass(frozen=True)
class AudioInfo:
    """What :func:`probe_audio` learns about a file's first audio stream.

    Attributes:
        duration: seconds, as the stream (else the container) declares it, else the sum of
            its packets' durations.
        sample_rate: Hz.
    """

    duration: float
    sample_rate: int


def probe_audio(path: str | os.PathLike) -> AudioInfo:
    """Duration and rate of the first audio stream of ``path`` (a ``.m4a``, ``.wav`` or
    the sound track of a video), from its headers; decodes nothing.

    When neither the stream nor the container declares a duration (raw ADTS, some WAVs
    written to a pipe), the packets are demuxed and their durations summed. A stream with
    no samples has duration 0 (not an error here: :func:`asccl.data.clip_index.probe_clip`
    decides what is too short).

    Raises:
        DataError: missing, empty or unreadable file, or no audio stream.
    """
    av = require("av", _NEEDS_AV)

    path = Path(path)
    container = _open_media(path, "an audio")
    try:
        if not container.streams.audio:
            found = [s.type for s in container.streams]
            raise DataError(path, f"no audio stream (streams: {', '.join(found) or 'none'})")
        stream = container.streams.audio[0]
        rate = stream.codec_context.sample_rate or stream.rate or 0
        duration = None
        if stream.duration is not None and stream.time_base is not None:
            duration = float(stream.duration * stream.time_base)
        elif container.duration is not None:
            duration = container.duration / av.time_base
        if duration is None:
            try:
                duration = sum(
                    float(p.duration * p.time_base)
                    for p in container.demux(stream)
                    if p.duration is not None and p.time_base is not None
                )
            except av.error.FFmpegError as err:
                raise DataError(path, f"corrupt audio stream ({_one_line(err)})") from err
    finally:
        container.close()
    return AudioInfo(duration=max(0.0, duration), sample_rate=int(rate))


def scaled_size(width: int, height: int, scale_to: int) -> tuple[int, int]:
    """``(width, height)`` resized so the longest side is ``scale_to``, aspect kept."""
    if scale_to < 1:
        raise ValueError(f"scale_to must be >= 1, got {scale_to}")
    s = scale_to / max(width, height)
    return max(1, round(width * s)), max(1, round(height * s))


def iter_frames(path: str | os.PathLike, *, scale_to: int | None = None) -> Iterator[np.ndarray]:
    """Decode the first video stream of ``path`` frame by frame.

    The file is opened (and checked) when this is called, not at the first ``next``.
    Decoding uses FFmpeg's own threads (``thread_type="AUTO"``).

    Args:
        path: a video file.
        scale_to: if given, each frame is resized (by FFmpeg's swscale, area filter) so its
            longest side is ``scale_to`` pixels, aspect ratio kept.

    Yields:
        ``(H, W, 3)`` uint8 RGB frames, in presentation order, upright: a rotation tag of
        90, 180 or 270 degrees (or a mirror) is applied as players apply it, so ``H, W``
        are :func:`probe_video`'s ``height, width``. An untagged stream's frames are
        FFmpeg's, untouched.

    Raises:
        DataError: as :func:`probe_video`; also, while iterating, when a packet cannot be
            decoded (saying how many frames came before), when the stream decodes to no
            frame at all, or (after the last frame) to fewer frames than the container lists;
            a rotation tag that is not a multiple of 90 degrees, or that changes mid-stream.
    """
    path = Path(path)
    container = _open(path)
    return _frames(path, container, scale_to)


def _frames(
    path: Path, container: av.container.InputContainer, scale_to: int | None
) -> Iterator[np.ndarray]:
    av = require("av", _NEEDS_AV)

    n = 0
    try:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        upright, rotation, size = None, 0, None
        discarded = 0  # packets an MP4 edit list cuts off: listed, demuxed, never decoded

        def decoded():
            nonlocal discarded
            for packet in container.demux(stream):
                discarded += bool(packet.size and packet.is_discard)
                yield from packet.decode()

        try:
            for frame in decoded():
                if upright is None:  # the tag is the stream's: every frame carries it
                    upright, rotation = _upright(path, frame), frame.rotation
                    if scale_to is not None:
                        ctx = stream.codec_context
                        shown = upright.size(ctx.width, ctx.height)
                        # scaled as shown, then back to the stored orientation for swscale
                        size = upright.size(*scaled_size(*shown, scale_to))
                elif frame.rotation != rotation:
                    raise DataError(
                        path, f"rotation tag changes from {rotation} to {frame.rotation} "
                        f"degrees at frame {n}"
                    )  # fmt: skip
                if size is None:
                    yield upright.apply(frame.to_ndarray(format="rgb24"))
                else:
                    yield upright.apply(
                        frame.reformat(
                            width=size[0], height=size[1], format="rgb24", interpolation="AREA"
                        ).to_ndarray()
                    )
                n += 1
        except av.error.FFmpegError as err:
            raise DataError(
                path, f"undecodable data after {n} decoded frames ({_one_line(err)})"
            ) from err
        if n == 0:
            raise DataError(path, "video stream decodes to no frames")
        if n < stream.frames - discarded:
            listed = stream.frames - discarded
            raise DataError(path, f"truncated: decoded {n} of the {listed} frames it lists")
    finally:
        container.close()


#: x264's options for reproducible files. Its macroblock-tree rate control (``mbtree``) gave
#: different bytes for the same frames (measured here, libx264 in PyAV 18's FFmpeg: 3
#: different files in 60 encodes of one 39-frame 96 px clip at preset medium, 2 to 5 in 30
#: single-threaded at preset slow), so decoded frames, and every number computed from
#: them, changed from run to run; without it all 60 and 150 encodes were identical.
X264_PARAMS = "mbtree=0"


def write_video(
    path: str | os.PathLike,
    frames: Iterable[np.ndarray],
    fps: float = 25.0,
    *,
    codec: str = "libx264",
    crf: int | None = 18,
    preset: str | None = None,
    audio_from: str | os.PathLike | None = None,
) -> int:
    """Encode ``(H, W, 3)`` uint8 RGB frames to ``path`` (yuv420p); returns the frame count.

    For small test clips and demo outputs, not for datasets. With ``libx264``, ``crf``
    sets the quality (0 lossless .. 51) and ``preset`` the speed (``"veryfast"`` ..
    ``"veryslow"``, default ``"medium"``); other codecs ignore both. H and W must be even.
    ``audio_from``: a media file whose first audio stream is copied into the output as is
    (no re-encoding), e.g. the source clip's speech under generated frames. The file is
    written atomically (:func:`asccl.io.atomic_write`): a failure leaves ``path`` as it was.
    The same frames give the same bytes (:data:`X264_PARAMS`).

    Raises:
        DataError: ``audio_from`` cannot be read or has no audio stream.
    """
    path = Path(path)
    frames = iter(frames)
    first = next(frames, None)
    if first is None:
        raise ValueError(f"{path}: no frames to write")
    if first.dtype != np.uint8 or first.ndim != 3 or first.shape[2] != 3:
        raise ValueError(f"frames must be (H, W, 3) uint8, got {first.shape} {first.dtype}")
    options = {}
    if codec == "libx264":
        options = {k: str(v) for k, v in (("crf", crf), ("preset", preset)) if v is not None}
        options["x264-params"] = X264_PARAMS  # the same frames give the same bytes
    av = require("av", _NEEDS_AV)

    count = 0
    audio = _open_audio_source(audio_from) if audio_from is not None else None
    with atomic_write(path) as tmp, av.open(str(tmp), "w") as container:
        stream = container.add_stream(
            codec, rate=Fraction(fps).limit_denominator(1001), options=options
        )
        audio_out = None
        if audio is not None:
            audio_out = container.add_stream_from_template(audio.streams.audio[0])
        stream.height, stream.width = first.shape[:2]
        stream.pix_fmt = "yuv420p"
        for frame in itertools.chain([first], frames):
            if frame.shape != first.shape or frame.dtype != np.uint8:
                raise ValueError(
                    f"frame {count} is {frame.shape} {frame.dtype}, expected {first.shape} uint8"
                )
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
            count += 1
        for packet in stream.encode():
            container.mux(packet)
        if audio is not None:
            with audio:
                for packet in audio.demux(audio.streams.audio[0]):
                    if packet.dts is None:
                        continue  # the demuxer's end-of-stream marker
                    packet.stream = audio_out
                    container.mux(packet)
    return count


def _open_audio_source(path: str | os.PathLike) -> av.container.InputContainer:
    av = require("av", _NEEDS_AV)

    try:
        container = av.open(str(path))
    except (av.FFmpegError, OSError) as err:
        raise DataError(path, f"cannot read audio to copy: {err}") from err
    if not container.streams.audio:
        container.close()
        raise DataError(path, "has no audio stream to copy")
    return container
