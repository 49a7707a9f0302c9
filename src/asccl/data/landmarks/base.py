"""The backend contract (:class:`LandmarkDetector`, :class:`FaceLandmarker`), the frame
check, and box helpers shared by the backends, the tracker and the evaluation's framing.

Boxes are ``(4,)`` float64 ``(x0, y0, x1, y1)`` in pixels; landmarks ``(68, 2)`` ``(x, y)``.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np

NUM_LANDMARKS = 68


@runtime_checkable
class LandmarkDetector(Protocol):
    """Anything that finds the largest face's 68 landmarks in an RGB frame."""

    def detect(self, frame: np.ndarray) -> np.ndarray | None:
        """``(H, W, 3)`` uint8 RGB -> ``(68, 2)`` float32 ``(x, y)`` pixels, or ``None``."""
        ...


class FaceLandmarker(LandmarkDetector, Protocol):
    """A backend: a detector whose two steps are exposed for :class:`FaceTracker`."""

    def face_box(self, frame: np.ndarray, near: np.ndarray | None = None) -> np.ndarray | None:
        """The largest face's detector box ``(4,)`` float64 ``(x0, y0, x1, y1)``, or ``None``.

        ``near``, a box where the face was a moment ago: the backend may search only around
        it (and answer ``None`` if the face is not there).
        """
        ...

    def fit(self, frame: np.ndarray, box: np.ndarray) -> np.ndarray:
        """``(68, 2)`` float32 landmarks fitted to the face inside detector-style ``box``."""
        ...


def check_frame(frame: np.ndarray) -> np.ndarray:
    """Return ``frame`` if it is an ``(H, W, 3)`` uint8 array, else raise naming what it is."""
    if not isinstance(frame, np.ndarray) or frame.dtype != np.uint8:
        kind = getattr(frame, "dtype", type(frame).__name__)
        raise ValueError(f"frame must be a uint8 numpy array (H, W, 3) RGB, got {kind}")
    if frame.ndim != 3 or frame.shape[2] != 3:
        raise ValueError(f"frame must be (H, W, 3) RGB, got shape {frame.shape}")
    return frame


def largest_box(boxes: np.ndarray, scores: np.ndarray | None = None) -> np.ndarray | None:
    """The row of ``boxes`` ``(K, >=4)`` ``(x0, y0, x1, y1, ...)`` with the largest area.

    With detector ``scores`` ``(K,)``, boxes scoring under half the best score are dropped
    first: dlib's HOG reports weak extra "faces" (score ~0.1 against ~1.5 for a real face,
    on skimage's astronaut) that can be larger than the real one.
    """
    if len(boxes) == 0:
        return None
    boxes = np.asarray(boxes, dtype=np.float64)
    if scores is not None:
        boxes = boxes[scores >= scores.max() / 2]
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    return boxes[int(np.argmax(area)), :4].copy()


def landmark_extent(landmarks: np.ndarray) -> np.ndarray:
    """``(68, 2)`` -> ``(4,)`` float64 ``(x0, y0, x1, y1)``: the points' tight bounding box."""
    pts = np.asarray(landmarks, dtype=np.float64)
    return np.concatenate([pts.min(axis=0), pts.max(axis=0)])


def box_relative_to(box: np.ndarray, extent: np.ndarray) -> np.ndarray:
    """Express ``box`` in the frame of ``extent`` (both ``(x0, y0, x1, y1)``): origin at its
    top-left corner, unit its width/height. Inverse: :func:`box_from_relative`."""
    size = np.maximum(extent[2:] - extent[:2], 1e-6)
    return (np.asarray(box, dtype=np.float64) - np.tile(extent[:2], 2)) / np.tile(size, 2)


def box_from_relative(relative: np.ndarray, extent: np.ndarray) -> np.ndarray:
    """The box that is ``relative`` (from :func:`box_relative_to`) in the frame of ``extent``."""
    size = np.maximum(extent[2:] - extent[:2], 1e-6)
    return np.tile(extent[:2], 2) + relative * np.tile(size, 2)
