"""DTW-partner retrieval with tied losses: a tie counts as its expected hit rate under a
uniformly random order of the tied candidates (:func:`asccl.metric.retrieval.retrieval_hits`),
so a collapsed metric scores chance, not a hit for whichever candidate comes first."""

from __future__ import annotations

from itertools import permutations

import numpy as np
import torch

from asccl.metric import ASCCLMetric, MetricConfig, retrieval


def _partners(frames) -> list[np.ndarray]:
    return [np.atleast_1d(np.asarray(f)) for f in frames]


def test_constant_losses_score_exactly_chance():
    # a collapsed metric: every candidate ties, so the top k is a uniformly random k-subset,
    # the very definition of chance_hits (the same integer formula: exact equality)
    candidates = np.arange(60)
    partners = _partners(np.linspace(0, 59, 8).round().astype(int))
    for tolerance in (0, 1, 3):
        hits = retrieval.retrieval_hits(np.zeros((8, 60)), candidates, partners, tolerance)
        chance = retrieval.chance_hits(candidates, partners, tolerance)
        np.testing.assert_array_equal(hits, chance)
    # and with k past the number of candidates: every candidate is in
    few = retrieval.retrieval_hits(np.ones((2, 3)), np.arange(3), _partners([0, 9]), 0, (1, 5))
    np.testing.assert_array_equal(few, retrieval.chance_hits(np.arange(3), _partners([0, 9]),
                                                              0, (1, 5)))  # fmt: skip


def test_a_partial_tie_at_the_k_boundary_by_hand():
    # 6 candidates; sorted: 0.1 (c1), then c0, c2, c4 tied at 0.4, then 0.7 (c5), 0.9 (c3)
    losses = np.array([0.4, 0.1, 0.4, 0.9, 0.4, 0.7])
    ks = (1, 2, 3, 4, 6)
    # near = {c4}: below v never; in the 3-way tie with r = k - 1 places left:
    # k=1: v = 0.1, no near tied -> 0; k=2: 1 - C(2,1)/C(3,1) = 1/3;
    # k=3: 1 - C(2,2)/C(3,2) = 2/3; k=4: r = 3 takes the whole tie -> 1; k=6 -> 1
    # near = {c1}: strictly below v for every k >= 2, and the top-1 itself -> all 1
    # near = {c0, c2}: k=2: 1 - C(1,1)/C(3,1) = 2/3; k=3: 1 - C(1,2)/C(3,2) = 1
    # near = {c3}: only k = 6 (every candidate) reaches it
    partners = _partners([4, 1, [0, 2], 3])
    hits = retrieval.retrieval_hits(np.tile(losses, (4, 1)), np.arange(6), partners, 0, ks)
    expected = [[0, 1 / 3, 2 / 3, 1, 1], [1, 1, 1, 1, 1], [0, 2 / 3, 1, 1, 1], [0, 0, 0, 0, 1]]
    # 1 - a/b with small integers: one float division and one subtraction, each rounded
    # to within half an ulp of values <= 1, so 1e-15 covers both
    np.testing.assert_allclose(hits, expected, rtol=0, atol=1e-15)


def test_ties_equal_the_mean_over_every_tie_breaking_order():
    # integer losses in {0, 1, 2}: many ties. Enumerate all 720 orders of the 6 candidates,
    # rank by (loss, position in the order) and average the 0/1 hits: the exact expectation
    rng = np.random.default_rng(0)
    losses = rng.integers(0, 3, size=(5, 6)).astype(np.float64)
    candidates = np.arange(6)
    partners = _partners([0, 2, 3, 5, [1, 4]])
    ks = (1, 2, 3, 5)
    near = retrieval.near_partner(candidates, partners, tolerance=0)
    total = np.zeros((5, len(ks)))
    orders = list(permutations(range(6)))
    for order in orders:
        position = np.empty(6)
        position[list(order)] = np.arange(6)
        for i in range(5):
            ranked = near[i][np.lexsort((position, losses[i]))]
            total[i] += [ranked[:k].any() for k in ks]
    hits = retrieval.retrieval_hits(losses, candidates, partners, 0, ks)
    # the mean of 720 exact 0/1 counts is a ratio of integers < 2^53: one rounding each
    np.testing.assert_allclose(hits, total / len(orders), rtol=0, atol=1e-15)


def test_ties_are_exact_equality_of_the_values_given():
    # 0.1 + 0.2 != 0.3 in float64: not tied, the smaller one (0.3, candidate 1) ranks first
    candidates, partners = np.arange(2), _partners([1])
    hits = retrieval.retrieval_hits(np.array([[0.1 + 0.2, 0.3]]), candidates, partners, 0, (1,))
    assert hits.tolist() == [[1.0]]
    # float32 equal values stay equal when cast to float64: tied, half a hit
    tied = torch.tensor([[0.3, 0.3]], dtype=torch.float32)
    assert retrieval.retrieval_hits(tied, candidates, partners, 0, (1,)).tolist() == [[0.5]]
    # NaN ranks last, tied with the other NaNs: an all-NaN row scores chance
    nan = retrieval.retrieval_hits(np.full((1, 4), np.nan), np.arange(4), partners, 0, (1, 2))
    np.testing.assert_array_equal(nan, retrieval.chance_hits(np.arange(4), partners, 0, (1, 2)))
    assert retrieval.retrieval_hits(np.array([[np.nan, 5.0]]), candidates, partners, 0, (1,)
                                    ).tolist() == [[1.0]]  # fmt: skip


def test_a_collapsed_metric_scores_chance_through_the_real_scoring_path():
    # the heads' last Linear layers output a constant: every embedding is the same vector,
    # so every (query, key) loss ties exactly within a query
    torch.manual_seed(0)
    config = MetricConfig(backbone="iresnet18", image_size=64, num_anchors=(8, 4, 4, 2))
    metric = ASCCLMetric(config).eval()
    with torch.no_grad():
        for module in metric.heads.modules():
            if isinstance(module, torch.nn.Linear) and module.out_features < module.in_features:
                module.weight.zero_()
                module.bias.fill_(1.0)
    num_keys, num_queries = 16, 4
    frames = torch.rand(num_keys, 3, 64, 64, generator=torch.Generator().manual_seed(1)) * 2 - 1
    regions = metric.sample_regions(1, generator=torch.Generator().manual_seed(0))
    keys = retrieval.embed_frames(metric, frames, regions)
    queries = np.linspace(0, num_keys - 1, num_queries).round().astype(int)
    scores = retrieval.coherence_losses(
        metric, retrieval.embed_frames(metric, frames[queries], regions), keys, list(queries)
    )
    losses = scores.losses.sum(-1)
    assert all(torch.unique(row).numel() == 1 for row in losses)  # collapsed: one value a row
    candidates, partners = np.arange(num_keys), _partners(queries)
    np.testing.assert_array_equal(
        retrieval.retrieval_hits(losses, candidates, partners),
        retrieval.chance_hits(candidates, partners),
    )
