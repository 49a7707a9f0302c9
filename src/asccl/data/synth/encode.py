"""Writing synthetic clips: MP4 (H.264 + AAC) and M4A (AAC) with PyAV, bit-exact.

The encoders run single-threaded with FFmpeg's ``+bitexact`` flags and without x264's
macroblock tree (:data:`asccl.data.video.X264_PARAMS`), so the same frames and samples give
the same bytes with the same FFmpeg build (and always the same decoded
frames with it). Every file is written through :func:`asccl.io.atomic_write`.
"""

from __future__ import annotations

import os
from fractions import Fraction

import av
import numpy as np

from asccl.data.video import X264_PARAMS
from asccl.io import atomic_write

CRF = 26  #: x264 quality (lower = better and bigger)
AUDIO_BITRATE = 32000  #: AAC bits per second


def _audio_frame(audio: np.ndarray, sample_rate: int) -> av.AudioFrame:
    frame = av.AudioFrame.from_ndarray(audio[None].astype(np.float32), format="fltp", layout="mono")
    frame.sample_rate = sample_rate
    frame.pts = 0
    frame.time_base = Fraction(1, sample_rate)
    return frame


def _add_audio(container: av.container.OutputContainer, sample_rate: int) -> av.AudioStream:
    stream = container.add_stream("aac", rate=sample_rate, options={"flags": "+bitexact"})
    stream.codec_context.layout = "mono"
    stream.codec_context.bit_rate = AUDIO_BITRATE
    stream.codec_context.thread_count = 1
    return stream


def write_m4a(path: str | os.PathLike, audio: np.ndarray, sample_rate: int = 16000) -> None:
    """Write mono float ``audio`` (samples,) in [-1, 1] as AAC in an M4A file (atomic)."""
    with (
        atomic_write(path) as tmp,
        av.open(str(tmp), "w", format="ipod", options={"fflags": "+bitexact"}) as out,
    ):
        stream = _add_audio(out, sample_rate)
        out.mux(stream.encode(_audio_frame(audio, sample_rate)))
        out.mux(stream.encode(None))


def video_codec(crf: int = CRF) -> tuple[str, dict[str, str]]:
    """libx264 when this FFmpeg has it (what the bundled demo files use), else FFmpeg's own
    MPEG-4 part 2 encoder (bigger files for the same quality)."""
    try:
        av.codec.Codec("libx264", "w")
    except Exception:  # PyAV raises different errors across versions
        return "mpeg4", {"b": "300k", "flags": "+bitexact"}
    params = f"threads=1:lookahead-threads=1:{X264_PARAMS}"  # mbtree off: see X264_PARAMS
    x264 = {"crf": str(crf), "preset": "slow", "x264-params": params}
    return "libx264", {**x264, "flags": "+bitexact"}


def write_mp4(
    path: str | os.PathLike,
    frames: np.ndarray,
    audio: np.ndarray,
    fps: int = 30,
    sample_rate: int = 16000,
) -> None:
    """Write (n, H, W, 3) uint8 RGB ``frames`` (H, W even) at ``fps`` with mono ``audio``
    (samples,) as an MP4 (H.264 yuv420p + AAC), atomically."""
    with (
        atomic_write(path) as tmp,
        av.open(str(tmp), "w", format="mp4", options={"fflags": "+bitexact"}) as out,
    ):
        codec, options = video_codec()
        video = out.add_stream(codec, rate=fps, options=options)
        video.height, video.width = frames.shape[1:3]
        video.pix_fmt = "yuv420p"
        video.codec_context.thread_count = 1
        audio_stream = _add_audio(out, sample_rate)
        for i, rgb in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(format="yuv420p")
            frame.pts = i
            out.mux(video.encode(frame))
        out.mux(video.encode(None))
        out.mux(audio_stream.encode(_audio_frame(audio, sample_rate)))
        out.mux(audio_stream.encode(None))


def write_npy(path: str | os.PathLike, array: np.ndarray) -> None:
    """Save ``array`` as ``.npy`` (atomic)."""
    with atomic_write(path) as tmp, open(tmp, "wb") as f:
        np.save(f, array)
