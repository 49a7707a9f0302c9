"""The contrastive maths of ASCCL as pure functions (no parameters, no randomness).

Notation: ``q`` are query embeddings (from the image whose gradients we want), ``k`` key
embeddings (the other image; always detached here). Both are L2-normalised, so a dot
product is a cosine similarity. ``S = N * 8`` (anchor, neighbour) pairs per image.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

AdaptiveMode = Literal["pair", "authors", "off"]


def _full_precision(x: Tensor) -> torch.autocast:
    """Disable autocast: logits are computed in float32 even inside an AMP region."""
    return torch.autocast(device_type=x.device.type, enabled=False)


def _wide(x: Tensor) -> Tensor:
    """``x`` in float32, or float64 if it is float64 (a float64 metric stays float64)."""
    return x if x.dtype == torch.float64 else x.float()


def l2_normalize(x: Tensor, eps: float = 1e-7) -> Tensor:
    """``x / (||x||_2 + eps)`` over the last dimension (the authors' ``Normalize``)."""
    return x / (x.norm(dim=-1, keepdim=True) + eps)


def patch_nce(q: Tensor, k: Tensor, temperature: float) -> tuple[Tensor, Tensor]:
    """InfoNCE with every other pair of the same image as a negative (PatchNCE; the
    authors' code).

    For pair ``s``, ``loss_s = -log(exp(q_s.k_s / T) / sum_t exp(q_s.k_t / T))``: the
    positive is ``k_s`` and the negatives are the other ``S - 1`` keys of the same image.
    This equals cross-entropy on logits ``[pos, neg_1 .. neg_{S-1}]`` with target 0.

    Args:
        q: ``(B, S, D)`` unit query embeddings.
        k: ``(B, S, D)`` unit key embeddings (detached inside).
        temperature: softmax temperature (0.07).

    Returns:
        ``(B, S)`` per-pair losses (float32; float64 for float64 inputs) and the
        ``(B, S, S)`` cosine matrix (detached).
    """
    with _full_precision(q):
        cosine = torch.bmm(_wide(q), _wide(k.detach()).transpose(1, 2))  # (B, S, S)
    logits = cosine / temperature
    loss = torch.logsumexp(logits, dim=-1) - logits.diagonal(dim1=1, dim2=2)
    return loss, cosine.detach()


def patch_cosines(cosine: Tensor) -> tuple[Tensor, Tensor]:
    """The health cosines of :func:`patch_nce`'s cosine matrix: the mean positive (the
    diagonal, ``q_s . k_s``) and the mean negative (every off-diagonal ``q_s . k_t``,
    ``t != s``: ``(sum - trace) / (S * (S - 1))`` per matrix), averaged over the batch.

    Args:
        cosine: ``(B, S, S)`` cosines, ``S >= 2``.

    Returns:
        Two scalars: the mean positive and the mean negative cosine.
    """
    s = cosine.shape[-1]
    diagonal = cosine.diagonal(dim1=1, dim2=2)  # (B, S)
    off_diagonal = cosine.sum((1, 2)) - diagonal.sum(-1)  # (B,)
    return diagonal.mean(), off_diagonal.mean() / (s * (s - 1))


def random_nce(
    q: Tensor, k_pos: Tensor, k_neg: Tensor, temperature: float
) -> tuple[Tensor, Tensor, Tensor]:
    """InfoNCE with K random regions per anchor as negatives (the paper's description).

    For anchor ``i`` and neighbour ``j``: positive ``y_{i->j}``, negatives ``y_{i->k}`` for
    the K regions ``k`` drawn for anchor ``i``.

    Args:
        q: ``(B, N, 8, D)`` query embeddings of ``x_{i->j}``.
        k_pos: ``(B, N, 8, D)`` key embeddings of ``y_{i->j}`` (detached inside).
        k_neg: ``(B, N, K, D)`` key embeddings of ``y_{i->k}`` (detached inside).

    Returns:
        ``(B, N * 8)`` per-pair losses, ``(B, N, 8)`` positive and ``(B, N, 8, K)``
        negative cosines (detached).
    """
    q = _wide(q)
    pos = (q * _wide(k_pos.detach())).sum(-1)  # (B, N, 8)
    with _full_precision(q):
        neg = q @ _wide(k_neg.detach()).transpose(-1, -2)  # (B, N, 8, K)
    logits = torch.cat([pos[..., None], neg], dim=-1) / temperature
    loss = torch.logsumexp(logits, dim=-1) - pos / temperature
    return loss.flatten(1), pos.detach(), neg.detach()


def disparity_weights(disparities: Tensor, threshold: float = 0.8) -> Tensor:
    """Element-wise adaptive weights: ``t = sigmoid(|d|)``, ``2 t^2`` where ``t > threshold``,
    else 1. Shape as ``disparities``; values in [1, 2)."""
    t = torch.sigmoid(_wide(disparities.abs()))
    return torch.where(t > threshold, 2 * t * t, torch.ones_like(t))


def reduce_pair_losses(
    pair_losses: Tensor, disparities: Tensor, mode: AdaptiveMode, threshold: float = 0.8
) -> Tensor:
    """Reduce ``(B, S)`` per-pair losses to ``(B,)`` per-sample losses, with the
    disparity-aware weighting. The batch loss is their mean (every sample has ``S`` pairs).

    Args:
        pair_losses: ``(B, S)`` InfoNCE terms.
        disparities: ``(B, S, C)`` raw query disparities ``x_{i->j}`` (before the head).
        mode:
            ``"pair"`` (default, the intended behaviour): each pair gets the weight
            ``w_s = mean_c w_{s,c}`` (element-wise weights averaged over channels, so
            ``w_s`` in [1, 2) grows with the share and size of large disparities), and a
            sample's loss is ``mean_s(w_s * loss_s)``. Weights are detached: they rank pairs,
            they are not optimised. Pairs with larger disparities get larger gradients.
            ``"authors"``: the authors' arithmetic, ``mean(loss) * mean(w)`` over the whole
            batch: one global scale (weights not detached, as in their code). Per sample it
            is ``mean_s(loss_bs) * mean(w)`` with the batch's ``mean(w)``, so the mean over
            samples is exactly their number and a sample's value depends on its batch.
            ``"off"``: ``mean_s(loss_s)``.

    Returns:
        ``(B,)`` per-sample losses.
    """
    if mode == "off":
        return pair_losses.mean(-1)
    weights = disparity_weights(disparities, threshold)  # (B, S, C)
    if mode == "pair":
        return (weights.mean(-1).detach() * pair_losses).mean(-1)
    if mode == "authors":
        return pair_losses.mean(-1) * weights.mean()
    raise ValueError(f"unknown adaptive mode {mode!r}; valid: 'pair', 'authors', 'off'")
