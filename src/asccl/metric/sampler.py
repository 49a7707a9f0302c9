"""Region sampling: anchors, their 8 neighbours, and visual disparities ``f[i] - f[j]``.

A *region* is one location of a stage's feature map. For an anchor ``i`` the positive
disparities are ``f[i] - f[j]`` for its 8 neighbours ``j`` (the 3x3 window without its
centre), taken at the same indices on both images. Indices are drawn once and returned
(:class:`Regions`), so the paired image, or a later call, reuses them exactly, as CUT's
``PatchSampleF`` does.

Anchors come from the central window of side ``int(H // 2 + 0.45 * H)`` (the authors'
rule). By default the window is also shrunk so that every neighbour lies inside the map;
``authors_window=True`` keeps their window as is, where at a 14x14 stage-4 map the border
is 0 and a neighbour at index -1 wraps to the far edge (PyTorch's negative indexing).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from asccl.metric.config import anchor_window

#: (row, col) offsets of the 8 neighbours, in the authors' order (row-major, centre skipped).
NEIGHBOUR_OFFSETS: tuple[tuple[int, int], ...] = (
    (-1, -1), (-1, 0), (-1, 1),
    (0, -1),           (0, 1),
    (1, -1),  (1, 0),  (1, 1),
)  # fmt: skip


@dataclass(frozen=True)
class Regions:
    """Sampled regions on one ``height x width`` feature map, as flat indices ``row * width + col``.

    ``G`` is 1 when the locations are shared by every image of the batch, else the batch size.

    Attributes:
        anchor_index: ``(G, N)`` long, the N anchors.
        neighbour_index: ``(G, N, 8)`` long, each anchor's 8 neighbours (inside the map).
        negative_index: ``(G, N, K)`` long or ``None``: regions ``k`` whose disparities
            ``y[i] - y[k]`` serve as negatives in ``"random"`` mode.
        height, width: size of the feature map the indices refer to.
    """

    anchor_index: Tensor
    neighbour_index: Tensor
    negative_index: Tensor | None
    height: int
    width: int

    @property
    def num_pairs(self) -> int:
        """Number of (anchor, neighbour) pairs per image, ``S = N * 8``."""
        return self.neighbour_index.shape[1] * self.neighbour_index.shape[2]

    def to(self, device: torch.device | str) -> Regions:
        """The same regions with index tensors on ``device``."""
        move = lambda t: None if t is None else t.to(device, non_blocking=True)  # noqa: E731
        return Regions(
            move(self.anchor_index),
            move(self.neighbour_index),
            move(self.negative_index),
            self.height,
            self.width,
        )


def _neighbours(rows: Tensor, cols: Tensor, height: int, width: int) -> Tensor:
    """Flat indices ``(..., 8)`` of the neighbours of anchors at ``rows, cols`` (``(...)``).

    Coordinates wrap modulo the map size, which only happens with the authors' window and
    reproduces their negative indexing; inside the default window it is the identity.
    """
    offsets = torch.tensor(NEIGHBOUR_OFFSETS, dtype=torch.long, device=rows.device)
    nr = (rows[..., None] + offsets[:, 0]).remainder(height)
    nc = (cols[..., None] + offsets[:, 1]).remainder(width)
    return nr * width + nc


def _random_negatives(
    anchor_index: Tensor,
    neighbour_index: Tensor,
    height: int,
    width: int,
    num_negatives: int,
    generator: torch.Generator | None,
) -> Tensor:
    """``(G, N, K)`` regions drawn uniformly (with replacement) from the whole map,
    excluding each anchor and its 8 neighbours, so that no negative equals a positive."""
    excluded = torch.cat([anchor_index[..., None], neighbour_index], dim=-1)  # (G, N, 9)
    excluded = excluded.sort(dim=-1).values
    g, n = anchor_index.shape
    u = torch.randint(0, height * width - 9, (g, n, num_negatives), generator=generator)
    # Map u to the u-th location not in `excluded`: step over each excluded index in order.
    for m in range(excluded.shape[-1]):
        u = u + (u >= excluded[..., m : m + 1]).long()
    return u


def sample_regions(
    height: int,
    width: int,
    num_anchors: int,
    *,
    batch_size: int = 1,
    per_image: bool = False,
    authors_window: bool = False,
    num_negatives: int = 0,
    generator: torch.Generator | None = None,
) -> Regions:
    """Draw ``num_anchors`` distinct anchors and their neighbours on a ``height x width`` map.

    Args:
        height, width: feature map size.
        num_anchors: anchors N to draw (without replacement) from the central window.
        batch_size: images in the batch; used when ``per_image``.
        per_image: draw different locations for each image (``G = batch_size``) instead of
            one set for the whole batch (``G = 1``, the authors' behaviour).
        authors_window: keep the authors' window, whose neighbours can wrap (see module doc).
        num_negatives: K random regions per anchor for ``"random"`` negatives (0: none).
        generator: CPU ``torch.Generator`` for reproducible draws; ``None`` uses the global one.

    Returns:
        :class:`Regions` with CPU index tensors (move them with :meth:`Regions.to`).
    """
    r0, r1 = anchor_window(height, authors_window=authors_window)
    c0, c1 = anchor_window(width, authors_window=authors_window)
    positions = (r1 - r0) * (c1 - c0)
    if num_anchors > positions:
        raise ValueError(
            f"cannot draw {num_anchors} anchors from a {height}x{width} map: its anchor window "
            f"has only {positions} locations"
        )
    groups = batch_size if per_image else 1
    if groups == 1:
        drawn = torch.randperm(positions, generator=generator)[:num_anchors][None]
    else:
        drawn = torch.rand(groups, positions, generator=generator).argsort(dim=1)[:, :num_anchors]
    rows = r0 + drawn // (c1 - c0)  # (G, N)
    cols = c0 + drawn % (c1 - c0)
    anchor_index = rows * width + cols
    neighbour_index = _neighbours(rows, cols, height, width)
    negative_index = None
    if num_negatives > 0:
        negative_index = _random_negatives(
            anchor_index, neighbour_index, height, width, num_negatives, generator
        )
    return Regions(anchor_index, neighbour_index, negative_index, height, width)


def sample_regions_as_authors(size: int, num_anchors: int, rng: np.random.RandomState) -> Regions:
    """The authors' exact draw: shuffle the window's ``(row, col)`` grid with numpy, keep
    the first ``num_anchors``; their window, wrapping neighbours, one set for the batch.

    With ``rng = np.random.RandomState(s)`` this reproduces their code run after
    ``np.random.seed(s)``, draw for draw. For comparison and checkpoint reproduction only;
    :func:`sample_regions` is the sampler to use.
    """
    side = int(size // 2 + 0.45 * size)
    border = (size - side) // 2
    grid = np.indices((side, side)).reshape(2, -1).T + border
    rng.shuffle(grid)
    chosen = torch.from_numpy(grid[:num_anchors].astype(np.int64))
    rows, cols = chosen[None, :, 0], chosen[None, :, 1]
    neighbour_index = _neighbours(rows, cols, size, size)
    return Regions(rows * size + cols, neighbour_index, None, size, size)


def gather_disparities(features: Tensor, anchor_index: Tensor, other_index: Tensor) -> Tensor:
    """Visual disparities ``f[i] - f[j]`` for anchors ``i`` and other regions ``j``.

    Args:
        features: ``(B, C, H, W)`` stage features (any memory format).
        anchor_index: ``(G, N)`` flat anchor indices, ``G`` in ``{1, B}``.
        other_index: ``(G, N, M)`` flat indices of the regions paired with each anchor
            (its 8 neighbours, or K random regions).

    Returns:
        ``(B, N, M, C)`` contiguous disparities, anchor-major (the authors' order after
        reshaping to ``(B, N * M, C)``).
    """
    b, c = features.shape[:2]
    g, n, m = other_index.shape
    # One gather per call: anchors and their partners together, so the backward pass
    # scatters into a single full-size gradient map instead of two.
    index = torch.cat([anchor_index[..., None], other_index], dim=-1)  # (G, N, 1 + M)
    flat = features.flatten(2)  # (B, C, H*W); a view for contiguous and channels_last
    if g == 1:
        picked = flat.index_select(2, index.reshape(-1))
    elif g == b:
        picked = flat.gather(2, index.reshape(b, 1, -1).expand(b, c, -1))
    else:
        raise ValueError(f"regions were drawn for {g} images, features have {b}")
    picked = picked.view(b, c, n, 1 + m)
    # (B, N, M, C), contiguous so each head runs as one matrix product
    return (picked[..., :1] - picked[..., 1:]).permute(0, 2, 3, 1).contiguous()
