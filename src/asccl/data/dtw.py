"""Dynamic time warping of two feature sequences, and the frame pairs it implies.

Plain DTW: steps (1, 1), (0, 1), (1, 0), unweighted,
``D[i, j] = C[i, j] + min(D[i-1, j-1], D[i, j-1], D[i-1, j])``, D[0, 0] = C[0, 0].
Paths with equal cost are told apart by a tie rule (:data:`TIE_RULES`; the feature preset
of :data:`asccl.data.audio.FEATURE_PRESETS` picks it):

``"librosa"``: candidates in the order diagonal, (i, j-1), (i-1, j); the sum
    ``D[pred] + C[i, j]`` is compared and only a strictly smaller one replaces the best,
    exactly as ``librosa.sequence.dtw`` with its default steps, so paths are identical to
    librosa's, not just their costs.
``"authors"``: the textbook recurrence of the script that made the authors' released pair
    file: the predecessors ``D[pred]`` are compared, the first minimum in the order
    diagonal, (i-1, j), (i, j-1) wins. On the tie of the two non-diagonal moves it goes the
    other way (cost ``[[0,0,0],[0,1,0],[0,0,0]]``: librosa's path passes (2, 1), the
    authors' (1, 2)).

Both rules give the same accumulated costs (rounding is monotone, so
``min(D[p] + c) == min(D[p]) + c``); only the paths differ, and only on exact ties.
The kernels are compiled with numba on first use (about a second; cached on disk after).

The kernels are compiled with numba on first use (about a second; cached on disk after).
"""

from __future__ import annotations

import functools

import numpy as np

from asccl.optional import require

#: Tie rules of :func:`dtw` (see the module's docstring).
TIE_RULES: tuple[str, ...] = ("librosa", "authors")

#: ``metric`` names of :func:`cost_matrix` -> scipy's cdist names.
METRICS: dict[str, str] = {"l1": "cityblock", "euclidean": "euclidean", "cosine": "cosine"}


def cost_matrix(a: np.ndarray, b: np.ndarray, metric: str = "l1") -> np.ndarray:
    """Pairwise frame distances: ``(N, D)``, ``(M, D)`` -> ``(N, M)`` float64.

    ``metric``: ``"l1"`` (sum of absolute differences, the authors'), ``"euclidean"`` or
    ``"cosine"`` (1 - cosine similarity).
    """
    if metric not in METRICS:
        raise ValueError(f"unknown metric {metric!r}; valid: {', '.join(METRICS)}")
    a, b = np.asarray(a), np.asarray(b)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1]:
        raise ValueError(f"features must be (N, D) and (M, D), got {a.shape} and {b.shape}")
    from scipy.spatial.distance import cdist

    return cdist(a.astype(np.float64), b.astype(np.float64), metric=METRICS[metric])


def dtw(cost: np.ndarray, ties: str = "librosa") -> tuple[np.ndarray, float]:
    """Optimal warping path through ``cost`` ``(N, M)``, ties broken by rule ``ties``
    (one of :data:`TIE_RULES`).

    Returns:
        path: ``(L, 2)`` int64 ``(i, j)`` pairs from ``(0, 0)`` to ``(N-1, M-1)``, each step
            one of (1, 1), (0, 1), (1, 0); ``max(N, M) <= L <= N + M - 1``.
        total_cost: ``D[N-1, M-1]``, the sum of ``cost`` along the path.
    """
    acc, steps = _accumulate(cost, ties)
    return _kernels()["backtrack"](steps), float(acc[-1, -1])


def accumulated_cost(cost: np.ndarray, ties: str = "librosa") -> np.ndarray:
    """The accumulated cost matrix ``D`` ``(N, M)`` float64 of :func:`dtw` (the same for
    every tie rule)."""
    return _accumulate(cost, ties)[0]


