"""DTW-partner retrieval: does a metric find a neutral frame's partner among the emotional
clip's frames? Pure scoring functions behind ``asccl metric evaluate``
(:mod:`asccl.metric.health`).

The **coherence score** of a (neutral, emotional) frame pair is minus the metric's ASCCL
loss with the neutral frame as the query and the emotional frame as the key, on fixed
regions: exactly :meth:`ASCCLMetric.contrast`'s ``per_sample`` (``loss_scale`` times the
sum of the four stages' reduced InfoNCE), and per stage its ``per_stage`` column. It is
computed from per-frame embeddings of the sampled disparities, so each frame runs through
the backbone and the heads once, not once per pair (the test checks it against
:meth:`~asccl.metric.model.ASCCLMetric.contrast`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from math import comb

import numpy as np
import torch
from torch import Tensor

from asccl.metric.contrastive import patch_cosines, patch_nce, random_nce, reduce_pair_losses
from asccl.metric.model import ASCCLMetric
from asccl.metric.sampler import Regions, gather_disparities

#: the retrieval ranks reported: top-1 and top-5
TOP_K: tuple[int, ...] = (1, 5)


@dataclass(frozen=True)
class FrameEmbeddings:
    """One stage's embeddings of a batch of frames on fixed regions.

    Attributes:
        disparities: ``(B, N, 8, C)`` raw disparities (the query side's adaptive weights
            read them).
        positives: ``(B, N, 8, D)`` unit embeddings of the anchor-neighbour disparities.
        negatives: ``(B, N, K, D)`` unit embeddings of the anchor-random region
            disparities (``"random"`` negatives), else ``None``.
    """

    disparities: Tensor
    positives: Tensor
    negatives: Tensor | None


@torch.no_grad()
def embed_frames(
    metric: ASCCLMetric, images: Tensor, regions: Sequence[Regions]
) -> list[FrameEmbeddings]:
    """Per stage :class:`FrameEmbeddings` of ``(B, 3, S, S)`` metric inputs in [-1, 1]
    (regions drawn for one shared set, ``G = 1``). Runs in the metric's current mode."""
    embedded = []
    for stage, (feat, reg) in enumerate(zip(metric.features(images), regions, strict=True)):
        d = gather_disparities(feat, reg.anchor_index, reg.neighbour_index)
        negatives = None
        if metric.config.negatives == "random":
            if reg.negative_index is None:
                raise ValueError("'random' negatives need regions drawn with num_negatives")
            dn = gather_disparities(feat, reg.anchor_index, reg.negative_index)
            negatives = metric.heads(stage, dn)
        embedded.append(FrameEmbeddings(d, metric.heads(stage, d), negatives))
    return embedded


def cat_embeddings(chunks: Sequence[list[FrameEmbeddings]]) -> list[FrameEmbeddings]:
    """Concatenate per-stage embeddings of several batches along the batch dimension."""
    cat = lambda ts: None if ts[0] is None else torch.cat(ts)  # noqa: E731
    return [
        FrameEmbeddings(*(cat([getattr(c[s], f) for c in chunks])
                          for f in ("disparities", "positives", "negatives")))
        for s in range(len(chunks[0]))
    ]  # fmt: skip


@dataclass(frozen=True)
class PairScores:
    """What :func:`coherence_losses` returns.

    Attributes:
        losses: ``(Q, E, 4)``: entry ``[i, j]`` is ``metric.contrast(query_i,
            key_j).per_stage`` (before ``loss_scale``); lower is more coherent.
        positive_cosine, negative_cosine: ``(Q, 4)`` the health cosines of each query with
            its partner key, as ``metric.contrast(query_i, key_partner_i, health=True)``
            gives them (:class:`~asccl.metric.model.MetricHealth`).
    """

    losses: Tensor
    positive_cosine: Tensor
    negative_cosine: Tensor


@torch.no_grad()
def coherence_losses(
    metric: ASCCLMetric,
    queries: list[FrameEmbeddings],
    keys: list[FrameEmbeddings],
    partner: Sequence[int],
) -> PairScores:
    """ASCCL loss of every (query, key) frame pair per stage, and the health cosines of
    each query with its partner.

    Args:
        metric: the metric whose settings (temperature, negatives, adaptive weighting)
            apply.
        queries: :func:`embed_frames` of ``Q`` neutral frames.
        keys: :func:`embed_frames` of ``E`` emotional frames, on the same regions.
        partner: ``(Q,)`` each query's partner, an index into ``keys``.
    """
    cfg = metric.config
    num_queries = queries[0].positives.shape[0]
    num_keys = keys[0].positives.shape[0]
    rows, positive, negative = [], [], []
    for i in range(num_queries):
        j = int(partner[i])
        stages, pos, neg = [], [], []
        for q, k in zip(queries, keys, strict=True):
            # query i against every key: broadcast (a view, no copies); the adaptive weights
            # depend on the query's disparities only, so they are computed once
            q_pos, q_disp = q.positives[i : i + 1], q.disparities[i : i + 1].flatten(1, 2)
            if cfg.negatives == "patch":
                q_all = q_pos.flatten(1, 2).expand(num_keys, -1, -1)
                pairs, cosine = patch_nce(q_all, k.positives.flatten(1, 2), cfg.temperature)
                pos_j, neg_j = patch_cosines(cosine[j : j + 1])  # with its partner
                pos.append(pos_j)
                neg.append(neg_j)
            else:
                pairs, p, n = random_nce(q_pos, k.positives, k.negatives, cfg.temperature)
                pos.append(p[j].mean())
                neg.append(n[j].mean())
            stages.append(
                reduce_pair_losses(pairs, q_disp, cfg.adaptive, cfg.adaptive_threshold)
            )  # (E,): the (1, S, C) weights broadcast over the keys
        rows.append(torch.stack(stages, dim=-1))  # (E, 4)
        positive.append(torch.stack(pos))
        negative.append(torch.stack(neg))
    return PairScores(torch.stack(rows), torch.stack(positive), torch.stack(negative))


