"""Every SPFEM test runs single-threaded (restored afterwards): the generators are tiny and the
renderer runs many small kernels, and two intra-op threads fighting other jobs for 2 cores
slowed them 10-50x (measured: a GANmut example 18.7 s with 2 threads under load, 1.5 s
with 1)."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
