"""Every SPFEM test runs single-threaded (restored afterwards): the generators are tiny and the
renderer runs many small kernels, and two intra-op threads fighting other jobs for 2 cores
slowed them 10-50x (measured: a GANmut example 18.7 s with 2 threads under load, 1.5 s
with 1)."""

from __future__ import annotations

from tests.one_thread import one_thread  # noqa: F401 (autouse: every test here single-threaded)
