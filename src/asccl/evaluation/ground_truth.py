"""Ground-truth metrics: a result clip against the exact answer (synthetic data only).

Real SPFEM data has no ground truth; ``asccl data synth`` writes it (the neutral clip's
words on its timeline, with the target emotion). These are the pure functions and
torchmetrics metrics that score a result against it, frame by frame:

* **landmark error** (:func:`landmark_error`): the mean Euclidean distance between the
  result's and the ground truth's 68-point landmarks (iBUG 300-W order, 0-based), divided
  by the ground truth's **inter-ocular distance**, the distance between the outer eye
  corners, points 36 and 45 (the common "inter-ocular" normalisation of 300-W;
  :data:`OUTER_EYE_CORNERS`). :data:`MOUTH` (points 48-67, outer and inner lip, 20
  points) gives the mouth error, :data:`FACE` (all 68) the full-face error. Values are
  fractions of the inter-ocular distance (0.05 = 5 %).
* **landmark distance** (LMD, Chen et al. 2018/2019; :func:`landmark_distance`): the same
  mean distance, but to the ground-truth frame's landmarks *as the same tracker finds them*
  (same detector, same framing), so a tracker error common to both (a systematic misreading
  of a face) cancels and the exact answer scores 0. It is divided by the inter-ocular
  distance of the **exact** ground-truth landmarks, the normaliser of the landmark error, so
  the two share units.
* **PSNR** (:func:`psnr`): ``10 log10(R^2 / MSE)`` per frame over every pixel and channel,
  ``R`` the data range (255 for uint8); a frame equal to its ground truth gives ``inf``.
* **SSIM** (:func:`ssim`): Wang et al. 2004 with their constants: an 11-tap Gaussian
  window (sigma 1.5, taps normalised to sum 1), ``K1 = 0.01``, ``K2 = 0.03``, population
  (not sample) covariances; the SSIM map is taken where the window fits inside the image
  (a ``valid`` filter: no border padding, a 5-pixel strip lost on each side) and averaged,
  **on each RGB channel separately, then averaged over the channels**. This is
  ``skimage.metrics.structural_similarity(a, b, gaussian_weights=True, sigma=1.5,
  use_sample_covariance=False, data_range=255, channel_axis=-1)`` (which filters with
  reflected borders and then crops the same strip, so the borders never count).

A clip's value is the mean of its per-frame values; the torchmetrics classes accumulate
per-frame sums over clips (so the mean weights every frame equally).
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from torchmetrics import Metric

#: 0-based indices of the outer eye corners in the 68-point scheme (left 36, right 45)
OUTER_EYE_CORNERS: tuple[int, int] = (36, 45)
#: the 20 mouth points (outer lip 48-59, inner lip 60-67)
MOUTH: tuple[int, ...] = tuple(range(48, 68))
#: every point
FACE: tuple[int, ...] = tuple(range(68))

#: SSIM's constants (Wang et al. 2004)
SSIM_SIGMA = 1.5
SSIM_WINDOW = 11
SSIM_K1 = 0.01
SSIM_K2 = 0.03


def _as_tensor(x: Tensor | np.ndarray) -> Tensor:
    """float64 tensor (arrays and integer images converted; float64 keeps the sums exact)."""
    return torch.as_tensor(np.asarray(x) if not isinstance(x, Tensor) else x).double()


def interocular_distance(landmarks: Tensor | np.ndarray) -> Tensor:
    """``(..., 68, 2)`` landmarks -> ``(...)`` distance between points 36 and 45."""
    points = _as_tensor(landmarks)
    if points.shape[-2:] != (68, 2):
        raise ValueError(f"expected (..., 68, 2) landmarks, got {tuple(points.shape)}")
    left, right = OUTER_EYE_CORNERS
    return (points[..., left, :] - points[..., right, :]).norm(dim=-1)


def landmark_error(
    landmarks: Tensor | np.ndarray,
    truth: Tensor | np.ndarray,
    points: tuple[int, ...] = MOUTH,
    scale: Tensor | np.ndarray | None = None,
) -> Tensor:
    """Per-frame normalised landmark error.

    Args:
        landmarks: ``(T, 68, 2)`` the result's landmarks (pixels).
        truth: ``(T, 68, 2)`` the ground truth's landmarks, same pixel frame.
        points: which points to average over (:data:`MOUTH`, :data:`FACE`).
        scale: ``(T, 68, 2)`` landmarks whose inter-ocular distance normalises (default
            ``truth``; :func:`landmark_distance` passes the exact ground truth's).

    Returns:
        ``(T,)`` float64: ``mean_p ||landmarks[t, p] - truth[t, p]|| / iod(scale[t])``,
        ``iod`` the inter-ocular distance (points 36-45).

    Raises:
        ValueError: shapes differ, no points, or a frame of ``scale`` whose outer eye
            corners coincide (no scale to normalise by).
    """
    pred, gt = _as_tensor(landmarks), _as_tensor(truth)
    norm = gt if scale is None else _as_tensor(scale)
    if (pred.shape != gt.shape or norm.shape != gt.shape or pred.ndim != 3
            or pred.shape[1:] != (68, 2)):  # fmt: skip
        raise ValueError(
            f"expected (T, 68, 2) landmark arrays of one shape, got {tuple(pred.shape)}, "
            f"{tuple(gt.shape)}" + ("" if scale is None else f" and {tuple(norm.shape)}")
        )
    if not points:
        raise ValueError("points is empty")
    index = torch.tensor(points, dtype=torch.long)
    iod = interocular_distance(norm)
    if not bool((iod > 0).all()):
        raise ValueError("a ground-truth frame has coinciding outer eye corners (36, 45)")
    distance = (pred[:, index] - gt[:, index]).norm(dim=-1)  # (T, P)
    return distance.mean(-1) / iod


def landmark_distance(
    landmarks: Tensor | np.ndarray,
    tracked_truth: Tensor | np.ndarray,
    truth: Tensor | np.ndarray,
    points: tuple[int, ...] = MOUTH,
) -> Tensor:
    """Per-frame LMD: ``(T,)`` float64, ``mean_p ||landmarks[t, p] - tracked_truth[t, p]||
    / iod(truth[t])``: the result's tracked landmarks against the ground-truth frame's
    tracked ones (same tracker, same framing: a bias common to both cancels), over the
    exact ground truth's inter-ocular distance (the normaliser of :func:`landmark_error`,
    so the two share units). All three ``(T, 68, 2)`` pixels of the same frames."""
    return landmark_error(landmarks, tracked_truth, points, scale=truth)


def _frames(x: Tensor | np.ndarray) -> Tensor:
    """``(T, H, W, 3)`` or ``(T, 3, H, W)`` (or one frame without ``T``) -> ``(T, C, H, W)``
    float64. A trailing size-3 axis is read as channels-last."""
    frames = _as_tensor(x)
    if frames.ndim == 3:
        frames = frames[None]
    if frames.ndim != 4:
        raise ValueError(f"expected (T, H, W, C) or (T, C, H, W) frames, got {tuple(frames.shape)}")
    if frames.shape[-1] in (1, 3) and frames.shape[1] not in (1, 3):
        frames = frames.permute(0, 3, 1, 2)
    return frames


def _pair(result: Tensor | np.ndarray, truth: Tensor | np.ndarray) -> tuple[Tensor, Tensor]:
    a, b = _frames(result), _frames(truth)
    if a.shape != b.shape:
        raise ValueError(f"result and ground truth differ in shape: {tuple(a.shape)} vs "
                         f"{tuple(b.shape)}")  # fmt: skip
    return a, b


def psnr(
    result: Tensor | np.ndarray, truth: Tensor | np.ndarray, data_range: float = 255.0
) -> Tensor:
    """Per-frame PSNR in dB: ``(T,)`` float64, ``10 log10(data_range^2 / MSE_t)`` with
    ``MSE_t`` over every pixel and channel of frame ``t`` (``inf`` where it is 0).

    Frames: ``(T, H, W, 3)`` or ``(T, 3, H, W)``, uint8 or float, in ``[0, data_range]``.
    """
    a, b = _pair(result, truth)
    mse = (a - b).square().flatten(1).mean(-1)
    return 10 * torch.log10(data_range**2 / mse)


def gaussian_window(size: int = SSIM_WINDOW, sigma: float = SSIM_SIGMA) -> Tensor:
    """``(size,)`` float64 Gaussian taps centred on the middle one, normalised to sum 1."""
    x = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    taps = torch.exp(-(x**2) / (2 * sigma**2))
    return taps / taps.sum()


def ssim(
    result: Tensor | np.ndarray, truth: Tensor | np.ndarray, data_range: float = 255.0
) -> Tensor:
    """Per-frame SSIM: ``(T,)`` float64, per channel then averaged over channels (see the
    module doc for the exact convention). Frames as for :func:`psnr`, at least 11x11."""
    a, b = _pair(result, truth)
    t, c, h, w = a.shape
    if min(h, w) < SSIM_WINDOW:
        raise ValueError(f"SSIM needs frames of at least {SSIM_WINDOW}x{SSIM_WINDOW}, got {h}x{w}")
    taps = gaussian_window()
    rows, cols = taps.view(1, 1, -1, 1), taps.view(1, 1, 1, -1)

    def blur(x: Tensor) -> Tensor:  # separable 'valid' filter of every (frame, channel) plane
        return F.conv2d(F.conv2d(x.reshape(t * c, 1, h, w), rows), cols)

    mu_a, mu_b = blur(a), blur(b)
    var_a = blur(a * a) - mu_a**2
    var_b = blur(b * b) - mu_b**2
    cov = blur(a * b) - mu_a * mu_b
    c1, c2 = (SSIM_K1 * data_range) ** 2, (SSIM_K2 * data_range) ** 2
    index = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / (
        (mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2)
    )
    return index.reshape(t, c, -1).mean(-1).mean(-1)


class _FrameMean(Metric):
    """Mean of a per-frame value over every frame seen (sum and count, synced by sum)."""

    full_state_update = False
    higher_is_better: bool | None = None

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.add_state("total", torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("count", torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")

    def _add(self, values: Tensor) -> None:
        self.total += values.sum().to(self.total.device)
        self.count += values.numel()

    def update_values(self, values: Tensor) -> None:
        """Add per-frame values already computed (e.g. cached): ``(T,)``."""
        self._add(torch.as_tensor(values, dtype=torch.float64))

    def compute(self) -> Tensor:
        """The mean per-frame value (NaN before any update)."""
        if int(self.count) == 0:
            return torch.tensor(math.nan, dtype=torch.float64)
        return self.total / self.count


class LandmarkError(_FrameMean):
    """Mean normalised landmark error over frames (:func:`landmark_error`); ``points``:
    :data:`MOUTH` (default) or :data:`FACE`. Lower is better."""

    higher_is_better = False

    def __init__(self, points: tuple[int, ...] = MOUTH, **kwargs) -> None:
        super().__init__(**kwargs)
        self.points = tuple(points)

    def update(self, landmarks: Tensor | np.ndarray, truth: Tensor | np.ndarray) -> None:
        """Add a clip: ``(T, 68, 2)`` result and ground-truth landmarks."""
        self._add(landmark_error(landmarks, truth, self.points))


class LandmarkDistance(_FrameMean):
    """Mean LMD over frames (:func:`landmark_distance`); ``points``: :data:`MOUTH`
    (default) or :data:`FACE`. Lower is better (0: the result's tracked landmarks are the
    tracked ground truth's)."""

    higher_is_better = False

    def __init__(self, points: tuple[int, ...] = MOUTH, **kwargs) -> None:
        super().__init__(**kwargs)
        self.points = tuple(points)

    def update(
        self,
        landmarks: Tensor | np.ndarray,
        tracked_truth: Tensor | np.ndarray,
        truth: Tensor | np.ndarray,
    ) -> None:
        """Add a clip: ``(T, 68, 2)`` result, tracked ground-truth and exact ground-truth
        landmarks."""
        self._add(landmark_distance(landmarks, tracked_truth, truth, self.points))


class FramePSNR(_FrameMean):
    """Mean per-frame PSNR over frames (:func:`psnr`). Higher is better; one identical
    frame makes it ``inf``."""

    higher_is_better = True

    def __init__(self, data_range: float = 255.0, **kwargs) -> None:
        super().__init__(**kwargs)
        self.data_range = float(data_range)

    def update(self, result: Tensor | np.ndarray, truth: Tensor | np.ndarray) -> None:
        """Add a clip's frames (result, ground truth)."""
        self._add(psnr(result, truth, self.data_range))


class FrameSSIM(_FrameMean):
    """Mean per-frame SSIM over frames (:func:`ssim`). Higher is better (1: identical)."""

    higher_is_better = True

    def __init__(self, data_range: float = 255.0, **kwargs) -> None:
        super().__init__(**kwargs)
        self.data_range = float(data_range)

    def update(self, result: Tensor | np.ndarray, truth: Tensor | np.ndarray) -> None:
        """Add a clip's frames (result, ground truth)."""
        self._add(ssim(result, truth, self.data_range))


__all__ = [
    "FACE",
    "MOUTH",
    "OUTER_EYE_CORNERS",
    "FramePSNR",
    "FrameSSIM",
    "LandmarkDistance",
    "LandmarkError",
    "gaussian_window",
    "interocular_distance",
    "landmark_distance",
    "landmark_error",
    "psnr",
    "ssim",
]
