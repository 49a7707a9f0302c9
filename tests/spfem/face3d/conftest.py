"""The renderer's many small kernels slow down by 10-50x when two intra-op threads fight other
jobs for 2 cores: these tests run single-threaded (restored afterwards)."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True)
def single_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