def frame_pairs(
    path: np.ndarray, n_frames_a: int, n_frames_b: int
) -> tuple[np.ndarray, np.ndarray]:
    """Video frame pairs ``(idx_a, idx_b)``, ``(K,)`` int64 each, from a feature-frame path.

    Features are on the video frame grid (one per frame), so the mapping is the identity;
    indices are then clipped to each video's real frame count (audio often runs a frame or
    two past the video; the authors' file kept such indices, which point past the last
    frame). Clipping can only repeat the last pair, and consecutive identical pairs are
    dropped, so both lists stay equally long and monotone non-decreasing, ``K <= L``.
    """
    path = np.asarray(path)
    if path.ndim != 2 or path.shape[1] != 2 or len(path) == 0:
        raise ValueError(f"path must be (L, 2) with L >= 1, got shape {path.shape}")
    if n_frames_a < 1 or n_frames_b < 1:
        raise ValueError(f"frame counts must be >= 1, got {n_frames_a} and {n_frames_b}")
    idx = np.column_stack(
        (np.clip(path[:, 0], 0, n_frames_a - 1), np.clip(path[:, 1], 0, n_frames_b - 1))
    ).astype(np.int64)
    keep = np.ones(len(idx), dtype=bool)
    keep[1:] = np.any(idx[1:] != idx[:-1], axis=1)
    return idx[keep, 0].copy(), idx[keep, 1].copy()


def alignment_quality(path: np.ndarray, cost: np.ndarray) -> dict[str, float]:
    """Diagnostics of a warping ``path`` ``(L, 2)`` through ``cost`` ``(N, M)``.

    Keys:
        ``mean_step_cost``: path cost / L, in the metric's units (comparable across pairs
            of different lengths; high means the two recordings sound different).
        ``diagonal_fraction``: share of the L - 1 steps that advance both sides, in [0, 1]
            (1.0 for a one-cell path). Low means heavy warping.
        ``max_repeat_a``, ``max_repeat_b``: longest run of path entries sharing one index of
            a (of b), in frames: the longest time that side's frame is held still.
        ``length_ratio``: L / max(N, M), in [1, (N + M - 1) / max(N, M)]; 1 is no warping.
    """
    path = np.asarray(path)
    cost = np.asarray(cost)
    steps = np.diff(path, axis=0)  # (L-1, 2)
    along = cost[path[:, 0], path[:, 1]]
    return {
        "mean_step_cost": float(along.sum() / len(path)),
        "diagonal_fraction": float(np.all(steps == 1, axis=1).mean()) if len(steps) else 1.0,
        "max_repeat_a": float(_longest_run(path[:, 0])),
        "max_repeat_b": float(_longest_run(path[:, 1])),
        "length_ratio": float(len(path) / max(cost.shape)),
    }


def align_audio(
    neutral_feats: np.ndarray,
    emotional_feats: np.ndarray,
    n_neutral_frames: int,
    n_emotional_frames: int,
    metric: str = "l1",
    ties: str = "librosa",
) -> tuple[np.ndarray, np.ndarray, float, dict[str, float]]:
    """DTW of two clips' per-frame features ``(N, D)``, ``(M, D)`` -> video frame pairs,
    ties broken by rule ``ties`` (:data:`TIE_RULES`).

    Returns ``(neutral_idx, emotional_idx, total_cost, quality)``: the clipped frame pairs
    of :func:`frame_pairs`, the DTW cost, and :func:`alignment_quality` of the path.
    """
    cost = cost_matrix(neutral_feats, emotional_feats, metric)
    path, total = dtw(cost, ties)
    idx_n, idx_e = frame_pairs(path, n_neutral_frames, n_emotional_frames)
    return idx_n, idx_e, total, alignment_quality(path, cost)


def _longest_run(values: np.ndarray) -> int:
    """Length of the longest run of equal consecutive values (0 for an empty array)."""
    if len(values) == 0:
        return 0
    starts = np.flatnonzero(np.r_[True, values[1:] != values[:-1], True])
    return int(np.diff(starts).max())


def _accumulate(cost: np.ndarray, ties: str) -> tuple[np.ndarray, np.ndarray]:
    """Checked ``cost`` -> the kernel of rule ``ties``: accumulated costs, step codes."""
    if ties not in TIE_RULES:
        raise ValueError(f"unknown tie rule {ties!r}; valid: {', '.join(TIE_RULES)}")
    acc, steps = _kernels()[ties](_check_cost(cost))
    if not np.isfinite(acc[-1, -1]):
        raise ValueError("the accumulated cost overflows float64 (costs too large)")
    return acc, steps


