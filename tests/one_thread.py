"""An autouse fixture that runs each test single-threaded (torch's intra-op threads
restored afterwards): tiny models and many small kernels run faster so on a busy 2-core
machine than with threads fighting other jobs for the cores. Import it into a test module
or a ``conftest.py`` to apply it there (``from tests.one_thread import one_thread``)."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
