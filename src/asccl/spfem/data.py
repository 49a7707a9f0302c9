"""Training data of the reference SPFEM generators: DTW-aligned (neutral, emotional) frames.

One item of :class:`SPFEMFrames` is one frame pair of stage 1's output (``pairs.csv`` +
``crops/``, see :class:`asccl.training.dataset.PairedFrames`, which selects and reads them):
the neutral frame is the generator's source, the emotional frame aligned to it by DTW is
the paired target and, at training time, the reference.

Emotion labels index :data:`EMOTIONS` (MEAD's eight names in the project's canonical order,
neutral first: label 0); :func:`emotion_label` maps a name to its label.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from asccl.data.clips import MEAD_EMOTIONS, AlignedPair
from asccl.data.crop_store import ClipCropsReader, crop_path, open_clip_crops
from asccl.data.errors import DataError
from asccl.data.pair_files import read_pairs_table
from asccl.metric.preprocess import to_metric_input
from asccl.training.dataset import PAIRS_FILE, PairedFrames

__all__ = [
    "EMOTIONS",
    "NEUTRAL",
    "ClipPairFrames",
    "SPFEMFrames",
    "clip_tensors",
    "emotion_label",
    "frames_to_model",
    "normalised_landmarks",
]

#: Emotion names by label (MEAD's, neutral = 0); GANmut's classifier has one logit each.
EMOTIONS: tuple[str, ...] = MEAD_EMOTIONS
NEUTRAL = 0


def emotion_label(name: str) -> int:
    """The label of emotion ``name`` (its index in :data:`EMOTIONS`).

    Raises:
        ValueError: an unknown name (the valid ones are listed).
    """
    try:
        return EMOTIONS.index(name)
    except ValueError:
        raise ValueError(f"unknown emotion {name!r}; valid: {', '.join(EMOTIONS)}") from None


def frames_to_model(frames_uint8: Tensor, size: int) -> Tensor:
    """``(..., 3, S, S)`` uint8 RGB -> ``(..., 3, size, size)`` float32 in [-1, 1] RGB:
    :func:`~asccl.metric.preprocess.to_metric_input` (the one image contract) over any
    leading dimensions. The generators' inputs and the ASCCL source frames share it."""
    if frames_uint8.dtype != torch.uint8:
        raise TypeError(f"expected uint8 frames, got {frames_uint8.dtype}")
    lead, chw = frames_uint8.shape[:-3], frames_uint8.shape[-3:]
    x = to_metric_input(frames_uint8.reshape(-1, *chw), size=size)
    return x.reshape(*lead, *x.shape[1:])


def normalised_landmarks(reader: ClipCropsReader) -> np.ndarray:
    """A store's landmarks as ``(N, 68, 2)`` float32 in [0, 1] crop coordinates
    (``pixels / S``); frames without landmarks get the clip's mean (0.5 if it has none)."""
    landmarks = np.asarray(reader.landmarks, np.float32) / np.float32(reader.size)
    missing = np.isnan(landmarks).any(axis=(1, 2))
    if missing.all():
        return np.full_like(landmarks, 0.5)
    if missing.any():
        landmarks[missing] = landmarks[~missing].mean(axis=0)
    return landmarks


def clip_tensors(reader: ClipCropsReader, size: int) -> tuple[Tensor, Tensor]:
    """A whole stored clip as generator input: frames ``(N, 3, size, size)`` float32 in
    [-1, 1] RGB and landmarks ``(N, 68, 2)`` float32 in [0, 1] (see
    :func:`normalised_landmarks`)."""
    frames = torch.from_numpy(reader.read_all().frames).permute(0, 3, 1, 2)
    return frames_to_model(frames, size), torch.from_numpy(normalised_landmarks(reader))


@dataclass(frozen=True)
class ClipPairFrames:
    """One aligned (neutral, emotional) clip pair, for translating a whole neutral clip.

    ``neutral_frames[t]`` is DTW-paired with ``emotional_frames[t]`` (frame indices into the
    two crop stores, every index of the alignment, faces or not).
    """

    speaker: str
    emotion: str  #: the emotional clip's emotion (the target)
    neutral_clip: str
    emotional_clip: str
    neutral_frames: np.ndarray  #: (L,) int64
    emotional_frames: np.ndarray  #: (L,) int64

    @property
    def sentence(self) -> str:
        """The neutral clip's last id component (MEAD: ``"001"``)."""
        return self.neutral_clip.rsplit("/", 1)[-1]

    @property
    def target_label(self) -> int:
        return emotion_label(self.emotion)

    def reference_index(self, num_frames: int) -> np.ndarray:
        """``(num_frames,)``: the emotional frame aligned to each neutral frame ``0..n-1``
        (first DTW match; frames past the alignment take its last)."""
        at = np.searchsorted(self.neutral_frames, np.arange(num_frames))
        return self.emotional_frames[np.clip(at, 0, len(self.emotional_frames) - 1)]


