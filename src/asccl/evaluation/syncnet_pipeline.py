"""What syncnet_python's ``run_pipeline.py`` + ``evaluate`` feed SyncNet for one clip.

The reference (as Wav2Lip's evaluation runs it) converts the clip with ``ffmpeg -qscale:v 2
-async 1 -r 25 video.avi``, extracts ``%06d.jpg`` (q 2) and a 16 kHz ``audio.wav`` from that
AVI, cuts each face track's crops from the JPEGs into OpenCV's XVID ``crop.avi`` with the
track's audio, and ``evaluate`` reads the crops back as ``ffmpeg -f image2`` JPEGs. Here:

* which source frame each 25 fps image shows: :mod:`~asccl.evaluation.syncnet_timing`;
* the full frames' codecs (MPEG-4 q 2, JPEG q 2) and the crops' (XVID, MJPEG):
  :mod:`~asccl.evaluation.syncnet_video`;
* the audio (``-async 1``, MP3 in the AVI with its priming, 16 kHz s16):
  :mod:`~asccl.evaluation.syncnet_audio`;
* the face track and crop: :func:`~asccl.evaluation.framing.syncnet_input` (asccl's tracker
  on the clean frames, not S3FD on the JPEGs; see :mod:`~asccl.evaluation.framing`).

``codecs=False`` leaves every lossy step out (clean frames and 16 kHz audio decoded as
``load_audio_like_ffmpeg`` does; the same frame pick, without the MP3 shift). ``ffmpeg``
picks the CLI generation to follow (:data:`~asccl.evaluation.syncnet_timing.
FFMPEG_BEHAVIOURS`): 4.x-6.x and 7+ make different 25 fps images and treat a late audio
start differently; the codecs themselves are PyAV's FFmpeg's either way.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from asccl.data.errors import DataError
from asccl.evaluation.framing import FaceTrack, FramingResult, syncnet_input
from asccl.evaluation.lip_sync import SAMPLE_RATE, SAMPLES_PER_FRAME
from asccl.evaluation.syncnet_timing import avi_frame_sources


@dataclass(frozen=True)
class SyncNetInput:
    """One clip as SyncNet receives it.

    Attributes:
        crops: ``(M, 224, 224, 3)`` uint8 RGB, the scored run of 25 fps images.
        audio: ``(S,)`` int16 at 16 kHz, starting at the run's first image (their
            ``audiostart``).
        framed: the framing's result (``index``: the run's 25 fps image numbers,
            ``no_face``: images without a face).
        sources: ``(K,)`` the source frame each 25 fps image shows.
    """

    crops: np.ndarray
    audio: np.ndarray
    framed: FramingResult
    sources: np.ndarray


def clip_frame_times(clip: Path, num_frames: int, fps: float) -> np.ndarray:
    """``(num_frames,)`` seconds: a video's frame timestamps
    (:func:`~asccl.data.video.frame_times`), ``i / fps`` for a frame folder or a stream
    without timestamps. A video whose timestamps cover fewer frames than were decoded is
    timed ``i / fps`` with a warning (the frame pick then assumes a constant rate)."""
    if clip.is_dir():
        return np.arange(num_frames) / fps
    from asccl.data.video import frame_times

    times = frame_times(clip)
    if len(times) < num_frames:
        if len(times):
            warnings.warn(f"{clip}: {len(times)} timestamps for {num_frames} decoded frames; "
                          f"timed as a constant {fps:g} fps", stacklevel=2)  # fmt: skip
        return np.arange(num_frames) / fps
    return times[:num_frames]


def run_pipeline_input(
    frames: np.ndarray,
    times: np.ndarray,
    fps: float,
    clip: Path,
    audio_path: Path,
    framing: str,
    track: FaceTrack | None = None,
    crop_scale: float = 0.4,
    *,
    codecs: bool = True,
    ffmpeg: str = "4-6",
) -> SyncNetInput:
    """SyncNet's input for ``clip``'s ``(N, H, W, 3)`` uint8 RGB ``frames`` (timed by
    ``times``, :func:`clip_frame_times`; the stream's rate ``fps``) and the audio of
    ``audio_path`` (the clip, or its source for a silent result). ``frames`` is overwritten
    by the full-frame codecs where ``codecs`` (the caller's decoded copy; no second copy of
    a whole clip is made): from the video's own decoded pictures (the CLI encodes those,
    converted to ``yuv420p`` if stored otherwise), from the RGB frames for a frame folder or
    a video with a rotation tag; skipped, with a warning, for an odd frame size.

    Raises:
        DataError: unreadable audio, or ``audio_path`` a folder.
    """
    if audio_path.is_dir():
        raise DataError(audio_path, "a frame folder has no audio for LSE")
    if codecs:
        from asccl.evaluation.syncnet_audio import avi_audio

        avi = avi_audio(audio_path, ffmpeg)
        audio = avi.samples
        sources = avi_frame_sources(times, fps, avi.source_rate, priming=avi.priming,
                                    audio_start=avi.start, ffmpeg=ffmpeg)  # fmt: skip
        _full_frame_codecs(frames, np.unique(sources), clip)  # pass 1's AVI: kept frames
    else:
        from asccl.data.audio import load_audio_like_ffmpeg

        audio = load_audio_like_ffmpeg(audio_path)
        # a clip with audio, without the MP3 and so without its shift (priming 0)
        sources = avi_frame_sources(times, fps, SAMPLE_RATE, priming=0, ffmpeg=ffmpeg)
    framed = syncnet_input(frames, sources, framing, track, crop_scale)
    crops = framed.frames
    if codecs and len(crops):
        from asccl.evaluation.syncnet_video import crop_video_round_trip

        crops = crop_video_round_trip(crops)
    start = int(framed.index[0]) if len(framed.index) else 0
    return SyncNetInput(crops, audio[start * SAMPLES_PER_FRAME :], framed, sources)


def _full_frame_codecs(frames: np.ndarray, kept: np.ndarray, clip: Path) -> None:
    """Pass 1's MPEG-4 and pass 2's JPEG on ``frames[kept]``, in place."""
    from asccl.evaluation.syncnet_video import avi_frames_round_trip, avi_pictures_round_trip

    height, width = frames.shape[1:3]
    if height % 2 or width % 2:
        warnings.warn(f"{clip}: {width}x{height} frames: the full-frame MPEG-4/JPEG step of "
                      "lse_codecs is left out (asccl's emulation needs an even size)",
                      stacklevel=3)  # fmt: skip
        return
    pictures = None if clip.is_dir() else _clip_pictures(clip, kept)
    if pictures is not None:
        frames[kept] = avi_pictures_round_trip(pictures)
    else:
        frames[kept] = avi_frames_round_trip(frames[kept])


def _clip_pictures(clip: Path, kept: np.ndarray) -> list | None:
    """The video's decoded pictures ``kept`` (PyAV frames, ``yuv420p``), or ``None`` when
    they are not what the RGB frames show upright (a rotation tag) or fewer decode."""
    import av

    wanted, out = set(kept.tolist()), []
    try:
        with av.open(str(clip)) as container:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            for i, frame in enumerate(container.decode(stream)):
                if i > kept[-1]:
                    break
                if frame.rotation:
                    return None
                if i in wanted:
                    out.append(frame.reformat(format="yuv420p"))
    except av.error.FFmpegError:
        return None  # read_frames decoded these frames; the RGB path takes over
    return out if len(out) == len(kept) else None
