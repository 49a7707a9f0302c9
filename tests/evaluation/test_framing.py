"""Face framing for the evaluation networks (asccl.evaluation.framing): insightface's 5-point
alignment, syncnet_python's crop, FFmpeg's 25 fps rule, and the whole path through the
extractors (a full frame with the face off-centre scores as the same face pre-cropped)."""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from tests.evaluation.known_faces import KnownFaces
from tests.evaluation.random_weights import save_random_evaluators

from asccl.evaluation.config import EvalConfig
from asccl.evaluation.features import Extractors, paired_features
from asccl.evaluation.framing import (
    ARCFACE_DST,
    SYNCNET_PAD_VALUE,
    FaceTrack,
    align_face,
    bridge_boxes,
    five_points,
    make_tracker,
    similarity_transform,
    syncnet_boxes,
    syncnet_crop,
    syncnet_input,
    track_faces,
    track_span,
)
from asccl.evaluation.identity import cosine_similarities
from asccl.evaluation.syncnet_timing import nearest_frames

MEAD = Path(__file__).resolve().parents[2] / "demo_data" / "MEAD" / "W901"


def _landmarks(rng: np.random.Generator, centre=(0.0, 0.0), scale=1.0, angle=0.0) -> np.ndarray:
    """68 plausible points: a unit face layout rotated, scaled and moved, plus noise."""
    t = np.linspace(0, np.pi, 17)
    jaw = np.stack([-np.cos(t), 0.2 + 0.8 * np.sin(t)], 1)
    brows = np.stack([np.linspace(-0.8, 0.8, 10), np.full(10, -0.45)], 1)
    nose = np.stack([np.zeros(9), np.linspace(-0.3, 0.15, 9)], 1)
    eye = np.stack([np.cos(np.linspace(0, 2 * np.pi, 6, endpoint=False)) * 0.15,
                    np.sin(np.linspace(0, 2 * np.pi, 6, endpoint=False)) * 0.06], 1)  # fmt: skip
    eyes = np.concatenate([eye + np.array([-0.4, -0.25]), eye + np.array([0.4, -0.25])])
    angles = np.linspace(np.pi, 3 * np.pi, 20, endpoint=False)
    mouth = np.stack([np.cos(angles) * 0.35, 0.45 + np.sin(angles) * 0.1], 1)
    pts = np.concatenate([jaw, brows, nose, eyes, mouth]) + rng.normal(0, 0.01, (68, 2))
    c, s = math.cos(angle), math.sin(angle)
    return (pts @ np.array([[c, s], [-s, c]])) * scale + np.asarray(centre)


# ------------------------------------------------------------------- ArcFace: 5-point alignment


def test_five_points_are_the_eye_centres_nose_tip_and_mouth_corners():
    pts = np.arange(136, dtype=np.float64).reshape(68, 2)
    five = five_points(pts)
    assert np.array_equal(five[0], pts[36:42].mean(0)) and np.array_equal(
        five[1], pts[42:48].mean(0)
    )
    assert np.array_equal(five[2:], pts[[30, 48, 54]])


def test_an_exact_similarity_lands_the_five_points_on_the_template():
    """Points made by a known similarity from the template are mapped back onto it: the
    error is float64 rounding (~1e-13 px on coordinates of ~100 px), asserted < 1e-6 px."""
    rng = np.random.default_rng(0)
    for _ in range(20):
        scale, angle = rng.uniform(0.5, 6), rng.uniform(-0.6, 0.6)
        c, s = math.cos(angle), math.sin(angle)
        rot = scale * np.array([[c, -s], [s, c]])
        src = ARCFACE_DST @ rot.T + rng.uniform(-500, 1500, 2)
        m = similarity_transform(src, ARCFACE_DST)
        mapped = src @ m[:, :2].T + m[:, 2]
        assert np.abs(mapped - ARCFACE_DST).max() < 1e-6


def test_umeyama_agrees_with_skimage_on_noisy_points():
    """Least-squares fit of noisy points: skimage's SimilarityTransform (the estimator
    insightface's norm_crop calls) gives the same matrix to float64 rounding."""
    transform = pytest.importorskip("skimage.transform")
    rng = np.random.default_rng(1)
    for _ in range(10):
        src = five_points(_landmarks(rng, rng.uniform(100, 900, 2), rng.uniform(40, 300),
                                     rng.uniform(-0.5, 0.5)))  # fmt: skip
        ref = transform.SimilarityTransform()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # estimate(): what insightface calls
            ref.estimate(src, ARCFACE_DST)
        assert np.abs(similarity_transform(src, ARCFACE_DST) - ref.params[:2]).max() < 1e-9


