import pytest
import torch
import torch.nn.functional as F

from asccl.metric.contrastive import (
    disparity_weights,
    l2_normalize,
    patch_cosines,
    patch_nce,
    random_nce,
    reduce_pair_losses,
)


def unit(*shape, seed=0):
    return l2_normalize(torch.randn(*shape, generator=torch.Generator().manual_seed(seed)))


def authors_patch_nce(f_q, f_k, tau):
    """PatchNCE as the authors (after CUT) write it: (B, C, S) inputs, logits [pos, negs]."""
    b, _, s = f_q.shape
    f_k = f_k.detach()
    l_pos = (f_k * f_q).sum(dim=1)[:, :, None]
    l_neg = torch.bmm(f_q.transpose(1, 2), f_k)
    l_neg.masked_fill_(torch.eye(s, dtype=torch.bool)[None], -float("inf"))
    logits = torch.cat((l_pos, l_neg), dim=2) / tau
    return F.cross_entropy(logits.flatten(0, 1), torch.zeros(b * s, dtype=torch.long))


def test_patch_nce_equals_the_authors_formulation():
    q, k = unit(3, 40, 16, seed=1), unit(3, 40, 16, seed=2)
    pairs, cosine = patch_nce(q, k, 0.07)
    assert pairs.shape == (3, 40) and cosine.shape == (3, 40, 40)
    reference = authors_patch_nce(q.transpose(1, 2), k.transpose(1, 2), 0.07)
    torch.testing.assert_close(pairs.mean(), reference, rtol=1e-5, atol=1e-5)


def test_patch_nce_detaches_keys_and_prefers_matching_pairs():
    q = unit(2, 24, 8, seed=3).requires_grad_()
    k = unit(2, 24, 8, seed=4).requires_grad_()
    matched, _ = patch_nce(q, q.detach().clone(), 0.07)
    unmatched, _ = patch_nce(q, k, 0.07)
    assert matched.mean() < unmatched.mean()
    unmatched.mean().backward()
    assert q.grad is not None and k.grad is None


def test_patch_cosines_are_the_means_of_an_explicit_loop():
    """Cosines that are multiples of 1/8 in float64 (|c| <= 1): every partial sum is exact
    whatever the order; B = 4 divides exactly, so each side divides an exact sum by 20
    (B * S, and S * (S - 1)) once: the helper and the loop round the same reals once."""
    b, s = 4, 5
    generator = torch.Generator().manual_seed(11)
    cosine = torch.randint(-8, 9, (b, s, s), generator=generator, dtype=torch.float64) / 8
    positive, negative = patch_cosines(cosine)
    diagonal = off_diagonal = 0.0
    for i in range(b):
        for row in range(s):
            for column in range(s):
                if row == column:
                    diagonal += cosine[i, row, column].item()
                else:
                    off_diagonal += cosine[i, row, column].item()
    assert positive.shape == negative.shape == ()
    assert positive.item() == diagonal / (b * s)
    assert negative.item() == (off_diagonal / b) / (s * (s - 1))
    # on patch_nce's matrix of a query set against itself the positives are squared norms:
    # (|x| / (|x| + 1e-7))^2 = 1 - 2e-7 / |x| to first order (l2_normalize's eps); every
    # |x| > 1.5 here, so each is within 1.4e-7 of 1, and float32 rounding adds ~1e-7
    q = unit(2, 6, 8, seed=12).double()
    positive, negative = patch_cosines(patch_nce(q, q, 0.07)[1])
    assert abs(positive.item() - 1) < 3e-7 and negative < positive


def test_random_nce_equals_explicit_cross_entropy():
    q, kp, kn = unit(2, 4, 8, 16, seed=5), unit(2, 4, 8, 16, seed=6), unit(2, 4, 5, 16, seed=7)
    pairs, pos, neg = random_nce(q, kp, kn, 0.1)
    assert pairs.shape == (2, 32) and pos.shape == (2, 4, 8) and neg.shape == (2, 4, 8, 5)
    for b in range(2):
        for n in range(4):
            for j in range(8):
                logits = torch.cat([(q[b, n, j] * kp[b, n, j]).sum()[None], kn[b, n] @ q[b, n, j]])
                expected = F.cross_entropy(logits[None] / 0.1, torch.zeros(1, dtype=torch.long))
                torch.testing.assert_close(pairs[b, n * 8 + j], expected, rtol=1e-5, atol=1e-5)


