"""Ground-truth metrics against hand computations on tiny clips (and skimage's SSIM)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from asccl.evaluation.ground_truth import (
    FACE,
    MOUTH,
    FramePSNR,
    FrameSSIM,
    LandmarkError,
    gaussian_window,
    interocular_distance,
    landmark_error,
    psnr,
    ssim,
)


def _face(iod: float = 40.0) -> np.ndarray:
    """(68, 2) landmarks: points spread on a grid, outer eye corners iod apart."""
    rng = np.random.default_rng(0)
    points = rng.uniform(0, 100, size=(68, 2))
    points[36] = (10.0, 20.0)
    points[45] = (10.0 + iod, 20.0)
    return points


def test_landmark_error_hand_computed():
    truth = np.stack([_face(40.0), _face(40.0)])  # 2 frames, inter-ocular distance 40
    result = truth.copy()
    result[0, 48:68] += (3.0, 4.0)  # frame 0: every mouth point 5 px off
    result[1, 48:68] += (0.0, 8.0)  # frame 1: 8 px off
    np.testing.assert_array_equal(interocular_distance(truth).numpy(), [40.0, 40.0])
    mouth = landmark_error(result, truth, MOUTH).numpy()
    # 5 / 40 and 8 / 40: exact in binary floating point up to one rounding of sqrt(25)
    np.testing.assert_allclose(mouth, [0.125, 0.2], rtol=1e-15)
    face = landmark_error(result, truth, FACE).numpy()
    # 20 of 68 points moved: (20 * 5 / 68) / 40 and (20 * 8 / 68) / 40
    np.testing.assert_allclose(face, [20 * 5 / 68 / 40, 20 * 8 / 68 / 40], rtol=1e-14)
    metric = LandmarkError(MOUTH)
    metric.update(result[:1], truth[:1])
    metric.update(result[1:], truth[1:])
    assert metric.compute().item() == pytest.approx((0.125 + 0.2) / 2, rel=1e-15)


def test_landmark_error_normalises_by_the_ground_truths_eyes():
    truth = _face(50.0)[None]
    result = _face(80.0)[None]  # only point 45 moved, by 30 px: normalised by truth's 50
    assert landmark_error(result, truth, FACE).item() == pytest.approx(30 / 68 / 50, rel=1e-14)
    assert landmark_error(result, truth, MOUTH).item() == 0.0
    bad = truth.copy()
    bad[0, 45] = bad[0, 36]
    with pytest.raises(ValueError, match="eye corners"):
        landmark_error(result, bad)
    with pytest.raises(ValueError, match="68, 2"):
        landmark_error(result[:, :60], truth[:, :60])


def test_psnr_of_a_constant_offset():
    rng = np.random.default_rng(1)
    truth = rng.integers(20, 200, size=(2, 16, 16, 3), dtype=np.uint8)
    result = truth.copy()
    result[0] += 5  # MSE 25
    result[1] += 10  # MSE 100
    values = psnr(result, truth).numpy()
    # 10 log10(255^2 / 25) = 20 log10(51); 20 log10(25.5)
    np.testing.assert_allclose(values, [20 * math.log10(51), 20 * math.log10(25.5)], rtol=1e-14)
    assert psnr(truth, truth).isinf().all()
    metric = FramePSNR()
    metric.update(torch.from_numpy(result).permute(0, 3, 1, 2), torch.from_numpy(truth))
    assert metric.compute().item() == pytest.approx(values.mean(), rel=1e-14)


def test_ssim_of_constant_frames_is_the_luminance_term():
    # constant frames: variances and covariance vanish, SSIM = (2pq + C1) / (p^2 + q^2 + C1)
    p, q = 100.0, 120.0
    c1 = (0.01 * 255) ** 2
    a = np.full((1, 20, 24, 3), p)
    b = np.full((1, 20, 24, 3), q)
    expected = (2 * p * q + c1) / (p * p + q * q + c1)
    assert ssim(a, b).item() == pytest.approx(expected, rel=1e-12)
    assert ssim(a, a).item() == pytest.approx(1.0, abs=1e-12)


def test_gaussian_window_is_wang_et_al():
    taps = gaussian_window()
    assert taps.shape == (11,)
    assert taps.sum().item() == pytest.approx(1.0, abs=1e-15)
    ratio = math.exp(-1 / (2 * 1.5**2))  # neighbouring taps around the centre
    assert (taps[6] / taps[5]).item() == pytest.approx(ratio, rel=1e-14)


def test_ssim_matches_skimage():
    metrics = pytest.importorskip("skimage.metrics")
    rng = np.random.default_rng(2)
    truth = rng.integers(0, 256, size=(2, 32, 40, 3), dtype=np.uint8)
    noise = rng.integers(-40, 41, size=truth.shape)
    result = np.clip(truth.astype(int) + noise, 0, 255).astype(np.uint8)
    ours = ssim(result, truth).numpy()
    theirs = [
        metrics.structural_similarity(
            result[t],
            truth[t],
            gaussian_weights=True,
            sigma=1.5,
            use_sample_covariance=False,
            data_range=255,
            channel_axis=-1,
        )
        for t in range(2)
    ]
    # both in float64: the same sums in another order (separable vs scipy's 1-D passes),
    # ~1e-16 relative per operation on values of order 255^2, far below 1e-9
    np.testing.assert_allclose(ours, theirs, rtol=1e-9)
    metric = FrameSSIM()
    metric.update(result, truth)
    assert metric.compute().item() == pytest.approx(np.mean(theirs), rel=1e-9)


def test_shapes_are_checked():
    with pytest.raises(ValueError, match="differ in shape"):
        psnr(np.zeros((1, 8, 8, 3)), np.zeros((1, 8, 9, 3)))
    with pytest.raises(ValueError, match="at least 11x11"):
        ssim(np.zeros((1, 8, 8, 3)), np.zeros((1, 8, 8, 3)))
    with pytest.warns(UserWarning, match="before the"):  # torchmetrics' own warning
        assert math.isnan(FrameSSIM().compute().item())
