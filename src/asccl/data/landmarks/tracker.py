"""Video tracking: :class:`FaceTracker` runs a backend's detector every K frames and fits
the landmarks inside the previous frame's face in between; the checks that say the track
is lost (:func:`track_lost`, :func:`patch_similarity` of :func:`face_patch` grey patches).
"""

from __future__ import annotations

import numpy as np

from asccl.data.landmarks.base import (
    FaceLandmarker,
    box_from_relative,
    box_relative_to,
    check_frame,
    landmark_extent,
)
from asccl.data.opencv import cv2


def track_lost(
    previous: np.ndarray,
    current: np.ndarray,
    frame_size: tuple[int, int],
    *,
    max_shift: float = 0.25,
    max_scale_change: float = 0.25,
    min_size: float = 8.0,
) -> bool:
    """Whether landmarks fitted by tracking look wrong next to the previous frame's.

    Lost when the centre moved more than ``max_shift`` x the previous face size, the size
    (geometric mean of the extent's width and height) changed by more than a factor
    ``1 + max_scale_change``, the points collapsed below ``min_size`` pixels, or the centre
    left the frame. ``frame_size`` is ``(width, height)``.
    """
    prev, cur = landmark_extent(previous), landmark_extent(current)
    prev_size = float(np.sqrt(np.prod(np.maximum(prev[2:] - prev[:2], 1e-6))))
    cur_size = float(np.sqrt(np.prod(np.maximum(cur[2:] - cur[:2], 1e-6))))
    centre = (cur[:2] + cur[2:]) / 2
    shift = float(np.linalg.norm(centre - (prev[:2] + prev[2:]) / 2))
    ratio = cur_size / prev_size
    return bool(
        cur_size < min_size
        or shift > max_shift * prev_size
        or not 1 / (1 + max_scale_change) <= ratio <= 1 + max_scale_change
        or not (0 <= centre[0] < frame_size[0] and 0 <= centre[1] < frame_size[1])
    )


def face_patch(frame: np.ndarray, landmarks: np.ndarray, size: int = 32) -> np.ndarray:
    """``(size, size)`` float32 grey patch of the landmarks' extent (clipped to the frame)."""
    h, w = frame.shape[:2]
    x0, y0, x1, y1 = landmark_extent(landmarks)
    x0, y0 = max(0, int(x0)), max(0, int(y0))
    x1, y1 = min(w, int(np.ceil(x1)) + 1), min(h, int(np.ceil(y1)) + 1)
    if x1 - x0 < 2 or y1 - y0 < 2:
        return np.zeros((size, size), np.float32)
    step = max(1, min(x1 - x0, y1 - y0) // (2 * size))  # subsample first: ~20x cheaper
    region = frame[y0:y1:step, x0:x1:step]
    patch = cv2.resize(region, (size, size), interpolation=cv2.INTER_AREA)
    return cv2.cvtColor(patch, cv2.COLOR_RGB2GRAY).astype(np.float32)


def patch_similarity(a: np.ndarray, b: np.ndarray) -> float:
    """Normalised cross-correlation of two equally shaped patches, in [-1, 1]; 0 if flat."""
    a = a - a.mean()
    b = b - b.mean()
    norm = float(np.sqrt((a * a).sum() * (b * b).sum()))
    return float((a * b).sum() / norm) if norm > 1e-6 else 0.0


class FaceTracker:
    """A stateful :class:`LandmarkDetector` for the frames of one video, in order.

    Runs the backend's face detector on the first frame, every ``detect_every`` frames, and
    whenever tracking looks lost (near the tracked face first, on the whole frame if it is
    not there: a larger face appearing elsewhere is not noticed while the track holds); on
    the other frames it only fits the landmarks inside a
    box derived from the previous frame's landmarks (the detector box, kept relative to the
    landmarks' extent as measured on the last detection frame). Tracking is lost when
    :func:`track_lost` says so or when the face patch no longer resembles the one at the
    last detection (:func:`patch_similarity` below ``min_similarity``), e.g. the face left.

    Call :meth:`reset` before the frames of another video. :attr:`stats` counts frames by
    outcome: ``detected`` (detector ran and found a face), ``tracked``, ``lost`` (tracking
    rejected, detector re-ran), ``missed`` (detector found no face).
    """

    def __init__(
        self,
        landmarker: FaceLandmarker,
        *,
        detect_every: int = 10,
        max_shift: float = 0.25,
        max_scale_change: float = 0.25,
        min_similarity: float = 0.5,
    ) -> None:
        if detect_every < 1:
            raise ValueError(f"detect_every must be >= 1, got {detect_every}")
        self.landmarker = landmarker
        self.detect_every = detect_every
        self.max_shift = max_shift
        self.max_scale_change = max_scale_change
        self.min_similarity = min_similarity
        self.stats = {"detected": 0, "tracked": 0, "lost": 0, "missed": 0}
        self.reset()

    def reset(self) -> None:
        """Forget the face: the next frame runs the detector."""
        self._since_detect = 0
        self._previous: np.ndarray | None = None
        self._relative_box: np.ndarray | None = None
        self._template: np.ndarray | None = None

    def detect(self, frame: np.ndarray) -> np.ndarray | None:
        check_frame(frame)
        if self._previous is not None and self._since_detect < self.detect_every:
            tracked = self._track(frame)
            if tracked is not None:
                self._since_detect += 1
                self._previous = tracked
                self.stats["tracked"] += 1
                return tracked
            self.stats["lost"] += 1
        return self._detect(frame)

    def _track(self, frame: np.ndarray) -> np.ndarray | None:
        box = box_from_relative(self._relative_box, landmark_extent(self._previous))
        landmarks = self.landmarker.fit(frame, box)
        h, w = frame.shape[:2]
        if track_lost(
            self._previous,
            landmarks,
            (w, h),
            max_shift=self.max_shift,
            max_scale_change=self.max_scale_change,
        ):
            return None
        if patch_similarity(self._template, face_patch(frame, landmarks)) < self.min_similarity:
            return None
        return landmarks

    def _detect(self, frame: np.ndarray) -> np.ndarray | None:
        self._since_detect = 1
        box = None
        if self._previous is not None:  # look where the face was first, then everywhere
            near = box_from_relative(self._relative_box, landmark_extent(self._previous))
            box = self.landmarker.face_box(frame, near=near)
        if box is None:
            box = self.landmarker.face_box(frame)
        if box is None:
            self._previous = None
            self.stats["missed"] += 1
            return None
        landmarks = self.landmarker.fit(frame, box)
        self._relative_box = box_relative_to(box, landmark_extent(landmarks))
        self._template = face_patch(frame, landmarks)
        self._previous = landmarks
        self.stats["detected"] += 1
        return landmarks