def test_aligned_face_puts_the_five_points_where_the_template_says():
    """A frame with a bright dot at each of the 5 (mapped) points: after align_face the dots'
    intensity centroids sit on arcface_dst. Bilinear sampling of a 5x5 dot keeps its centroid
    to within ~0.05 px; asserted < 0.1 px."""
    rng = np.random.default_rng(2)
    lm = _landmarks(rng, (700.0, 420.0), 180.0, 0.2)
    m = similarity_transform(five_points(lm), ARCFACE_DST)
    inv = np.linalg.inv(np.vstack([m, [0, 0, 1]]))
    yy, xx = np.mgrid[0:112, 0:112]
    import cv2

    # Gaussian dots drawn at the template points of an aligned image, mapped into a 1080p frame
    canvas = np.zeros((112, 112), np.float32)
    for x, y in ARCFACE_DST:
        canvas += np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / 2.0).astype(np.float32)
    big = cv2.warpAffine((canvas * 255).astype(np.uint8), inv[:2], (1920, 1080),
                         flags=cv2.INTER_LINEAR)  # fmt: skip
    frame = np.repeat(big[..., None], 3, 2)
    aligned = align_face(frame, lm)[..., 0].astype(np.float64)
    for x, y in ARCFACE_DST:
        x0, y0 = round(x), round(y)
        patch = aligned[y0 - 4 : y0 + 5, x0 - 4 : x0 + 5]
        py, px = np.mgrid[y0 - 4 : y0 + 5, x0 - 4 : x0 + 5]
        centroid = np.array([(patch * px).sum(), (patch * py).sum()]) / patch.sum()
        assert np.abs(centroid - [x, y]).max() < 0.1


# ------------------------------------------------------------------- SyncNet: syncnet_python crop


def test_syncnet_crop_is_syncnet_pythons_padded_slice():
    """Against the procedure written out: np.pad by bsi with 110, the slice, cv2.resize."""
    import cv2

    rng = np.random.default_rng(3)
    frame = rng.integers(0, 256, (360, 640, 3), dtype=np.uint8)
    for x, y, s in [(320.3, 180.7, 60.2), (15.0, 340.5, 90.0), (630.9, 5.2, 40.4)]:
        cs = 0.4
        bsi = int(s * (1 + 2 * cs))
        padded = np.pad(frame, ((bsi, bsi), (bsi, bsi), (0, 0)), "constant", constant_values=110)
        my, mx = y + bsi, x + bsi
        face = padded[int(my - s) : int(my + s * (1 + 2 * cs)),
                      int(mx - s * (1 + cs)) : int(mx + s * (1 + cs))]  # fmt: skip
        assert np.array_equal(syncnet_crop(frame, x, y, s, cs), cv2.resize(face, (224, 224)))


def test_syncnet_boxes_median_filter_the_centre_and_half_size():
    from scipy.signal import medfilt

    rng = np.random.default_rng(4)
    boxes = np.cumsum(rng.normal(0, 2, (40, 4)), 0) + np.array([100, 100, 220, 260])
    x, y, s = syncnet_boxes(boxes).T
    w, h = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    assert np.array_equal(s, medfilt(np.maximum(w, h) / 2, 13))
    assert np.array_equal(x, medfilt((boxes[:, 0] + boxes[:, 2]) / 2, 13))
    assert np.array_equal(y, medfilt((boxes[:, 1] + boxes[:, 3]) / 2, 13))


def test_the_longest_face_track_is_scored_its_gaps_bridged_as_track_shot_does():
    """syncnet_python's track_shot: a track goes on while the next detection is at most 25
    images later, the boxes between interpolated linearly before the median filter. Images
    3-4 and 9 without a face sit inside one track of 0-11 (scored, boxes interpolated: a
    face moving 2 px per image gets its exact boxes back); a 26-image gap after image 11
    starts another track (37-41), shorter, not scored. All images without a face are listed."""
    n = 42
    boxes = np.stack([10.0 + 2 * np.arange(n), np.full(n, 10.0),
                      50.0 + 2 * np.arange(n), np.full(n, 60.0)], 1)  # fmt: skip
    truth = boxes.copy()
    boxes[[3, 4, 9, *range(12, 37)]] = np.nan
    track = FaceTrack(np.zeros((n, 68, 2), np.float32), boxes)
    frames = np.zeros((n, 120, 160, 3), np.uint8)
    framed = syncnet_input(frames, np.arange(n), "track", track)
    assert framed.index.tolist() == list(range(12))
    assert framed.no_face == [3, 4, 9, *range(12, 37)]
    assert framed.frames.shape == (12, 224, 224, 3)
    np.testing.assert_allclose(bridge_boxes(boxes[:12]), truth[:12])
    assert track_span(~np.isnan(boxes[:, 0])) == (0, 12)
    assert track_span(np.zeros(3, bool)) == (0, 0)
    found = np.zeros(60, bool)
    found[[0, 25, 50]] = True  # 25 apart: one track; 26 apart: two
    assert track_span(found) == (0, 51)
    found[50], found[51] = False, True
    assert track_span(found) == (0, 26)


