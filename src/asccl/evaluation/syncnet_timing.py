"""Which source frame each 25 fps image of syncnet_python's ``run_pipeline`` shows.

``run_pipeline.py`` converts a clip with ``ffmpeg -y -i clip -qscale:v 2 -async 1 -r 25
video.avi`` (pass 1) and extracts its frames with ``ffmpeg -y -i video.avi -qscale:v 2
-threads 1 -f image2 %06d.jpg`` (pass 2); SyncNet's window ``i`` is images ``i .. i+4`` of
pass 2. :func:`avi_frame_sources` reproduces that mapping from the clip's frame times, as
FFmpeg 5.1's ``fftools`` do it (``do_video_out``, libavformat's avi muxer and demuxer):

* **Pass 1, frame-rate sync into AVI** (``-vsync auto`` is ``vfr`` for the avi muxer; ``-r
  25`` as an output option inserts no ``fps`` filter). Each decoded frame's time on the
  clip's clock (seconds from the container's start) becomes ``ipts = t * 25``, rounded to
  ``2**-16`` and nudged by ``2**-17`` away from zero (FFmpeg's guard against exact
  midpoints). With ``next`` the next output slot and ``d`` the frame's duration in slots
  (``lrint(25 / fps)`` when that is positive, else ``min(25 / fps, 1)``): ``delta0 = ipts -
  next``, ``delta = delta0 + d``; a frame that starts before ``next`` but ends after it is
  clipped to ``next``; ``delta <= -0.6`` drops the frame; ``delta > 0.6`` places it at
  ``lrint(ipts)`` (a jump leaves empty slots), else at ``next``.
* **The MP3 priming shift.** Pass 1 encodes the audio with libmp3lame (the avi muxer's
  default), whose first packet starts ``priming`` samples (1105) before zero; the muxer
  shifts every stream by that much (``avoid_negative_ts``), the video by ``ceil(priming *
  25 / rate)`` slots (``av_rescale_q_rnd(..., AV_ROUND_UP)``). The audio keeps the priming
  (AVI cannot mark it for skipping): both move later together, up to the rounding.
* **AVI has no timestamps**: a frame's position is its packet count. The muxer writes empty
  packets to fill a jump between two frames, not before the first: the first frame sits at
  position 0 whatever its time, later frames at their slot.
* **Pass 2, constant-rate sync into image2** (``vscfr``: every slot gets an image). Reading
  the AVI, a frame ``delta0`` slots after the next image (``delta = delta0 + 1``) fills a
  gap: ``lrint(delta)`` images when ``delta > 1.1``, the first ``lrint(delta0 - 0.6)`` of
  them repeating the previous frame when ``delta0 > 1.1``, the rest showing the new frame.

That is FFmpeg 4.x to 6.x (``ffmpeg="4-6"``, the default). FFmpeg 7 rewrote this part of
its CLI: pass 1 syncs at a constant rate (``cfr``, or ``vscfr`` for an input without audio)
with each frame lasting its exact ``25 / fps`` slots (dropped when it ends more than 1.1 slots
early, repeated when it lasts over 1.1), and ``-async 1`` no longer pads a late audio stream,
so the priming shifts the video only as far as it reaches before 0 (``ffmpeg="7+"``).

Checked against four ffmpeg CLIs (4.2.2, 5.1, 7.0.2, 9.0.2) on 34 clips each (12 to 100 fps,
constant and variable rate, video or audio starting late, no audio and audio at 8 to 48 kHz,
MKV and MP4, an edit-list cut): ``tests/evaluation/test_syncnet_timing.py`` against the
images the CLIs wrote, recorded in ``tests/evaluation/ffmpeg_cli/`` by
``scripts/reference/record_avi_timing.py``;
4.2.2 and 5.1 agree on every clip, so do 7.0.2 and 9.0.2, and the two pairs differ on 30. On
30 fps input 4-6 keep frames 0-9, then drop one in six (10, 16, 22, ...), 7+ keep 0-11 and
drop 12, 18, ...: content up to two source frames older than the nearest-in-time rule
(:func:`nearest_frames`).
"""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np

