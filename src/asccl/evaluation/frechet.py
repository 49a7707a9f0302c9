"""Frechet distances between feature distributions: FID and FAD.

* :func:`frechet_distance` is pytorch-fid's ``calculate_frechet_distance``, in float64.
* :class:`FrechetStats` are the sufficient statistics (sum, sum of outer products, count)
  from which mean and covariance follow; two of them merge by addition, which is how
  :class:`FrechetDistance` syncs across processes in O(d^2).
* ``FID`` uses the 2048-d pool3 features of pytorch-fid's Inception
  (:mod:`asccl.evaluation.inception`), images ``(B, 3, H, W)`` RGB in [0, 1].
* ``FAD`` (Frechet ArcFace Distance) has no public reference implementation. Here it is
  the same Frechet distance computed on the 512-d ArcFace embeddings (not L2-normalised,
  as insightface's IResNet returns them) of ``(B, 3, 112, 112)`` aligned face crops, RGB in
  [-1, 1] (:class:`asccl.evaluation.identity.ArcFaceEmbedder`).
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn
from torchmetrics import Metric


def frechet_distance(
    mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray, eps: float = 1e-6
) -> float:
    """Frechet distance between N(mu1, sigma1) and N(mu2, sigma2)::

        d^2 = ||mu1 - mu2||^2 + Tr(sigma1 + sigma2 - 2 sqrt(sigma1 sigma2))

    As pytorch-fid: ``scipy.linalg.sqrtm`` of the product; if that is not finite (singular
    product) ``eps`` is added to both diagonals, with a warning; an imaginary part of the
    square root's diagonal above 1e-3 is an error, a smaller one is discarded.
    """
    from scipy import linalg  # heavy: imported on use

    mu1 = np.atleast_1d(np.asarray(mu1, dtype=np.float64))
    mu2 = np.atleast_1d(np.asarray(mu2, dtype=np.float64))
    sigma1 = np.atleast_2d(np.asarray(sigma1, dtype=np.float64))
    sigma2 = np.atleast_2d(np.asarray(sigma2, dtype=np.float64))
    if mu1.shape != mu2.shape:
        raise ValueError(f"mean vectors differ in shape: {mu1.shape} vs {mu2.shape}")
    if sigma1.shape != sigma2.shape or sigma1.shape != (mu1.shape[0],) * 2:
        raise ValueError(
            f"covariances {sigma1.shape}, {sigma2.shape} do not fit means of {mu1.shape}"
        )
    diff = mu1 - mu2
    covmean = linalg.sqrtm(sigma1 @ sigma2)
    if not np.isfinite(covmean).all():
        warnings.warn(
            f"Frechet distance: singular product of covariances; adding {eps} to their diagonals",
            RuntimeWarning,
            stacklevel=2,
        )
        offset = np.eye(sigma1.shape[0]) * eps
        covmean = linalg.sqrtm((sigma1 + offset) @ (sigma2 + offset))
    if np.iscomplexobj(covmean):
        if not np.allclose(np.diagonal(covmean).imag, 0, atol=1e-3):
            largest = np.max(np.abs(covmean.imag))
            raise ValueError(f"Frechet distance: imaginary component {largest} in sqrtm")
        covmean = covmean.real
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2 * np.trace(covmean))


@dataclass
class FrechetStats:
    """Sufficient statistics of a feature set: ``sum x``, ``sum x x^T``, ``n`` (float64)."""

    total: Tensor  # (D,)
    outer: Tensor  # (D, D)
    count: int

    @classmethod
    def empty(cls, dim: int) -> FrechetStats:
        z = torch.zeros(dim, dtype=torch.float64)
        return cls(z, torch.zeros(dim, dim, dtype=torch.float64), 0)

    @classmethod
    def of(cls, features: Tensor) -> FrechetStats:
        """Statistics of ``(N, D)`` features."""
        if features.ndim != 2:
            raise ValueError(f"expected (N, D) features, got {tuple(features.shape)}")
        f = features.detach().double()
        return cls(f.sum(0), f.T @ f, f.shape[0])

    def __add__(self, other: FrechetStats) -> FrechetStats:
        return FrechetStats(
            self.total + other.total, self.outer + other.outer, self.count + other.count
        )

    def mean_cov(self, what: str = "features") -> tuple[np.ndarray, np.ndarray]:
        """Mean and unbiased covariance (as ``np.cov(rowvar=False)``), as float64 arrays.

        Warns when there are no more samples than dimensions: the covariance is singular.
        """
        n, dim = self.count, self.total.shape[0]
        if n < 2:
            raise ValueError(f"need at least 2 {what} for a covariance, got {n}")
        if n <= dim:
            warnings.warn(
                f"{n} {what} for {dim} feature dimensions: the covariance is singular and the "
                f"Frechet distance is unreliable (use more than {dim} samples)",
                RuntimeWarning,
                stacklevel=2,
            )
        total, outer = self.total.cpu(), self.outer.cpu()
        mu = total / n
        cov = (outer - n * torch.outer(mu, mu)) / (n - 1)
        return mu.numpy(), cov.numpy()


class FrechetDistance(Metric):
    """Frechet distance between the features of real and generated images.

    ``feature_extractor`` maps a batch of images to ``(B, D)`` features (``D`` from its
    ``num_features`` attribute, or ``num_features=``). ``update(images, real=True|False)``
    accumulates float64 sufficient statistics per side; ``compute()`` returns
    :func:`frechet_distance` of the two Gaussians. States are summed across processes.
    """

    higher_is_better = False
    is_differentiable = False
    full_state_update = False

    def __init__(
        self, feature_extractor: nn.Module, num_features: int | None = None, **kwargs
    ) -> None:
        super().__init__(**kwargs)
        dim = num_features if num_features is not None else feature_extractor.num_features
        self.feature_extractor = feature_extractor
        self.num_features = int(dim)
        self.counts = (0, 0)  #: (real, generated) sample counts seen by the last compute()
        for side in ("real", "fake"):
            z = torch.zeros(dim, dtype=torch.float64)
            self.add_state(f"{side}_sum", z, dist_reduce_fx="sum")
            self.add_state(f"{side}_outer", torch.zeros(dim, dim, dtype=torch.float64), "sum")
            self.add_state(f"{side}_n", torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")

    def update(self, images: Tensor, real: bool) -> None:
        with torch.no_grad():
            features = self.feature_extractor(images)
        if features.ndim != 2 or features.shape[1] != self.num_features:
            raise ValueError(
                f"feature extractor gave {tuple(features.shape)}, expected (B, {self.num_features})"
            )
        stats = FrechetStats.of(features)
        side = "real" if real else "fake"
        setattr(self, f"{side}_sum", getattr(self, f"{side}_sum") + stats.total)
        setattr(self, f"{side}_outer", getattr(self, f"{side}_outer") + stats.outer)
        setattr(self, f"{side}_n", getattr(self, f"{side}_n") + stats.count)

    def stats(self, real: bool) -> FrechetStats:
        side = "real" if real else "fake"
        n = int(getattr(self, f"{side}_n"))
        return FrechetStats(getattr(self, f"{side}_sum"), getattr(self, f"{side}_outer"), n)

    def compute(self) -> Tensor:
        """The distance of the (process-summed) real and generated sets; their sizes are
        left in ``counts`` (``(real, generated)``), also when it raises."""
        self.counts = (int(self.real_n), int(self.fake_n))
        mu1, sigma1 = self.stats(real=True).mean_cov("real samples")
        mu2, sigma2 = self.stats(real=False).mean_cov("generated samples")
        return torch.tensor(frechet_distance(mu1, sigma1, mu2, sigma2), dtype=torch.float64)


class FID(FrechetDistance):
    """Frechet Inception Distance: images ``(B, 3, H, W)`` RGB in [0, 1].

    ``FID(weights=path)`` loads ``pt_inception-2015-12-05-6726825d.pth`` (``None`` reads
    ``ASCCL_INCEPTION_WEIGHTS``); ``FID(feature_extractor=...)`` takes a built extractor.
    """

    def __init__(
        self,
        feature_extractor: nn.Module | None = None,
        *,
        weights: str | os.PathLike | None = None,
        **kwargs,
    ) -> None:
        if feature_extractor is None:
            from asccl.evaluation.inception import load_inception

            feature_extractor = load_inception(weights)
        super().__init__(feature_extractor, **kwargs)


class FAD(FrechetDistance):
    """Frechet ArcFace Distance: faces ``(B, 3, 112, 112)`` aligned crops, RGB in [-1, 1].

    The Frechet distance of (un-normalised) ArcFace IResNet embeddings; see the module
    docstring. ``FAD(weights=path, backbone="iresnet50")`` loads an insightface
    ``backbone.pth`` (``None`` reads ``ASCCL_ARCFACE_WEIGHTS``); ``FAD(feature_extractor=...)``
    takes a built embedder.
    """

    def __init__(
        self,
        feature_extractor: nn.Module | None = None,
        *,
        weights: str | os.PathLike | None = None,
        backbone: str = "iresnet50",
        **kwargs,
    ) -> None:
        if feature_extractor is None:
            from asccl.evaluation.identity import load_arcface

            feature_extractor = load_arcface(weights, backbone)
        super().__init__(feature_extractor, **kwargs)