# ------------------------------------------------------------------------------ 25 fps


def _fps_filter(num_frames: int, fps: float, target: float = 25.0) -> list[int]:
    """FFmpeg's fps filter (vf_fps.c), written out: input pts rescaled to the output time
    base with round=near (halves away from zero); with two frames buffered, the first is
    dropped when the second's pts <= next_pts, else the first is output at next_pts++."""
    pts = [math.floor(i * target / fps + 0.5) for i in range(num_frames)]
    out, buffered, next_pts = [], [], pts[0]
    for i in range(num_frames):
        buffered.append(i)
        while len(buffered) == 2:
            if pts[buffered[1]] <= next_pts:
                buffered.pop(0)
            else:
                out.append(buffered[0])
                next_pts += 1
    # end of stream: the last frame fills the slots up to the stream's end time
    end = math.floor(num_frames * target / fps + 0.5)
    while next_pts < end:
        out.append(buffered[0])
        next_pts += 1
    return out


def test_nearest_frames_is_ffmpegs_fps_filter_on_30fps_input():
    """``nearest_frames`` (kept for comparison; run_pipeline's pick is ``avi_frame_sources``,
    tested against the CLI in test_syncnet_timing.py) is FFmpeg's fps filter."""
    for n in (30, 87, 300, 301):
        assert nearest_frames(n, 30.0).tolist() == _fps_filter(n, 30.0)
    assert nearest_frames(12, 30.0).tolist() == [0, 1, 2, 4, 5, 6, 7, 8, 10, 11]


# ------------------------------------------------------ the whole path: full frame vs pre-cropped


def _demo(emotion: str, level: int, n: int) -> np.ndarray:
    from asccl.evaluation.results import read_frames

    return read_frames(MEAD / "video" / "front" / emotion / f"level_{level}" / "001.mp4", n)


def _save(folder: Path, frames: np.ndarray) -> Path:
    folder.mkdir(parents=True)
    for i, frame in enumerate(frames):
        Image.fromarray(frame).save(folder / f"{i:05d}.png")
    return folder


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> dict[str, Path]:
    return save_random_evaluators(tmp_path_factory.mktemp("weights"))