#: the images' rate (syncnet_python's ``--frame_rate``, ``-r 25``)
RATE = 25
#: libmp3lame's priming as FFmpeg reports it (``initial_padding``): LAME's encoder delay
#: (576) plus the decoder delay (528 + 1), in samples at the encoded rate
MP3_PRIMING = 1105
#: the ffmpeg CLIs whose run_pipeline output differs: 4.x-6.x (4.2.2 and 5.1 recorded, the
#: same images) and 7.x and later (7.0.2 and 9.0.2 recorded, the same images)
FFMPEG_BEHAVIOURS = ("4-6", "7+")


def check_ffmpeg(ffmpeg: str) -> None:
    """ValueError unless ``ffmpeg`` is one of :data:`FFMPEG_BEHAVIOURS`."""
    if ffmpeg not in FFMPEG_BEHAVIOURS:
        raise ValueError(f"ffmpeg must be one of {list(FFMPEG_BEHAVIOURS)}, got {ffmpeg!r}")


def avi_frame_sources(
    times: np.ndarray | list[float],
    fps: float,
    audio_rate: int | None = None,
    *,
    priming: int = MP3_PRIMING,
    audio_start: float = 0.0,
    ffmpeg: str = "4-6",
) -> np.ndarray:
    """``(M,)`` int64: the source frame each 25 fps image of ``run_pipeline`` shows.

    Args:
        times: ``(N,)`` the clip's frame times in seconds on its container's clock (the
            container's start time subtracted, as the ffmpeg CLI offsets its input), in
            presentation order: :func:`asccl.data.video.frame_times`; ``i / fps`` for a
            frame folder.
        fps: the video stream's frame rate (its header's, as the CLI guesses it).
        audio_rate: the sample rate pass 1 encodes the clip's audio at
            (:class:`~asccl.evaluation.syncnet_audio.AviAudio`'s ``source_rate``); ``None``
            for a clip without audio, or to leave the MP3 priming shift out.
        priming: the audio encoder's leading samples at ``audio_rate``.
        audio_start: where the audio stream starts on the clip's clock, seconds (FFmpeg 7+
            only: 4-6 pad it to 0; 7+ shift the video only as far as the MP3's priming
            reaches before 0).
        ffmpeg: the CLI to follow, one of :data:`FFMPEG_BEHAVIOURS`. ``"7+"``: pass 1 syncs
            at a constant rate (``cfr``; ``vscfr`` for a clip without audio, whose late first
            frame is not repeated) with each frame lasting its exact ``25 / fps`` slots: a
            frame is dropped when it ends more than 1.1 slots before the next slot, repeated
            when it lasts over 1.1 slots, so the AVI has no gaps.
    """
    if not fps > 0:
        raise ValueError(f"fps must be positive, got {fps}")
    if audio_rate is not None and audio_rate <= 0:
        raise ValueError(f"audio_rate must be positive, got {audio_rate}")
    check_ffmpeg(ffmpeg)
    times = np.asarray(times, np.float64)
    if ffmpeg == "4-6":
        slots = _pass1_slots(times, fps)
        lead = Fraction(priming, audio_rate) if audio_rate else Fraction(0)
    else:
        slots = _pass1_slots_cfr(times, fps, repeat_first=audio_rate is not None)
        lead = Fraction(priming, audio_rate) - Fraction(audio_start) if audio_rate else Fraction(0)
    shift = max(0, math.ceil(lead * RATE))  # av_rescale_q_rnd(..., AV_ROUND_UP)
    return _pass2_images(slots, shift)


def nearest_frames(num_frames: int, fps: float) -> np.ndarray:
    """``(M,)`` int64: for each 25 fps image ``k``, the source frame nearest in time,
    ``round(k * fps / 25)`` (FFmpeg's ``fps`` filter, ``round=near``): what the images would
    show at their own times. Not what ``run_pipeline`` feeds SyncNet
    (:func:`avi_frame_sources`); kept for comparison."""
    if fps <= 0:
        raise ValueError(f"fps must be positive, got {fps}")
    count = max(0, math.ceil(num_frames * RATE / fps - 1e-6))
    times = np.arange(count) * (fps / RATE)
    return np.minimum(np.floor(times + 0.5 + 1e-9).astype(np.int64), max(num_frames - 1, 0))