class SPFEMFrames(PairedFrames):
    """Every DTW frame pair (neutral, emotional) with a face in both, as generator batches.

    Item ``i`` is a dict of tensors (the default collate stacks them):

    - ``"image"``, ``"source"``: the neutral frame (the same tensor), ``(3, S, S)`` float32
      in [-1, 1] RGB, ``S = image_size``;
    - ``"target"``, ``"reference"``: the aligned emotional frame (the same tensor), likewise;
    - ``"emotion"``: int64 label of the source (neutral, 0); ``"target_emotion"``: int64
      label of the emotional clip (:func:`emotion_label`);
    - ``"source_landmarks"``, ``"target_landmarks"``: ``(68, 2)`` float32, ``(x, y)`` in
      [0, 1] crop coordinates, NaN-free (a missing frame's are its clip's mean).

    Args:
        data_dir: a stage-1 ``out`` folder (``pairs.csv`` + ``crops/``).
        image_size: side of the returned images (crops are resized); ``None``: the crop size.
        speakers, exclude_speakers, emotions, crop_format, cache_size: as
            :class:`~asccl.training.dataset.PairedFrames`.

    Raises:
        DataError: what :class:`PairedFrames` raises, or an emotion outside :data:`EMOTIONS`.
    """

    def __init__(
        self,
        data_dir: str | os.PathLike,
        *,
        image_size: int | None = None,
        speakers: list[str] | None = None,
        exclude_speakers: tuple[str, ...] | list[str] = (),
        emotions: list[str] | None = None,
        crop_format: str = "jpeg",
        cache_size: int = 64,
    ) -> None:
        super().__init__(
            data_dir,
            speakers=speakers,
            exclude_speakers=list(exclude_speakers),
            emotions=emotions,
            crop_format=crop_format,
            cache_size=cache_size,
        )
        unknown = sorted(set(self.emotions()) - set(EMOTIONS))
        if unknown:
            raise DataError(
                self.data_dir,
                f"emotion(s) {', '.join(unknown)} have no SPFEM label; valid: "
                f"{', '.join(EMOTIONS)} (select the others with emotions=)",
            )
        if image_size is not None and image_size < 8:
            raise ValueError(f"image_size must be >= 8, got {image_size}")
        self.image_size = int(image_size or self.size)
        self._target_labels = np.array([emotion_label(e) for e in self._pair_emotion], np.int64)
        self._landmarks: dict[str, np.ndarray] = {}

    def __getitem__(self, i: int) -> dict[str, Tensor]:  # type: ignore[override]
        neutral, emotional = super().__getitem__(i)
        pair = int(self._items[i, 0])
        neutral_clip, neutral_frame, emotional_clip, emotional_frame = self.frame_pair(i)
        source = frames_to_model(neutral, self.image_size)
        target = frames_to_model(emotional, self.image_size)
        return {
            "image": source,
            "source": source,
            "target": target,
            "reference": target,
            "emotion": torch.tensor(NEUTRAL, dtype=torch.int64),
            "target_emotion": torch.tensor(self._target_labels[pair]),
            "source_landmarks": torch.from_numpy(self._clip_landmarks(neutral_clip)[neutral_frame]),
            "target_landmarks": torch.from_numpy(
                self._clip_landmarks(emotional_clip)[emotional_frame]
            ),
        }

    def _clip_landmarks(self, clip: str) -> np.ndarray:
        """``(N, 68, 2)`` normalised landmarks of ``clip``, cached per process."""
        landmarks = self._landmarks.get(clip)
        if landmarks is None:
            landmarks = normalised_landmarks(self._reader(clip))
            self._landmarks[clip] = landmarks
        return landmarks

    def first_item_per_emotion(self) -> list[int]:
        """The index of the first item of each target emotion, in label order."""
        labels = self._target_labels[self._items[:, 0]]
        return [int(np.flatnonzero(labels == label)[0]) for label in np.unique(labels)]

    def clip_pairs(self) -> list[ClipPairFrames]:
        """The aligned clip pairs these items come from, in ``pairs.csv`` order: a whole
        neutral clip and its alignment to each emotional clip of the same sentence."""
        kept = {(self._clip_ids[a], self._clip_ids[b]) for a, b in self._pair_clips.tolist()}
        pairs: list[AlignedPair] = read_pairs_table(self.data_dir / PAIRS_FILE)
        return [
            ClipPairFrames(
                p.speaker,
                p.emotion,
                p.neutral_clip,
                p.emotional_clip,
                p.neutral_frames,
                p.emotional_frames,
            )
            for p in pairs
            if (p.neutral_clip, p.emotional_clip) in kept
        ]

    def read_clip(self, clip_id: str) -> tuple[Tensor, Tensor]:
        """A whole clip: frames ``(N, 3, S, S)`` in [-1, 1] and landmarks ``(N, 68, 2)`` in
        [0, 1] (:func:`clip_tensors` at this dataset's ``image_size``)."""
        path = crop_path(self.data_dir, clip_id, self.crop_format)
        return clip_tensors(open_clip_crops(path), self.image_size)

    def __getstate__(self) -> dict:
        state = super().__getstate__()
        state["_landmarks"] = {}
        return state
