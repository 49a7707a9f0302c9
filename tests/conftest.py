"""Shared fixtures: small random-weight models and synthetic images (no downloads, no files)."""

from __future__ import annotations

import os

import pytest
import torch

from asccl.metric import ASCCLMetric


def pytest_configure(config):
    """Under pytest-xdist (``make test`` runs ``-n 2``) share the cores between the workers:
    each computes on ``cores // workers`` threads (at least 1), and so do the processes its
    tests start (``OMP_NUM_THREADS``), so an in-process run and a subprocess run of the same
    training use the same kernels; without it every worker would spin one thread per core."""
    worker = getattr(config, "workerinput", None)
    if worker is None:
        return
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    threads = max(1, (cores or 1) // int(worker["workercount"]))
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[name] = str(threads)
    torch.set_num_threads(threads)


def pytest_collection_modifyitems(config, items):
    if hasattr(config, "workerinput"):
        _slow_first(items)
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(skip)


def _slow_first(items: list[pytest.Item]) -> None:
    """Under pytest-xdist: the files holding ``slow`` tests first, their slow tests first,
    so both workers start on the long tests and the run ends on short ones, not on one
    worker's last long test (longest first balances best). Each file stays contiguous, so
    its module fixtures are built once per worker. Every worker sorts alike (xdist checks)."""
    slow_files = {item.path for item in items if "slow" in item.keywords}
    first_seen = {}
    for index, item in enumerate(items):
        first_seen.setdefault(item.path, index)
    items.sort(key=lambda item: (item.path not in slow_files, first_seen[item.path],
                                 "slow" not in item.keywords))  # fmt: skip


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
