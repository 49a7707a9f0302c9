"""Deterministic clips for the MP3 round trip of syncnet_python's pipeline
(``scripts/reference/record_avi_audio.py`` records the ffmpeg CLI on them; the tests rebuild them
and compare :func:`asccl.evaluation.syncnet_audio.avi_audio` with the recordings).

Each clip is speech-like noise bursts (a 4 Hz syllable envelope with silent gaps) plus clicks at
:data:`CLICK_TIMES`, seeded, so the same numpy gives the same samples (:func:`signal_digest`)."""

from __future__ import annotations

import hashlib
import wave
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

#: Seconds of the clicks (single-sample impulses) in every clip, on the clip's clock.
CLICK_TIMES = (0.0, 0.37, 0.71)


@dataclass(frozen=True)
class ClipSpec:
    rate: int
    channels: int
    seconds: float
    #: "wav" (s16, wave module), "wav_f32" (PyAV), "mkv_late" (video + audio starting late)
    kind: str = "wav"
    audio_start: float = 0.0  #: the audio stream's start time (mkv_late), s
    seed: int = 0


#: Fixture name -> clip.
CLIPS: dict[str, ClipSpec] = {
    "mono16k": ClipSpec(16000, 1, 1.0, seed=1),
    "stereo44k": ClipSpec(44100, 2, 1.0, seed=2),
    "stereo48k_float": ClipSpec(48000, 2, 1.0, "wav_f32", seed=3),
    "late32k": ClipSpec(32000, 1, 0.88, "mkv_late", audio_start=0.12, seed=4),
    "rate96k": ClipSpec(96000, 1, 0.6, seed=5),
    "rate7k": ClipSpec(7000, 1, 1.0, seed=6),
    "surround48k": ClipSpec(48000, 6, 0.6, seed=7),
}

#: A bundled demo clip (H.264 + AAC 16 kHz mono), recorded as it is.
DEMO_CLIP = "demo_data/MEAD/W901/video/front/neutral/level_1/001.mp4"


def clip_signal(spec: ClipSpec) -> np.ndarray:
    """``(C, S)`` int16: noise bursts under a 4 Hz envelope (silent half the time) + clicks."""
    rng = np.random.default_rng(spec.seed)
    n = round(spec.seconds * spec.rate)
    t = np.arange(n) / spec.rate
    envelope = np.clip(np.sin(2 * np.pi * 4 * t + 0.3), 0, None) ** 2  # (S,)
    x = 0.25 * rng.standard_normal((spec.channels, n)) * envelope
    for i, when in enumerate(CLICK_TIMES):
        k = round((when - spec.audio_start) * spec.rate)
        if 0 <= k < n:
            x[:, k] = 0.9 * (-1) ** (i + np.arange(spec.channels))
    return np.round(np.clip(x, -1, 1) * 32767).astype(np.int16)


def signal_digest(spec: ClipSpec) -> str:
    """SHA-256 of :func:`clip_signal`: the recording and the test must use the same samples."""
    return hashlib.sha256(clip_signal(spec).tobytes()).hexdigest()


def build_clip(name: str, folder: Path) -> Path:
    """Write clip ``name`` of :data:`CLIPS` into ``folder``; its path."""
    spec = CLIPS[name]
    audio = clip_signal(spec)  # (C, S)
    if spec.kind == "wav":
        path = folder / f"{name}.wav"
        with wave.open(str(path), "wb") as w:
            w.setnchannels(spec.channels)
            w.setsampwidth(2)
            w.setframerate(spec.rate)
            w.writeframes(np.ascontiguousarray(audio.T).tobytes())
        return path
    if spec.kind == "wav_f32":
        path = folder / f"{name}.wav"
        with av.open(str(path), "w") as c:
            stream = c.add_stream("pcm_f32le", rate=spec.rate, layout="stereo")
            _mux_audio(c, stream, (audio / 32768.0).astype(np.float32), "fltp", "stereo", 0)
        return path
    path = folder / f"{name}.mkv"  # 64x64 FFV1 video from t = 0, PCM audio from audio_start
    with av.open(str(path), "w") as c:
        video = c.add_stream("ffv1", rate=25)
        video.width = video.height = 64
        video.pix_fmt = "yuv420p"
        sound = c.add_stream("pcm_s16le", rate=spec.rate, layout="mono")
        for i in range(round((spec.seconds + spec.audio_start) * 25)):
            image = np.full((64, 64, 3), 40 + 4 * i, np.uint8)
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            frame.pts, frame.time_base = i, Fraction(1, 25)
            c.mux(video.encode(frame))
        c.mux(video.encode(None))
        start = round(spec.audio_start * spec.rate)
        _mux_audio(c, sound, audio, "s16p", "mono", start)
    return path


def _mux_audio(container, stream, audio: np.ndarray, fmt: str, layout: str, start: int) -> None:
    """Mux planar ``audio`` ``(C, S)`` in 1024-sample frames, the first at ``start`` samples."""
    rate = stream.codec_context.sample_rate
    for k in range(0, audio.shape[1], 1024):
        frame = av.AudioFrame.from_ndarray(
            np.ascontiguousarray(audio[:, k : k + 1024]), format=fmt, layout=layout
        )
        frame.sample_rate, frame.pts, frame.time_base = rate, start + k, Fraction(1, rate)
        container.mux(stream.encode(frame))
    container.mux(stream.encode(None))
