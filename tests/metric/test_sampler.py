import numpy as np
import pytest
import torch

from asccl.metric.sampler import (
    NEIGHBOUR_OFFSETS,
    anchor_window,
    gather_disparities,
    sample_regions,
    sample_regions_as_authors,
)

STAGE_SIZES = (112, 56, 28, 14)  # a 224 input
COUNTS = (32, 16, 8, 4)


def coords(flat, width):
    return flat // width, flat % width


@pytest.mark.parametrize(("size", "count"), list(zip(STAGE_SIZES, COUNTS, strict=True)))
@pytest.mark.parametrize("per_image", [False, True])
def test_anchors_and_neighbours_inside_map(size, count, per_image):
    g = torch.Generator().manual_seed(1)
    reg = sample_regions(size, size, count, batch_size=3, per_image=per_image, generator=g)
    groups = 3 if per_image else 1
    assert reg.anchor_index.shape == (groups, count)
    assert reg.neighbour_index.shape == (groups, count, 8)
    ar, ac = coords(reg.anchor_index, size)
    nr, nc = coords(reg.neighbour_index, size)
    # every anchor and neighbour is inside the map, anchors are distinct per image
    assert ar.min() >= 1 and ar.max() <= size - 2 and ac.min() >= 1 and ac.max() <= size - 2
    assert nr.min() >= 0 and nr.max() < size and nc.min() >= 0 and nc.max() < size
    for row in reg.anchor_index:
        assert len(set(row.tolist())) == count
    # the 8 neighbours are distinct, not the anchor, and exactly the 3x3 ring around it
    dr, dc = nr - ar[..., None], nc - ac[..., None]
    offsets = torch.stack([dr, dc], -1)  # (G, N, 8, 2)
    expected = torch.tensor(NEIGHBOUR_OFFSETS)
    assert torch.equal(offsets, expected.expand_as(offsets))
    assert len(set(map(tuple, expected.tolist()))) == 8 and (0, 0) not in NEIGHBOUR_OFFSETS


def test_anchor_window_rule():
    # authors' window: side int(H//2 + 0.45 H), border (H - side)//2
    assert anchor_window(112, authors_window=True) == (3, 109)
    assert anchor_window(14, authors_window=True) == (0, 13)
    # default window keeps neighbours inside
    assert anchor_window(112) == (3, 109)
    assert anchor_window(14) == (1, 13)
    with pytest.raises(ValueError, match="too small"):
        anchor_window(2)


def test_anchors_stay_in_central_window():
    g = torch.Generator().manual_seed(0)
    reg = sample_regions(112, 112, 2000, generator=g)
    r, c = coords(reg.anchor_index, 112)
    assert r.min() >= 3 and r.max() <= 108 and c.min() >= 3 and c.max() <= 108


def test_authors_window_wraps_at_stage4():
    g = torch.Generator().manual_seed(0)
    reg = sample_regions(14, 14, 169, authors_window=True, generator=g)  # the whole window
    r, c = coords(reg.anchor_index, 14)
    assert r.min() == 0 and c.min() == 0  # anchors on the border
    nr, _ = coords(reg.neighbour_index, 14)
    on_top = r[..., None].expand_as(nr) == 0
    # a neighbour above row 0 wraps to the far edge, row 13, as negative indexing does
    assert (nr[on_top] == 13).any()


def test_too_many_anchors_is_an_error():
    with pytest.raises(ValueError, match="cannot draw 200 anchors"):
        sample_regions(14, 14, 200)


