"""Figures are saved whole: nothing drawn (a title, a label) falls outside the PNG."""

import cv2
import torch

from asccl.demo_figures import plot_regions
from asccl.figures import pyplot, save_figure
from asccl.metric.sampler import sample_regions


def test_a_title_above_the_figure_is_kept(tmp_path):
    plt = pyplot()
    fig = plt.figure(figsize=(2, 2))  # 100 x 100 px at dpi 50
    fig.add_subplot().plot([0, 1])
    fig.text(0.5, 1.3, "a title placed above the figure", ha="center")
    png = cv2.imread(str(save_figure(fig, tmp_path / "title.png", dpi=50)))
    # the canvas spans from the axes' bottom (0.11 of the height: matplotlib's default
    # subplot bottom) to the text at 1.3: at least 1.19 x 100 px, beyond the figure's 100
    assert png.shape[0] >= 119
    assert (png[:20] < 128).any()  # dark text pixels in the top rows


def test_sampled_regions_titles_are_inside_the_image(tmp_path):
    face = torch.full((1, 3, 64, 64), 0.8)
    regions = [
        sample_regions(64 // 2 ** (s + 1), 64 // 2 ** (s + 1), n, generator=torch.Generator())
        for s, n in enumerate((8, 4, 2, 1))
    ]
    png = cv2.imread(str(plot_regions(face, regions, tmp_path / "regions.png")))
    # a white margin all round: nothing touches the edge, so nothing was cut at it
    for edge in (png[0], png[-1], png[:, 0], png[:, -1]):
        assert (edge > 240).all()
    assert (png[: png.shape[0] // 8] < 128).any()  # the title text sits in the top band
