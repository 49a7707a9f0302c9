"""Frechet distance, its sufficient statistics and the FID/FAD metrics."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import scipy.linalg
import torch
from torch import nn

from asccl.evaluation.frechet import FAD, FID, FrechetDistance, FrechetStats, frechet_distance
from asccl.evaluation.identity import ArcFaceEmbedder
from asccl.metric.iresnet import build_iresnet


def _reference(x: np.ndarray, y: np.ndarray) -> float:
    """Direct computation from samples: ||m1 - m2||^2 + Tr(S1 + S2 - 2 (S1 S2)^1/2)."""
    m1, m2 = x.mean(0), y.mean(0)
    s1, s2 = np.cov(x, rowvar=False), np.cov(y, rowvar=False)
    root = scipy.linalg.sqrtm(s1 @ s2).real
    return float(np.sum((m1 - m2) ** 2) + np.trace(s1 + s2 - 2 * root))


def _gaussian(n: int, d: int, seed: int, shift: float = 0.0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    mix = rng.normal(size=(d, d)) / np.sqrt(d)
    return rng.normal(size=(n, d)) @ mix + shift


def test_matches_direct_scipy_computation():
    x, y = _gaussian(200, 8, 0), _gaussian(300, 8, 1, shift=0.5)
    s1, s2 = np.cov(x, rowvar=False), np.cov(y, rowvar=False)
    got = frechet_distance(x.mean(0), s1, y.mean(0), s2)
    assert got == pytest.approx(_reference(x, y), rel=1e-9, abs=1e-9)


def test_closed_forms():
    mu, sigma = np.array([1.0, -2.0]), np.array([[2.0, 0.3], [0.3, 1.0]])
    assert frechet_distance(mu, sigma, mu, sigma) == pytest.approx(0.0, abs=1e-9)
    # 1-D Gaussians: (m1 - m2)^2 + (s1 - s2)^2 with standard deviations s
    m1, s1, m2, s2 = 0.5, 2.0, -1.0, 0.5
    got = frechet_distance(np.array([m1]), np.array([[s1**2]]), np.array([m2]), [[s2**2]])
    assert got == pytest.approx((m1 - m2) ** 2 + (s1 - s2) ** 2, rel=1e-12)


def test_shape_mismatch_is_an_error():
    with pytest.raises(ValueError, match="mean vectors"):
        frechet_distance(np.zeros(2), np.eye(2), np.zeros(3), np.eye(3))


def test_singular_product_adds_eps_with_warning(monkeypatch):
    real_sqrtm = scipy.linalg.sqrtm
    calls = []

    def flaky_sqrtm(a):  # first call: a non-finite root, as for a singular product
        calls.append(a)
        return np.full_like(a, np.nan) if len(calls) == 1 else real_sqrtm(a)

    monkeypatch.setattr(scipy.linalg, "sqrtm", flaky_sqrtm)
    sigma = np.diag([1.0, 4.0])
    with pytest.warns(RuntimeWarning, match="singular product"):
        got = frechet_distance(np.zeros(2), sigma, np.zeros(2), sigma, eps=1e-6)
    np.testing.assert_allclose(calls[1], (sigma + 1e-6 * np.eye(2)) @ (sigma + 1e-6 * np.eye(2)))
    assert got == pytest.approx(0.0, abs=1e-5)


def test_large_imaginary_part_is_an_error(monkeypatch):
    monkeypatch.setattr(scipy.linalg, "sqrtm", lambda a: np.eye(len(a)) * (1 + 1j))
    with pytest.raises(ValueError, match="imaginary"):
        frechet_distance(np.zeros(2), np.eye(2), np.zeros(2), np.eye(2))


def test_stats_merge_equals_whole_and_numpy():
    x = torch.from_numpy(_gaussian(50, 6, 2))
    whole = FrechetStats.of(x)
    merged = FrechetStats.empty(6) + FrechetStats.of(x[:17]) + FrechetStats.of(x[17:])
    assert merged.count == whole.count == 50
    torch.testing.assert_close(merged.total, whole.total)
    torch.testing.assert_close(merged.outer, whole.outer)
    mu, cov = merged.mean_cov()
    np.testing.assert_allclose(mu, x.numpy().mean(0), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(cov, np.cov(x.numpy(), rowvar=False), rtol=1e-10, atol=1e-12)


def test_fewer_samples_than_dims_warns():
    with pytest.warns(RuntimeWarning, match="singular"):
        FrechetStats.of(torch.randn(5, 8)).mean_cov()
    with pytest.raises(ValueError, match="at least 2"):
        FrechetStats.of(torch.randn(1, 8)).mean_cov()


class Flatten(nn.Module):
    """Stub extractor: the mean colour of each image, (B, 3)."""

    num_features = 3

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=(2, 3))


def test_metric_equals_function_and_syncs_by_sum():
    g = torch.Generator().manual_seed(0)
    real = torch.rand(40, 3, 4, 4, generator=g)
    fake = torch.rand(30, 3, 4, 4, generator=g) * 0.5
    metric = FrechetDistance(Flatten())
    for chunk in real.split(16):
        metric.update(chunk, real=True)
    metric.update(fake, real=False)
    fr, ff = real.mean((2, 3)).double().numpy(), fake.mean((2, 3)).double().numpy()
    assert metric.compute().item() == pytest.approx(_reference(fr, ff), rel=1e-8)
    # two "processes": rank 0 gathers rank 1's states through torchmetrics' sync path,
    # which reduces them with each state's dist_reduce_fx (a sum)
    b = FrechetDistance(Flatten())
    b.update(real[25:], real=True)
    b.update(fake[3:], real=False)
    peer: dict[int, torch.Tensor] = {}

    def gather(tensor: torch.Tensor, group=None) -> list[torch.Tensor]:
        return [tensor, peer[id(tensor)]]

    a = FrechetDistance(Flatten(), dist_sync_fn=gather, distributed_available_fn=lambda: True)
    a.update(real[:25], real=True)
    a.update(fake[:3], real=False)
    peer.update({id(getattr(a, name)): getattr(b, name) for name in a._defaults})
    assert a.compute().item() == pytest.approx(metric.compute().item(), rel=1e-10)
    metric.reset()
    assert metric.real_n == 0 and metric.fake_outer.abs().sum() == 0
    assert metric.real_sum.dtype == torch.float64


def test_metric_checks_feature_size():
    metric = FrechetDistance(Flatten(), num_features=4)
    with pytest.raises(ValueError, match=r"\(2, 3\), expected \(B, 4\)"):
        metric.update(torch.rand(2, 3, 4, 4), real=True)


def test_metric_warns_on_singular_covariance():
    metric = FrechetDistance(Flatten())
    metric.update(torch.rand(3, 3, 4, 4), real=True)
    metric.update(torch.rand(10, 3, 4, 4), real=False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        metric.compute()
    assert any("singular" in str(w.message) for w in caught)


def test_fid_takes_an_extractor():
    fid = FID(Flatten())
    assert fid.num_features == 3
    assert not fid.higher_is_better


class Recording(nn.Module):
    """Wraps an embedder and keeps every embedding it returns."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner, self.num_features, self.seen = inner, inner.num_features, []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen.append(self.inner(x))
        return self.seen[-1]


def test_fad_is_frechet_distance_of_embeddings():
    torch.manual_seed(0)
    # a 2-d head keeps the covariances full rank with a few faces
    embedder = Recording(ArcFaceEmbedder(build_iresnet("iresnet18", num_features=2)))
    g = torch.Generator().manual_seed(1)
    fad = FAD(embedder)
    assert fad.num_features == 2
    fad.update(torch.rand(3, 3, 112, 112, generator=g) * 2 - 1, real=True)
    fad.update(torch.rand(4, 3, 112, 112, generator=g) * 2 - 1, real=False)
    er, ef = (e.double().numpy() for e in embedder.seen)
    assert er.shape == (3, 2) and ef.shape == (4, 2)
    expected = frechet_distance(
        er.mean(0), np.cov(er, rowvar=False), ef.mean(0), np.cov(ef, rowvar=False)
    )
    assert fad.compute().item() == pytest.approx(expected, rel=1e-6)