def test_generator_makes_draws_reproducible_and_shared_by_default():
    a = sample_regions(56, 56, 16, batch_size=4, generator=torch.Generator().manual_seed(5))
    b = sample_regions(56, 56, 16, batch_size=4, generator=torch.Generator().manual_seed(5))
    c = sample_regions(56, 56, 16, batch_size=4, generator=torch.Generator().manual_seed(6))
    assert torch.equal(a.anchor_index, b.anchor_index)
    assert not torch.equal(a.anchor_index, c.anchor_index)
    assert a.anchor_index.shape[0] == 1  # one set of locations for the batch
    per = sample_regions(56, 56, 16, batch_size=4, per_image=True, generator=torch.Generator())
    assert per.anchor_index.shape[0] == 4
    assert not torch.equal(per.anchor_index[0], per.anchor_index[1])


def authors_reference_locations(size, count, seed):
    """The authors' draw as their code does it: global numpy RNG, shuffle the window grid."""
    np.random.seed(seed)  # noqa: NPY002 (the legacy global RNG is what they use)
    side = int((size // 2) + size * 0.45)
    border = (size - side) // 2
    grid = np.indices((side, side)).reshape(2, -1).T + border
    np.random.shuffle(grid)  # noqa: NPY002
    loc = grid[:count]
    offsets = np.array([[-1, -1], [-1, 0], [-1, 1], [0, -1], [0, 1], [1, -1], [1, 0], [1, 1]])
    nb = loc[:, None, :] + offsets[None]
    return loc, nb


@pytest.mark.parametrize(("size", "count"), list(zip(STAGE_SIZES, COUNTS, strict=True)))
def test_authors_sampling_reproduced_exactly(size, count):
    loc, nb = authors_reference_locations(size, count, seed=42)
    reg = sample_regions_as_authors(size, count, np.random.RandomState(42))
    r, c = coords(reg.anchor_index[0], size)
    assert np.array_equal(torch.stack([r, c], -1).numpy(), loc)
    # their indexing feat[:, :, rows, cols] with -1 wraps; ours wraps the same way
    feat = torch.randn(1, 2, size, size)
    theirs = feat[:, :, torch.from_numpy(nb[..., 0]), torch.from_numpy(nb[..., 1])]
    ours = feat.flatten(2)[:, :, reg.neighbour_index[0]]
    assert torch.equal(theirs, ours)


@pytest.mark.parametrize("per_image", [False, True])
def test_gather_disparities_matches_direct_indexing(per_image):
    g = torch.Generator().manual_seed(0)
    feat = torch.randn(3, 5, 28, 28, generator=g)
    reg = sample_regions(28, 28, 8, batch_size=3, per_image=per_image, generator=g)
    d = gather_disparities(feat, reg.anchor_index, reg.neighbour_index)
    assert d.shape == (3, 8, 8, 5)
    for b in range(3):
        grp = b if per_image else 0
        for n in range(8):
            ar, ac = coords(reg.anchor_index[grp, n], 28)
            for m in range(8):
                nr, nc = coords(reg.neighbour_index[grp, n, m], 28)
                assert torch.equal(d[b, n, m], feat[b, :, ar, ac] - feat[b, :, nr, nc])
    # channels_last features give identical disparities
    d_cl = gather_disparities(
        feat.to(memory_format=torch.channels_last), reg.anchor_index, reg.neighbour_index
    )
    assert torch.equal(d, d_cl)


@pytest.mark.parametrize("authors_window", [False, True])
def test_random_negatives_avoid_positives_and_cover_the_map(authors_window):
    g = torch.Generator().manual_seed(3)
    reg = sample_regions(14, 14, 8, num_negatives=2000, authors_window=authors_window, generator=g)
    assert reg.negative_index.shape == (1, 8, 2000)
    excluded = torch.cat([reg.anchor_index[..., None], reg.neighbour_index], -1)
    clash = (reg.negative_index[..., :, None] == excluded[..., None, :]).any(-1)
    assert not clash.any()
    assert reg.negative_index.min() >= 0 and reg.negative_index.max() < 14 * 14
    # uniform over the 196 - 9 allowed locations: each shows up for each anchor
    for n in range(8):
        assert len(set(reg.negative_index[0, n].tolist())) == 196 - 9