def _check_cost(cost: np.ndarray) -> np.ndarray:
    cost = np.asarray(cost, dtype=np.float64)
    if cost.ndim != 2 or cost.size == 0:
        raise ValueError(f"cost must be a non-empty (N, M) matrix, got shape {cost.shape}")
    if not np.all(np.isfinite(cost)):
        raise ValueError("cost has NaN or infinite entries")
    return np.ascontiguousarray(cost)


# Plain-Python kernels: compiled by numba in _kernels(), readable (and testable) as they are.
_DIAG, _ADVANCE_B, _ADVANCE_A = 0, 1, 2  # step codes, in tie-breaking order


def _accumulate_py(cost: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """librosa's rule: ``(N, M)`` costs -> accumulated costs ``(N, M)`` float64, step codes
    ``(N, M)`` int8."""
    n, m = cost.shape
    acc = np.empty((n, m), dtype=np.float64)
    steps = np.zeros((n, m), dtype=np.int8)
    for i in range(n):
        for j in range(m):
            c = cost[i, j]
            if i == 0 and j == 0:
                acc[i, j] = c
                continue
            best = np.inf
            step = _DIAG
            # Candidates in librosa's order; the sum is compared (not the predecessor) and
            # only a strictly smaller one replaces the best, as librosa does.
            if i > 0 and j > 0 and acc[i - 1, j - 1] + c < best:
                best = acc[i - 1, j - 1] + c
            if j > 0 and acc[i, j - 1] + c < best:
                best = acc[i, j - 1] + c
                step = _ADVANCE_B
            if i > 0 and acc[i - 1, j] + c < best:
                best = acc[i - 1, j] + c
                step = _ADVANCE_A
            acc[i, j] = best
            steps[i, j] = step
    return acc, steps


def _accumulate_authors_py(cost: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The authors' rule: as :func:`_accumulate_py`, but the predecessors are compared
    (the first minimum in the order diagonal, (i-1, j), (i, j-1) wins) and then ``C[i, j]``
    added."""
    n, m = cost.shape
    acc = np.empty((n, m), dtype=np.float64)
    steps = np.zeros((n, m), dtype=np.int8)
    for i in range(n):
        for j in range(m):
            if i == 0 and j == 0:
                acc[i, j] = cost[i, j]
                continue
            best = np.inf
            step = _DIAG
            if i > 0 and j > 0:
                best = acc[i - 1, j - 1]
            if i > 0 and (acc[i - 1, j] < best or j == 0):
                best = acc[i - 1, j]
                step = _ADVANCE_A
            if j > 0 and (acc[i, j - 1] < best or i == 0):
                best = acc[i, j - 1]
                step = _ADVANCE_B
            acc[i, j] = best + cost[i, j]
            steps[i, j] = step
    return acc, steps


def _backtrack_py(steps: np.ndarray) -> np.ndarray:
    """Step codes ``(N, M)`` -> path ``(L, 2)`` int64 from (0, 0) to (N-1, M-1)."""
    n, m = steps.shape
    out = np.empty((n + m - 1, 2), dtype=np.int64)
    i, j = n - 1, m - 1
    k = n + m - 2
    out[k, 0] = i
    out[k, 1] = j
    while i > 0 or j > 0:
        step = steps[i, j]
        if step == _DIAG:
            i -= 1
            j -= 1
        elif step == _ADVANCE_B:
            j -= 1
        else:
            i -= 1
        k -= 1
        out[k, 0] = i
        out[k, 1] = j
    return out[k:].copy()


@functools.cache
def _kernels() -> dict:
    """numba-compiled kernels: each rule of :data:`TIE_RULES` -> its accumulate, and
    ``"backtrack"``; compiled once, cached on disk."""
    numba = require("numba", "DTW needs numba")
    jit = numba.njit(cache=True, nogil=True)
    return {
        "librosa": jit(_accumulate_py),
        "authors": jit(_accumulate_authors_py),
        "backtrack": jit(_backtrack_py),
    }
