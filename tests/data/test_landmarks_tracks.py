"""FaceTracker keeps the person it tracks: re-detection prefers the face that continues the
track over a larger one elsewhere, holds a lost track ``hold`` frames, and numbers tracks."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from asccl.data.landmarks import FaceTracker

H, W = 120, 200
TEXTURE = np.random.default_rng(0).integers(150, 256, (64, 64, 3), np.uint8)


def scene(faces: list[tuple[int, int, int]]) -> np.ndarray:
    """Black ``(H, W, 3)`` frame with textured square "faces" ``(x0, y0, side)``."""
    frame = np.zeros((H, W, 3), np.uint8)
    for x0, y0, side in faces:
        frame[y0 : y0 + side, x0 : x0 + side] = cv2.resize(TEXTURE, (side, side))
    return frame


class BlobLandmarker:
    """Fake backend on :func:`scene` frames: a face is a bright blob; ``face_box`` answers
    the largest (among those centred in ``near``'s window twice its size if ``uses_near``,
    like dlib; FAN ignores ``near``); ``fit`` spreads 68 points over the bright pixels in
    the box (over the box if there are none). ``calls`` logs the searches."""

    def __init__(self, uses_near: bool) -> None:
        self.uses_near, self.calls = uses_near, []

    def face_box(self, frame, near=None):
        self.calls.append("full" if near is None else "near")
        n, _, stats, _ = cv2.connectedComponentsWithStats((frame[..., 0] > 128).astype(np.uint8))
        boxes = [np.array([x, y, x + w, y + h], float) for x, y, w, h, _ in stats[1:n]]
        if near is not None and self.uses_near:
            centre, side = (near[:2] + near[2:]) / 2, np.sqrt(np.prod(near[2:] - near[:2]))
            boxes = [b for b in boxes if np.abs((b[:2] + b[2:]) / 2 - centre).max() <= side]
        if not boxes:
            return None
        return max(boxes, key=lambda b: (b[2] - b[0]) * (b[3] - b[1]))

    def fit(self, frame, box):
        x0, y0, x1, y1 = (round(float(v)) for v in box)
        ys, xs = np.nonzero(frame[max(y0, 0) : y1, max(x0, 0) : x1, 0] > 128)
        if len(xs):
            left, top = max(x0, 0), max(y0, 0)
            x0, y0, x1, y1 = left + xs.min(), top + ys.min(), left + xs.max(), top + ys.max()
        t = np.linspace(0, 1, 68)
        return np.stack([x0 + (x1 - x0) * t, y0 + (y1 - y0) * (0.5 + np.sin(7 * t) / 2)], 1).astype(
            np.float32
        )


A, B_SMALL, B_LARGE = (20, 40, 40), (120, 36, 32), (120, 30, 56)


def a_centre(landmarks: np.ndarray) -> bool:
    """Whether ``landmarks`` lie on face A (x 20..60)."""
    return landmarks is not None and 20 <= landmarks[:, 0].mean() <= 60


def test_continues_track_rule():
    from asccl.data.landmarks.tracker import continues_track

    last = np.array([100.0, 100.0, 140.0, 140.0])  # size 40: continues within 20 px
    right = np.array([1.0, 0.0, 1.0, 0.0])
    assert continues_track(last, last)
    assert continues_track(last + 20 * right, last)
    assert not continues_track(last + 21 * right, last)
    assert not continues_track(last + 40 * right, last)  # the face beside it
    assert continues_track(last + 40 * right, last, max_shift=1.0)


@pytest.mark.parametrize("uses_near", [True, False])
def test_redetection_keeps_the_tracked_face_across_a_hidden_frame(uses_near):
    # A is the larger face at first (so the track starts on it); from frame 1 on, B is
    # larger; A is hidden in frame 3. The old tracker took B (the largest) at frame 3 and
    # tracked B to the end.
    backend = BlobLandmarker(uses_near)
    tracker = FaceTracker(backend, detect_every=100)
    frames = [scene([A, B_SMALL])] + [scene([A, B_LARGE])] * 5
    frames[3] = scene([B_LARGE])
    found = [tracker.detect(f) for f in frames]
    assert found[3] is None  # only another face: missed, not taken
    assert all(a_centre(found[t]) for t in (0, 1, 2, 4, 5))
    assert tracker.track == 0 and tracker.stats["missed"] == 1
    if not uses_near:  # B answered every search but the window around A's last box
        assert backend.calls[-3:] == ["full", "near", "full"]


def test_a_long_loss_starts_a_new_track():
    tracker = FaceTracker(BlobLandmarker(True), detect_every=100, hold=2)
    assert a_centre(tracker.detect(scene([A, B_SMALL])))
    assert tracker.track == 0
    only_b = scene([B_LARGE])
    assert tracker.detect(only_b) is None and tracker.detect(only_b) is None  # held 2 frames
    taken = tracker.detect(only_b)  # hold over: the largest face, a new track
    assert taken is not None and taken[:, 0].mean() > 120 and tracker.track == 1
    assert not a_centre(tracker.detect(scene([A, B_LARGE])))  # B's track now holds


def test_hold_zero_takes_the_largest_face_at_once():
    tracker = FaceTracker(BlobLandmarker(True), detect_every=100, hold=0)
    assert a_centre(tracker.detect(scene([A, B_SMALL])))
    taken = tracker.detect(scene([B_LARGE]))
    assert taken is not None and taken[:, 0].mean() > 120 and tracker.track == 1
    with pytest.raises(ValueError, match="hold"):
        FaceTracker(BlobLandmarker(True), hold=-1)
