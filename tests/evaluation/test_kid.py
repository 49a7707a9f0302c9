"""KID (asccl.evaluation.kid) against a straightforward computation: explicit loops over
pairs in float64."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from torch import nn

from asccl.evaluation.kid import KID, kernel_inception_distance, polynomial_mmd2


def _mmd2_loops(x: np.ndarray, y: np.ndarray) -> float:
    """Unbiased MMD^2, kernel (x.y/d + 1)^3, one pair at a time."""
    d, m = x.shape[1], len(x)

    def k(a, b):
        return (float(np.dot(a, b)) / d + 1.0) ** 3

    xx = sum(k(x[i], x[j]) for i, j in itertools.permutations(range(m), 2)) / (m * (m - 1))
    yy = sum(k(y[i], y[j]) for i, j in itertools.permutations(range(m), 2)) / (m * (m - 1))
    xy = sum(k(x[i], y[j]) for i in range(m) for j in range(m)) / (m * m)
    return xx + yy - 2 * xy


def test_mmd2_matches_the_loops():
    """float64 both ways over 7 rows: sums of ~50 terms of ~1-10 agree to ~1e-14 relative;
    asserted at 1e-10."""
    rng = np.random.default_rng(0)
    for shift in (0.0, 0.5):
        x, y = rng.normal(0, 1, (7, 5)), rng.normal(shift, 1.2, (7, 5))
        got = float(polynomial_mmd2(torch.from_numpy(x), torch.from_numpy(y)))
        assert got == pytest.approx(_mmd2_loops(x, y), rel=1e-10, abs=1e-12)


def test_whole_set_subsets_all_give_the_loop_value():
    """Subsets as large as both sets are the sets themselves (drawn in another order, which
    MMD^2 ignores): mean = loop value, std = 0 (rounding)."""
    rng = np.random.default_rng(1)
    x, y = rng.normal(0, 1, (6, 4)), rng.normal(0.3, 1, (9, 4))
    x6 = torch.from_numpy(x)
    mean, std, size = kernel_inception_distance(x6, torch.from_numpy(y[:6]), n_subsets=5)
    assert size == 6 and mean == pytest.approx(_mmd2_loops(x, y[:6]), rel=1e-10) and std < 1e-12
    # with 9 generated rows, subsets of 6 are drawn: each is one of the loop values
    mean, _, size = kernel_inception_distance(x6, torch.from_numpy(y), n_subsets=3)
    assert size == 6
    allowed = [_mmd2_loops(x, y[list(c)]) for c in itertools.combinations(range(9), 6)]
    assert min(allowed) - 1e-9 <= mean <= max(allowed) + 1e-9


def test_same_distribution_is_near_zero_and_shift_is_not():
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(400, 16, generator=g), torch.randn(400, 16, generator=g)
    same, _, _ = kernel_inception_distance(a, b, subset_size=100, n_subsets=20)
    moved, _, _ = kernel_inception_distance(a, b + 1.0, subset_size=100, n_subsets=20)
    assert abs(same) < 0.05 and moved > 0.5


def test_metric_is_independent_of_batch_order_and_resets():
    g = torch.Generator().manual_seed(2)
    real, fake = torch.randn(30, 8, generator=g), torch.randn(30, 8, generator=g) + 0.2
    one, two = (
        KID(nn.Identity(), subset_size=10, n_subsets=7),
        KID(nn.Identity(), subset_size=10, n_subsets=7),
    )
    one.update(real, real=True)
    one.update(fake, real=False)
    for i in (2, 0, 1):  # other batches, other order
        two.update(fake[10 * i : 10 * i + 10], real=False)
        two.update(real[10 * i : 10 * i + 10], real=True)
    assert [float(v) for v in one.compute()] == [float(v) for v in two.compute()]
    assert one.subset_used == 10
    one.reset()
    with pytest.raises(ValueError), pytest.warns(UserWarning, match="before the ``update``"):
        one.compute()


def test_too_few_samples_is_an_error():
    with pytest.raises(ValueError, match="at least 2"):
        kernel_inception_distance(torch.zeros(1, 3), torch.zeros(5, 3))
