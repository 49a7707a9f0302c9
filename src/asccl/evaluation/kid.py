"""Kernel Inception Distance (Binkowski et al., "Demystifying MMD GANs", 2018).

KID is the unbiased estimate of the squared maximum mean discrepancy between the real and
generated feature sets with the cubic polynomial kernel ``k(x, y) = (x . y / d + 1) ** 3``
(``d``: feature size), averaged over random subsets, as torchmetrics'
``KernelInceptionDistance`` and clean-fid's ``kernel_distance`` compute it: per subset,
``s`` rows drawn without replacement from each side,

    MMD^2 = sum_{i != j} k(x_i, x_j) / (s (s - 1)) + sum_{i != j} k(y_i, y_j) / (s (s - 1))
            - 2 sum_{i, j} k(x_i, y_j) / s^2,

then the mean and (population) standard deviation over ``n_subsets`` subsets. Unlike FID
it is unbiased and needs no covariance, so it stays meaningful for the ~10-clip sets of a
per-emotion table. ``subset_size`` is capped at the smaller set (clean-fid's rule).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torchmetrics import Metric
from torchmetrics.utilities.data import dim_zero_cat

SUBSET_SIZE = 1000  #: torchmetrics' and clean-fid's default
N_SUBSETS = 100


def polynomial_mmd2(x: Tensor, y: Tensor) -> Tensor:
    """Unbiased MMD^2 of ``(s, d)`` and ``(s, d)`` sets, cubic polynomial kernel, float64."""
    x, y = x.double(), y.double()
    d, s = x.shape[1], x.shape[0]
    k_xx = (x @ x.T / d + 1) ** 3
    k_yy = (y @ y.T / d + 1) ** 3
    k_xy = (x @ y.T / d + 1) ** 3
    within = (k_xx.sum() - k_xx.diagonal().sum() + k_yy.sum() - k_yy.diagonal().sum()) / (
        s * (s - 1)
    )
    return within - 2 * k_xy.sum() / (s * s)


def kernel_inception_distance(
    real: Tensor,
    fake: Tensor,
    subset_size: int = SUBSET_SIZE,
    n_subsets: int = N_SUBSETS,
    generator: torch.Generator | None = None,
) -> tuple[float, float, int]:
    """``(N, d)`` real and ``(M, d)`` generated features -> ``(mean, std, subset size)`` of
    KID over ``n_subsets`` random subsets (``generator``: the draws; seed 0 by default).

    Raises:
        ValueError: fewer than 2 rows on a side, or the feature sizes differ.
    """
    if real.ndim != 2 or fake.ndim != 2 or real.shape[1] != fake.shape[1]:
        raise ValueError(f"need (N, d) and (M, d) features, got {tuple(real.shape)}, "
                         f"{tuple(fake.shape)}")  # fmt: skip
    size = min(subset_size, len(real), len(fake))
    if size < 2:
        raise ValueError(f"KID needs at least 2 samples per side, got {len(real)} and {len(fake)}")
    if generator is None:
        generator = torch.Generator().manual_seed(0)
    scores = torch.empty(n_subsets, dtype=torch.float64)
    for i in range(n_subsets):
        a = torch.randperm(len(real), generator=generator)[:size]
        b = torch.randperm(len(fake), generator=generator)[:size]
        scores[i] = polynomial_mmd2(real[a.to(real.device)], fake[b.to(fake.device)])
    return float(scores.mean()), float(scores.std(unbiased=False)), size


def _canonical(features: Tensor) -> Tensor:
    """Rows in lexicographic order: the subsets drawn do not depend on the order in which
    processes or batches delivered them."""
    import numpy as np

    array = features.detach().cpu().numpy()
    return features[torch.from_numpy(np.lexsort(array.T[::-1]).copy()).to(features.device)]


class KID(Metric):
    """KID as a torchmetrics metric: ``update(images, real)`` embeds a batch with
    ``feature_extractor`` (e.g. :class:`~asccl.evaluation.inception.InceptionFeatures`, or
    ``nn.Identity()`` on features) and keeps the features; ``compute()`` returns
    ``(mean, std)`` (:func:`kernel_inception_distance`, subsets drawn with ``seed``).
    Feature lists are concatenated across processes, so any split of the data gives the
    same value."""

    higher_is_better = False
    is_differentiable = False
    full_state_update = False

    def __init__(
        self,
        feature_extractor: nn.Module,
        *,
        subset_size: int = SUBSET_SIZE,
        n_subsets: int = N_SUBSETS,
        seed: int = 0,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        if subset_size < 2 or n_subsets < 1:
            raise ValueError(f"need subset_size >= 2 and n_subsets >= 1, got {subset_size}, "
                             f"{n_subsets}")  # fmt: skip
        self.feature_extractor = feature_extractor
        self.subset_size, self.n_subsets, self.seed = subset_size, n_subsets, seed
        self.subset_used = 0  #: the subset size of the last compute()
        self.add_state("real_features", [], dist_reduce_fx="cat")
        self.add_state("fake_features", [], dist_reduce_fx="cat")

    def update(self, images: Tensor, real: bool) -> None:
        with torch.no_grad():
            features = self.feature_extractor(images)
        if features.ndim != 2:
            raise ValueError(f"feature extractor gave {tuple(features.shape)}, expected (B, d)")
        (self.real_features if real else self.fake_features).append(features.double())

    def compute(self) -> tuple[Tensor, Tensor]:
        real, fake = (_canonical(dim_zero_cat(f)) for f in (self.real_features, self.fake_features))
        generator = torch.Generator().manual_seed(self.seed)
        mean, std, self.subset_used = kernel_inception_distance(
            real, fake, self.subset_size, self.n_subsets, generator
        )
        return torch.tensor(mean, dtype=torch.float64), torch.tensor(std, dtype=torch.float64)