@pytest.mark.slow
def test_full_frame_off_centre_scores_as_the_pre_cropped_face(tmp_path, weights):
    """Source and result faces (demo clips, 256x256, with landmarks that move) pasted at an
    off-centre offset into 720x1280 canvases of syncnet_python's padding grey (110): CSIM and
    LSE-D with ``framing="track"`` equal those of the same faces pre-cropped (5-point aligned
    112s, syncnet_python 224 crops made from the 256x256 frames) with ``framing="none"``.

    Tolerance: the offset (433, 217) is an integer, so every sampling position of the warp and
    of the crop differs by that integer only; OpenCV's fixed-point warp (1/32 px steps, from
    float64 coordinates) can round a position to the neighbouring step only when it lies within
    float64 rounding of a step boundary, so the network inputs are asserted identical, and the
    scores equal to float32 summation-order noise: 1e-6 (CSIM), 1e-5 (LSE-D ~ 10)."""
    n, off = 12, np.array([433.0, 217.0])
    rng = np.random.default_rng(5)
    faces = {"src": _demo("neutral", 1, n), "res": _demo("happy", 3, n)}
    known = KnownFaces()
    canvases, crops = {}, {}
    for name, frames in faces.items():
        drift = np.cumsum(rng.normal(0, 0.7, (n, 2)), 0)
        lms = [_landmarks(rng, np.array([128.0, 140.0]) + d, 70.0, 0.05) for d in drift]
        canvas = np.full((n, 720, 1280, 3), SYNCNET_PAD_VALUE, np.uint8)
        canvas[:, 217 : 217 + 256, 433 : 433 + 256] = frames
        for frame, big, lm in zip(frames, canvas, lms, strict=True):
            known.add(frame, lm)
            known.add(big, lm + off)
        canvases[name] = _save(tmp_path / "full" / name, canvas)
        tracker = make_tracker(known, detect_every=5)
        track = track_faces(frames, tracker)
        crops[name] = {
            "arcface": _save(tmp_path / "arc" / name,
                             np.stack([align_face(f, lm) for f, lm in zip(frames, lms,
                                                                          strict=True)])),
            "syncnet": _save(tmp_path / "sync" / name,
                             syncnet_input(frames, np.arange(len(frames)), "track", track).frames),
        }  # fmt: skip
    audio = MEAD / "audio" / "happy" / "level_3" / "001.m4a"
    common = dict(
        out=tmp_path / "out",
        arcface_weights=weights["arcface"],
        arcface_backbone="iresnet18",
        syncnet_weights=weights["syncnet"],
        frame_folder_fps=25.0,
        batch_size=16,
        lse_codecs=False,
    )  # the codecs see a whole frame in one case, a crop in the other
    track_x = Extractors(EvalConfig(**common, framing="track"))
    track_x._tracker = make_tracker(known, detect_every=5)
    none_x = Extractors(EvalConfig(**common, framing="none"))

    full = {k: track_x.compute("arcface", canvases[k], None) for k in faces}
    pre = {k: none_x.compute("arcface", crops[k]["arcface"], None) for k in faces}
    assert all(len(full[k]["no_face"]) == 0 for k in faces)
    csim_full = cosine_similarities(
        *map(torch.from_numpy, paired_features(full["src"], full["res"]))
    )
    csim_pre = cosine_similarities(*map(torch.from_numpy, paired_features(pre["src"], pre["res"])))
    assert len(csim_full) == n
    assert abs(float(csim_full.mean()) - float(csim_pre.mean())) < 1e-6

    lse_full = track_x.compute("syncnet", canvases["res"], audio)
    lse_pre = none_x.compute("syncnet", crops["res"]["syncnet"], audio)
    assert not str(lse_full["dropped"]) and int(lse_full["windows"]) > 0
    assert abs(float(lse_full["lse_d"]) - float(lse_pre["lse_d"])) < 1e-5
    assert int(lse_full["offset"]) == int(lse_pre["offset"])


def test_a_clip_without_faces_is_counted_not_scored(tmp_path, weights):
    frames = np.full((6, 64, 64, 3), 90, np.uint8)
    clip = _save(tmp_path / "blank", frames)
    x = Extractors(EvalConfig(out=tmp_path / "out", arcface_weights=weights["arcface"],
                              arcface_backbone="iresnet18"))  # fmt: skip
    x._tracker = make_tracker(KnownFaces(), detect_every=5)
    out = x.compute("arcface", clip, None)
    assert out["features"].shape[0] == 0 and out["no_face"].tolist() == list(range(6))
    assert int(out["frames"]) == 6


def test_landmarks_every_k_frames_are_interpolated_between():
    """Every 3rd frame tracked, the ones between interpolated linearly: a face moving at
    constant speed gets the exact landmarks in between (float32 rounding: < 1e-3 px)."""
    rng = np.random.default_rng(6)
    base = _landmarks(rng, (100.0, 100.0), 40.0)
    known = KnownFaces()
    frames = np.zeros((10, 8, 8, 3), np.uint8)
    truth = []
    for t in range(10):
        frames[t] = t  # distinct contents
        truth.append(base + np.array([2.0 * t, 1.0 * t]))
        known.add(frames[t], truth[-1])
    seen = set()
    fit = known.fit
    known.fit = lambda frame, box: seen.add(int(frame[0, 0, 0])) or fit(frame, box)
    track = track_faces(frames, make_tracker(known, detect_every=10), landmark_every=3)
    assert seen == {0, 3, 6, 9}  # landmarks fitted on these frames only
    assert np.abs(track.landmarks - np.array(truth)).max() < 1e-3


def test_the_face_track_cache_records_the_trackers_rule():
    """A cached face track is only as good as the tracker that made it: its recipe names the
    tracker's rule (re-detection version and ``hold``), and the evaluation's tracker is
    built with it, so a change of the rule recomputes the tracks."""
    from asccl.data.config import TRACKER_RULE
    from asccl.evaluation.features import track_settings
    from asccl.evaluation.framing import make_tracker

    assert "tracker_rule=2, hold=10" in track_settings(EvalConfig())
    assert make_tracker(landmarker=None, detect_every=5).hold == TRACKER_RULE["hold"]
