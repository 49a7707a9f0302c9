"""Shared fixtures: small random-weight models and synthetic images (no downloads, no files)."""

from __future__ import annotations

import pytest
import torch

from asccl.metric import ASCCLMetric


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def small_metric() -> ASCCLMetric:
    """An IResNet-18 metric with random weights, in eval mode (tests must not train it)."""
    torch.manual_seed(0)
    return ASCCLMetric(backbone="iresnet18").eval()


def random_images(batch: int, size: int = 224, seed: int = 0) -> torch.Tensor:
    """``(batch, 3, size, size)`` smooth random images in [-1, 1]."""
    g = torch.Generator().manual_seed(seed)
    coarse = torch.rand(batch, 3, size // 8, size // 8, generator=g) * 2 - 1
    return torch.nn.functional.interpolate(coarse, size=(size, size), mode="bilinear")