def pixel_distances(neutral: Tensor, emotional: Tensor) -> Tensor:
    """``(Q, E)`` mean squared difference of ``(Q, ...)`` and ``(E, ...)`` frames (any
    dtype; float64 inside): the plain pixel-L2 baseline (lower is closer)."""
    a = neutral.flatten(1).double()
    b = emotional.flatten(1).double()
    return (a.square().sum(1)[:, None] + b.square().sum(1)[None] - 2 * a @ b.T).clamp_min(0) / (
        a.shape[1]
    )


def near_partner(
    candidates: np.ndarray, partners: Sequence[np.ndarray], tolerance: int
) -> np.ndarray:
    """``(Q, E)`` bool: candidate frame ``candidates[j]`` lies within ``tolerance`` frames of
    one of query ``i``'s DTW partners ``partners[i]`` (a neutral frame may have several
    where DTW stretched time)."""
    cand = np.asarray(candidates)
    return np.stack(
        [(np.abs(cand[:, None] - np.asarray(p)[None]) <= tolerance).any(1) for p in partners]
    )


def retrieval_hits(
    losses: Tensor | np.ndarray,
    candidates: np.ndarray,
    partners: Sequence[np.ndarray],
    tolerance: int = 1,
    ks: Sequence[int] = TOP_K,
) -> np.ndarray:
    """``(Q, len(ks))`` float in [0, 1]: whether a candidate within ``tolerance`` frames of
    the query's DTW partner is among the ``k`` candidates of lowest loss (distance), with
    ties broken by a uniformly random order of the tied candidates, in expectation.

    Candidates strictly below the ``k``-th smallest value ``v`` are all in the top ``k``;
    the remaining ``r`` places go to ``r`` of the ``t`` candidates equal to ``v``, drawn at
    random. So a query scores 1 if a near candidate is below ``v``, else ``1 - C(t - m, r) /
    C(t, r)`` with ``m`` near candidates among the tied: 0 or 1 without ties, and exactly
    :func:`chance_hits` for a collapsed metric (every loss equal). Ties are exact equality
    of the values as given (after a lossless cast to float64): losses equal only up to
    rounding are not tied. NaN ranks last (tied with the other NaNs).

    Args:
        losses: ``(Q, E)`` query-candidate losses or distances (lower ranks first).
        candidates: ``(E,)`` the candidates' frame indices in the emotional clip.
        partners: per query, its partner frame indices from the DTW path.
    """
    values = np.asarray(losses, dtype=np.float64)
    values = np.where(np.isnan(values), np.inf, values)  # NaN: last, tied together
    near = near_partner(candidates, partners, tolerance)
    if any(k < 1 for k in ks):
        raise ValueError(f"top-k ranks must be >= 1, got {tuple(ks)}")
    kth = np.sort(values, axis=1)
    hits = np.empty((values.shape[0], len(ks)))
    for i, (row, row_near, row_sorted) in enumerate(zip(values, near, kth, strict=True)):
        for c, k in enumerate(ks):
            if k >= len(row):  # every candidate is in the top k
                hits[i, c] = float(row_near.any())
                continue
            v = row_sorted[k - 1]
            below, tied = row < v, row == v
            if row_near[below].any():
                hits[i, c] = 1.0
                continue
            t, m, r = int(tied.sum()), int(row_near[tied].sum()), k - int(below.sum())
            hits[i, c] = 1 - comb(t - m, r) / comb(t, r)  # exact integers, one rounding
    return hits


def chance_hits(
    candidates: np.ndarray,
    partners: Sequence[np.ndarray],
    tolerance: int = 1,
    ks: Sequence[int] = TOP_K,
) -> np.ndarray:
    """``(Q, len(ks))`` the probability of a hit under a uniformly random ranking:
    ``1 - C(E - m, k) / C(E, k)`` with ``m`` candidates near the partner."""
    near = near_partner(candidates, partners, tolerance)
    e = near.shape[1]
    return np.array(
        [[1 - comb(e - int(m), k) / comb(e, k) if k <= e else float(m > 0) for k in ks]
         for m in near.sum(1)]
    )  # fmt: skip


__all__ = [
    "TOP_K",
    "FrameEmbeddings",
    "PairScores",
    "cat_embeddings",
    "chance_hits",
    "coherence_losses",
    "embed_frames",
    "near_partner",
    "pixel_distances",
    "retrieval_hits",
]