def test_disparity_weights_rule():
    d = torch.tensor([0.0, 1.0, 1.3862944, 1.5, -3.0])  # sigmoid(1.386) = 0.8 exactly
    w = disparity_weights(d)
    t = torch.sigmoid(d.abs())
    expected = torch.where(t > 0.8, 2 * t**2, torch.ones_like(t))
    torch.testing.assert_close(w, expected)
    assert w[0] == 1 and w[1] == 1 and w[3] > 1.28 and w[4] > 1.8


def test_adaptive_pair_weighting_upweights_high_disparity_pairs():
    # pair 0 has small disparities (weight 1), pair 1 large ones (weight ~2)
    disparities = torch.stack([torch.full((2, 16), 0.1), torch.full((2, 16), 4.0)], dim=1)
    losses = torch.tensor([[1.0, 3.0], [2.0, 0.5]], requires_grad=True)
    per_sample = reduce_pair_losses(losses, disparities, "pair")
    assert per_sample.shape == (2,)
    intended = per_sample.mean()
    (grad,) = torch.autograd.grad(intended, losses)
    # the gradient each pair receives is proportional to its weight
    w_high = 2 * torch.sigmoid(torch.tensor(4.0)) ** 2
    torch.testing.assert_close(grad[:, 1] / grad[:, 0], torch.full((2,), float(w_high)))
    assert (grad[:, 1] > 1.9 * grad[:, 0]).all()
    # each sample's value is its own pairs' weighted mean
    weights = torch.tensor([1.0, float(w_high)])
    torch.testing.assert_close(per_sample, (losses * weights).mean(-1))
    # the authors' arithmetic is one global scale: every pair gets the same gradient
    authors = reduce_pair_losses(losses, disparities, "authors").mean()
    (grad_a,) = torch.autograd.grad(authors, losses)
    assert torch.allclose(grad_a, grad_a[0, 0].expand_as(grad_a))
    # and the two reductions give different values
    assert not torch.isclose(intended, authors)
    # the authors' numbers are unchanged: mean(loss) * mean(w) over the whole batch
    expected_authors = losses.mean() * disparity_weights(disparities).mean()
    torch.testing.assert_close(authors, expected_authors)
    torch.testing.assert_close(reduce_pair_losses(losses, disparities, "off"), losses.mean(-1))


def test_per_sample_means_equal_the_batch_reductions():
    """Every sample has S pairs, so the mean of the per-sample values is the batch value of
    each mode (float32: a few ulps apart, the sums are taken in another order)."""
    generator = torch.Generator().manual_seed(10)
    losses = torch.rand(5, 24, generator=generator) * 4
    disparities = torch.randn(5, 24, 16, generator=generator) * 3
    weights = disparity_weights(disparities)
    expected = {
        "pair": (weights.mean(-1) * losses).mean(),
        "authors": losses.mean() * weights.mean(),
        "off": losses.mean(),
    }
    for mode, value in expected.items():
        per_sample = reduce_pair_losses(losses, disparities, mode)
        assert per_sample.shape == (5,)
        torch.testing.assert_close(per_sample.mean(), value, rtol=1e-6, atol=0)


def test_unknown_adaptive_mode():
    with pytest.raises(ValueError, match="unknown adaptive mode"):
        reduce_pair_losses(torch.ones(1, 2), torch.ones(1, 2, 3), "focal")


def test_logits_stay_float32_under_autocast():
    q, k = unit(2, 16, 8, seed=8).bfloat16(), unit(2, 16, 8, seed=9).bfloat16()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        pairs, cosine = patch_nce(q, k, 0.07)
    assert pairs.dtype == torch.float32 and cosine.dtype == torch.float32