def _ipts(t: float) -> float:
    """A frame time in slots as FFmpeg's fftools compute it: rescaled to 1/(25 * 2**16)
    (nearest, halves away from zero), then nudged 2**-17 away from zero (its guard against
    exact midpoints)."""
    ticks = Fraction(float(t)) * RATE * (1 << 16)
    rounded = math.floor(abs(ticks) + Fraction(1, 2)) * (1 if ticks >= 0 else -1)
    ipts = rounded / (1 << 16)
    return ipts + (math.copysign(2.0**-17, ipts) if ipts else 0.0)


def _lrint(x: float) -> int:
    """C's ``lrint`` in the default rounding mode: nearest, halves to even."""
    return round(x)


def _pass1_slots(times: np.ndarray, fps: float) -> list[tuple[int, int]]:
    """``[(slot, frame)]``: the frames pass 1 keeps and the 25 fps slot each is written at."""
    per_frame = _lrint(RATE / fps)  # the frame's duration, lrintf(pkt_duration / (1/25))
    duration = per_frame if per_frame > 0 else min(RATE / fps, 1.0)
    slots, next_slot = [], 0
    for i, t in enumerate(times):
        ipts = _ipts(t)
        delta0 = ipts - next_slot
        delta = delta0 + duration
        if delta0 < 0 < delta:  # starts before the next slot, ends after it: clipped to it
            ipts = float(next_slot)
        if delta <= -0.6:
            continue
        if delta > 0.6:
            next_slot = _lrint(ipts)
        slots.append((next_slot, i))
        next_slot += 1
    return slots


def _pass1_slots_cfr(times: np.ndarray, fps: float, repeat_first: bool) -> list[tuple[int, int]]:
    """FFmpeg 7+'s pass 1: ``[(slot, frame)]`` at a constant rate, every slot filled (see
    :func:`avi_frame_sources`); ``repeat_first`` False is ``vscfr``: a first frame that
    starts late is placed at its own slot, not repeated back to 0."""
    slots: list[tuple[int, int]] = []
    next_slot, previous = 0, None
    for i, t in enumerate(times):
        duration = RATE / fps
        ipts = _ipts(t)
        delta0 = ipts - next_slot
        delta = delta0 + duration
        if delta0 < 0 < delta:  # clipped to the next slot
            ipts, duration, delta0 = float(next_slot), duration + delta0, 0.0
        if not repeat_first and not slots and delta0 >= 0.5:
            delta, delta0, next_slot = duration, 0.0, _lrint(ipts)
        count, repeats = _cfr_counts(delta0, delta)
        for k in range(count):
            slots.append((next_slot, previous if k < repeats and previous is not None else i))
            next_slot += 1
        previous = i
    return slots


def _cfr_counts(delta0: float, delta: float) -> tuple[int, int]:
    """FFmpeg's constant-rate sync for a frame ``delta0`` slots after the next one and
    ending ``delta`` slots after it: ``(images, of which repeat the previous frame)``."""
    if delta < -1.1:
        return 0, 0
    if delta > 1.1:
        return _lrint(delta), _lrint(delta0 - 0.6) if delta0 > 1.1 else 0
    return 1, 0


def _pass2_images(slots: list[tuple[int, int]], shift: int) -> np.ndarray:
    """Pass 2's images from pass 1's ``slots``, each but the first moved ``shift`` later
    (the first sits at AVI position 0)."""
    images: list[int] = []
    previous = None
    for n, (slot, frame) in enumerate(slots):
        position = 0 if n == 0 else slot + shift
        delta0 = position - len(images)
        delta = delta0 + 1
        count, repeats = _cfr_counts(delta0, delta)  # (clipping a negative delta0 to 0 changes
        # nothing here: only a delta0 over 1.1 repeats)
        images.extend(previous if k < repeats and previous is not None else frame
                      for k in range(count))  # fmt: skip
        previous = frame
    return np.asarray(images, np.int64)
