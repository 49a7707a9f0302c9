"""``asccl demo`` step 3: the metric as a loss (:class:`~asccl.losses.ASCCLLoss`).

Scores a face against edited versions of itself (:data:`asccl.demo.VARIANTS`), all on the
same regions, then optimises a blurred, noisy copy with the loss alone to show that its
gradients carry signal; writes ``loss_table.{md,csv}`` and three figures
(:mod:`asccl.demo_figures`). Kept apart from :mod:`asccl.demo` so that its config, and
``asccl demo --help``, import no torch.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import Tensor
from tqdm import tqdm

from asccl.demo_figures import plot_optimisation, plot_regions, plot_variants, write_tables
from asccl.losses import ASCCLLoss
from asccl.optional import require

if TYPE_CHECKING:
    from asccl.demo import DemoConfig


def run_loss_demo(config: DemoConfig, checkpoint: Path | str) -> dict[str, Path]:
    """Steps 3 and 4 of the demo with the metric at ``checkpoint``, under ``config.out``;
    returns ``{name: path}`` of the tables and figures."""
    out = config.out
    loss_fn = ASCCLLoss(checkpoint=checkpoint, input_range=(0, 1))  # the one-line API
    size = loss_fn.metric.config.image_size

    # 3. Score the face against edited versions of itself, all on the same regions.
    face, other = _face_images(size)
    generator = torch.Generator().manual_seed(config.seed)
    with torch.no_grad():
        regions = loss_fn.metric.sample_regions(1, generator=generator)
        images = {name: _variant(name, face, other) for name in config.variants}
        rows = [(name, loss_fn(img, face, regions=regions).item()) for name, img in images.items()]
    table_md, table_csv = out / "loss_table.md", out / "loss_table.csv"
    write_tables(rows, table_md, table_csv)
    print(table_md.read_text())

    # 4. Gradients carry signal: recover the face from a degraded copy with the loss alone.
    start = F.avg_pool2d(face, 5, stride=1, padding=2)  # blurred
    start = (start + 0.08 * torch.randn(start.shape, generator=generator)).clamp(0, 1)
    generated = start.clone().requires_grad_(True)
    optimiser = torch.optim.Adam([generated], lr=config.optimise_lr)
    history = []
    for _ in tqdm(range(config.optimise_steps), desc="optimising image with ASCCL", leave=False):
        loss = loss_fn(generated, face, generator=generator)  # fresh regions every step
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        with torch.no_grad():
            generated.clamp_(0, 1)
        history.append(loss.item())
    print(
        f"optimising a blurred, noisy copy with ASCCLLoss only: loss {history[0]:.3f} -> "
        f"{history[-1]:.3f} in {config.optimise_steps} steps"
    )

    figures = {
        "variants_png": plot_variants(images, dict(rows), out / "loss_variants.png"),
        "regions_png": plot_regions(face, regions, out / "sampled_regions.png"),
        "optimisation_png": plot_optimisation(
            face, start, generated.detach(), history, out / "optimisation.png"
        ),
    }
    return {"table_md": table_md, "table_csv": table_csv, **figures}


def _face_images(size: int) -> tuple[Tensor, Tensor]:
    """The astronaut's face and an unrelated picture (scikit-image's public-domain/CC0
    sample images), as ``(1, 3, size, size)`` RGB in [0, 1]."""
    data = require("skimage.data", "the demo's sample photos need scikit-image")

    def prepare(array, rows: slice, cols: slice) -> Tensor:
        image = torch.from_numpy(array[rows, cols].copy()).permute(2, 0, 1)[None].float() / 255
        return F.interpolate(image, size=(size, size), mode="bilinear", antialias=True)

    face = prepare(data.astronaut(), slice(30, 210), slice(145, 325))
    other = prepare(data.chelsea(), slice(0, 300), slice(100, 400))
    return face, other


def _open_mouth(image: Tensor, strength: float = 0.06) -> Tensor:
    """Warp the mouth region (lower centre of the crop) vertically, as if it opened."""
    _, _, h, w = image.shape
    ys, xs = torch.meshgrid(torch.linspace(-1, 1, h), torch.linspace(-1, 1, w), indexing="ij")
    cy, cx, sigma = 0.5, 0.0, 0.18  # the mouth sits at ~75% height in this crop
    bump = torch.exp(-((ys - cy) ** 2 + (xs - cx) ** 2) / (2 * sigma**2))
    grid = torch.stack([xs, ys - strength * bump * torch.sign(ys - cy)], dim=-1)[None]
    return F.grid_sample(image, grid, mode="bilinear", padding_mode="border", align_corners=True)


def _variant(name: str, face: Tensor, other: Tensor) -> Tensor:
    if name == "identical":
        return face.clone()
    if name == "brighter":
        return (face * 0.8 + 0.15).clamp(0, 1)
    if name == "shifted":
        return torch.roll(face, shifts=(3, 3), dims=(2, 3))
    if name == "mouth_open":
        return _open_mouth(face)
    if name == "unrelated":
        return other
    raise ValueError(
        f"unknown demo variant {name!r}; valid: identical, brighter, shifted, mouth_open, unrelated"
    )
