"""The data model of stage 1: clips, the (neutral, emotional) clip pairs that share a
sentence, and their DTW frame alignment."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

#: The seven emotions ASCCL reports (MEAD without contempt), in the paper's table order.
PAPER_EMOTIONS: tuple[str, ...] = (
    "neutral", "angry", "disgusted", "fear", "happy", "sad", "surprised",
)  # fmt: skip

#: MEAD's eight emotion folder names.
MEAD_EMOTIONS: tuple[str, ...] = (*PAPER_EMOTIONS, "contempt")


@dataclass(frozen=True)
class Clip:
    """One recording: a video and/or its audio track.

    Attributes:
        dataset: ``"mead"`` or ``"ravdess"``.
        speaker: ``"M003"`` (MEAD) or ``"Actor_01"`` (RAVDESS).
        emotion: canonical name (MEAD's folder names; RAVDESS mapped to them, plus ``"calm"``).
        intensity: MEAD level 1-3; RAVDESS 1 (normal) or 2 (strong).
        sentence: sentence id as the dataset writes it (MEAD ``"001"``; RAVDESS
            ``"01"``/``"02"`` statement).
        clip_id: unique within the dataset, e.g. ``"M003/angry/level_3/001"``.
        video, audio: file paths (``None`` when the dataset has no such file).
        fps, num_frames: filled in once the video has been probed.
    """

    dataset: str
    speaker: str
    emotion: str
    intensity: int
    sentence: str
    clip_id: str
    video: Path | None = None
    audio: Path | None = None
    fps: float | None = None
    num_frames: int | None = None


@dataclass(frozen=True)
class ClipPair:
    """A neutral and an emotional clip of the same speaker saying the same sentence."""

    neutral: Clip
    emotional: Clip

    @property
    def speaker(self) -> str:
        return self.neutral.speaker

    @property
    def emotion(self) -> str:
        return self.emotional.emotion

    @property
    def key(self) -> str:
        """The authors' pair key, ``"<neutral sentence>_<emotional sentence>"``."""
        return f"{self.neutral.sentence}_{self.emotional.sentence}"


@dataclass
class AlignedPair:
    """One-to-one frame pairs of a :class:`ClipPair`, from DTW on the two audio tracks.

    ``neutral_frames[t]`` is paired with ``emotional_frames[t]``; both are monotone
    non-decreasing, equally long, and an index may repeat where time was stretched.
    """

    speaker: str
    emotion: str
    neutral_clip: str  #: clip id (or, from the authors' JSON, the sentence id)
    emotional_clip: str
    neutral_frames: np.ndarray  #: (L,) int64
    emotional_frames: np.ndarray  #: (L,) int64
    dtw_cost: float = float("nan")  #: total path cost
    quality: dict[str, float] = field(default_factory=dict)  #: alignment diagnostics

    def __post_init__(self) -> None:
        self.neutral_frames = np.asarray(self.neutral_frames, dtype=np.int64)
        self.emotional_frames = np.asarray(self.emotional_frames, dtype=np.int64)
        if self.neutral_frames.shape != self.emotional_frames.shape:
            raise ValueError(
                f"{self.speaker}/{self.emotion}: frame lists differ in length "
                f"({len(self.neutral_frames)} vs {len(self.emotional_frames)})"
            )

    def __len__(self) -> int:
        return len(self.neutral_frames)
