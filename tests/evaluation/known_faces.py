"""A landmark backend for tests that knows the 68 landmarks of every frame it will see, and
the fakes the ground-truth tests build their folders from."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from asccl.data.landmarks import landmark_extent


class KnownFaces:
    """Looks frames up by content; the face box is the landmarks' extent grown by
    ``margin`` = (left, top, right, bottom) pixels (negative: outwards)."""

    def __init__(self, margin: tuple[int, int, int, int] = (-10, -30, 10, 10)) -> None:
        self.by_frame: dict[bytes, np.ndarray] = {}
        self.margin = np.array(margin)

    def add(self, frame: np.ndarray, landmarks: np.ndarray) -> None:
        self.by_frame[frame.tobytes()] = landmarks.astype(np.float32)

    def face_box(self, frame, near=None):
        lm = self.by_frame.get(frame.tobytes())
        return None if lm is None else landmark_extent(lm) + self.margin

    def fit(self, frame, box):
        return self.by_frame[frame.tobytes()]

    def detect(self, frame):
        return self.by_frame.get(frame.tobytes())


def random_face(rng: np.random.Generator, iod: float) -> np.ndarray:
    """``(68, 2)`` points in [10, 38] px with the outer eye corners (36, 45) ``iod`` px apart
    on one row (so the inter-ocular distance is exactly ``iod``)."""
    pts = rng.uniform(10, 38, (68, 2))
    pts[36], pts[45] = (14.0, 18.0), (14.0 + iod, 18.0)
    return pts


def save_frames(folder: Path, frames: np.ndarray) -> None:
    """``(T, H, W, 3)`` uint8 frames as a frame folder ``000.png``, ``001.png``, ..."""
    folder.mkdir(parents=True)
    for i, frame in enumerate(frames):
        Image.fromarray(frame).save(folder / f"{i:03d}.png")
