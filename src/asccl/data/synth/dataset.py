"""What the synthetic MEAD holds: speakers, clips, file names, and each clip's rendering.

Every clip is a pure function of (settings, speaker, emotion, level, sentence): its audio
draws from ``default_rng([seed, speaker, emotion, level, sentence, 0])``, its head motion,
blinks and expression wobble from ``[..., 1]``. The ground truth of a neutral clip for a
target emotion reuses that neutral clip's audio and motion draws and changes only the
expression, so for the target ``neutral`` it is the neutral clip itself.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from asccl.data.clips import PAPER_EMOTIONS
from asccl.data.synth.config import SynthConfig
from asccl.data.synth.faces import (
    LOOKS,
    Face,
    astronaut_face,
    astronaut_landmarks,
    procedural_face,
    random_look,
    scaled_face,
    template_shape,
)
from asccl.data.synth.render import render_clip
from asccl.data.synth.speech import (
    SAMPLE_RATE,
    articulation,
    num_frames,
    sentence_units,
    speaker_voice,
    synthesize,
)

#: Which (emotion, level) folders each speaker gets: neutral at level 1, the six others at
#: level 3 (the authors pair these), and happy also at level 1 (a clip pairing must ignore).
CLIPS: tuple[tuple[str, int], ...] = (
    ("neutral", 1), *((e, 3) for e in PAPER_EMOTIONS[1:]), ("happy", 1),
)  # fmt: skip
NEUTRAL_LEVEL, EMOTIONAL_LEVEL = 1, 3


@dataclass(frozen=True)
class Clip:
    """One training clip: speaker index, emotion, MEAD level, sentence index (0-based)."""

    speaker: int
    emotion: str
    level: int
    sentence: int


def speaker_name(index: int) -> str:
    """MEAD-style id outside MEAD's real ones (M003..M042, W009..W040): W901, M902, ..."""
    return f"{'W' if index % 2 == 0 else 'M'}{901 + index}"


def sentence_id(emotion: str, k: int, sentences: int) -> str:
    """MEAD's file number of the k-th (0-based) sentence: ``disgusted`` numbers the first
    three ``028``-``030`` when a speaker has three or more (then the pairing finds ``030``
    and maps 001->028 ...), every other clip ``k + 1``."""
    shifted = emotion == "disgusted" and sentences >= 3 and k < 3
    return f"{28 + k if shifted else k + 1:03d}"


def clip_paths(out: Path, clip: Clip, sentences: int) -> dict[str, Path]:
    """The files of a training clip: ``video`` (mp4), ``audio`` (m4a) and ``landmarks``."""
    name, sid = speaker_name(clip.speaker), sentence_id(clip.emotion, clip.sentence, sentences)
    tail = Path(clip.emotion, f"level_{clip.level}")
    return {
        "video": out / "MEAD" / name / "video" / "front" / tail / f"{sid}.mp4",
        "audio": out / "MEAD" / name / "audio" / tail / f"{sid}.m4a",
        "landmarks": out / "landmarks" / name / tail / f"{sid}.npy",
    }


def ground_truth_name(speaker: int, k: int) -> str:
    """The evaluation layout's clip name of neutral sentence k: ``W901_001``."""
    return f"{speaker_name(speaker)}_{k + 1:03d}"


def ground_truth_paths(out: Path, speaker: int, k: int, target: str) -> dict[str, Path]:
    """The ground truth files: ``video`` (mp4 with the neutral audio) and ``landmarks``."""
    stem = out / "ground_truth" / target / ground_truth_name(speaker, k)
    return {"video": stem.with_suffix(".mp4"), "landmarks": Path(f"{stem}.landmarks.npy")}


def all_clips(config: SynthConfig) -> list[Clip]:
    """Every training clip of ``config``, speaker by speaker."""
    return [Clip(s, e, lvl, k) for s in range(config.speakers) for e, lvl in CLIPS
            for k in range(config.sentences)]  # fmt: skip


@lru_cache(maxsize=8)
def speaker_face(index: int, size: int) -> Face:
    """Speaker ``index``'s face for ``size``-pixel frames: the astronaut (0), the demo's
    drawn M902 and W903 (1, 2), a procedural identity beyond."""
    pts = _astronaut_landmarks()
    if index == 0:
        face = astronaut_face(pts)
        factor = size / face.crop
        return scaled_face(face, factor) if factor < 0.8 else face
    name = speaker_name(index)
    look = LOOKS.get(name) or random_look(index, female=name.startswith("W"))
    return procedural_face(look, template_shape(pts), size)


@lru_cache(maxsize=1)
def _astronaut_landmarks() -> np.ndarray:
    return astronaut_landmarks()


def _rng(config: SynthConfig, clip: Clip, stream: int) -> np.random.Generator:
    e = PAPER_EMOTIONS.index(clip.emotion)
    return np.random.default_rng([config.seed, clip.speaker, e, clip.level, clip.sentence, stream])


def clip_audio(config: SynthConfig, clip: Clip) -> np.ndarray:
    """The clip's speech: float32 mono at 16 kHz, (samples,)."""
    voice = speaker_voice(clip.speaker, female=speaker_name(clip.speaker).startswith("W"))
    units = sentence_units(clip.sentence, config.duration)
    return synthesize(units, voice, clip.emotion, clip.level, _rng(config, clip, 0))


def synth_clip(
    config: SynthConfig, clip: Clip, expression: str | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A clip's frames (n, size, size, 3) uint8, landmarks (n, 68, 2) float32 (pixels of the
    frames) and audio (samples,) float32. ``expression``: render the clip's speech, timeline
    and motion with this emotion's expression at level 3 instead (the ground truth)."""
    with _one_thread():
        return _render(config, clip, expression)


def _render(
    config: SynthConfig, clip: Clip, expression: str | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    audio = clip_audio(config, clip)
    n = num_frames(len(audio), SAMPLE_RATE, config.fps)
    track, width = articulation(audio, n, SAMPLE_RATE, config.fps)
    emotion, level = clip.emotion, clip.level
    if expression is not None and expression != clip.emotion:
        emotion, level = expression, EMOTIONAL_LEVEL
    face = speaker_face(clip.speaker, config.size)
    frames, marks = render_clip(face, track, width, emotion, level, _rng(config, clip, 1),
                                size=config.size, fps=config.fps)  # fmt: skip
    return frames, marks.astype(np.float32), audio


def _one_thread() -> contextlib.AbstractContextManager:
    """BLAS on one thread: the many small solves and products of the warp run 20x slower
    with a thread pool on a busy machine, and one thread keeps the sums' order fixed."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - installed with the data extra (librosa)
        return contextlib.nullcontext()
    return threadpool_limits(1)


def render_ground_truth(
    config: SynthConfig, speaker: int, k: int, target: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The ground truth of speaker's neutral sentence ``k`` for ``target``: the neutral
    clip's audio, timeline, mouth and motion with the target's expression (level 3).
    Returns (frames, landmarks, audio) as :func:`synth_clip`."""
    if target not in PAPER_EMOTIONS:
        raise ValueError(f"unknown target emotion {target!r}; valid: {PAPER_EMOTIONS}")
    return synth_clip(config, Clip(speaker, "neutral", NEUTRAL_LEVEL, k), expression=target)
