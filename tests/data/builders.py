"""Media files for the data tests, built at test time: a WAV of a known length and a small
video of flat grey frames."""

from __future__ import annotations

import wave
from pathlib import Path

import numpy as np


def write_wav(path: Path, seconds: float, rate: int = 16000) -> Path:
    """A mono 16-bit WAV of exactly ``round(seconds * rate)`` samples of a quiet 220 Hz tone
    (a WAV declares its length to the sample; FFmpeg reads the content, so it may stand
    under another name, e.g. MEAD's ``.m4a``). Makes the parent folders; returns ``path``."""
    n = round(seconds * rate)
    samples = (3000 * np.sin(2 * np.pi * 220 * np.arange(n) / rate)).astype(np.int16)
    path.parent.mkdir(parents=True, exist_ok=True)
    with wave.open(str(path), "wb") as handle:
        handle.setnchannels(1)
        handle.setsampwidth(2)
        handle.setframerate(rate)
        handle.writeframes(samples.tobytes())
    return path


def write_grey_video(path: Path, frames: int, fps: float) -> Path:
    """A 32x32 video of ``frames`` flat frames (frame ``i`` at grey ``8 * (i % 30)``) at
    ``fps``. Makes the parent folders; returns ``path``."""
    from asccl.data.video import write_video

    path.parent.mkdir(parents=True, exist_ok=True)
    images = [np.full((32, 32, 3), 8 * (i % 30), np.uint8) for i in range(frames)]
    write_video(path, images, fps=fps, preset="ultrafast")
    return path
