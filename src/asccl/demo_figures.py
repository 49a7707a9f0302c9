"""The figures and tables of ``asccl demo`` (:mod:`asccl.demo`): the loss per edited face,
the sampled regions and the image optimised with the loss alone."""

from __future__ import annotations

import csv
import io
from pathlib import Path

from torch import Tensor

from asccl.figures import pyplot, save_figure
from asccl.io import write_text_atomic
from asccl.metric import Regions


def write_tables(rows: list[tuple[str, float]], md: Path, csv_path: Path) -> None:
    """``loss_table.{md,csv}``: one row per ``(variant, ASCCL loss)``."""
    lines = ["| generated vs source face | ASCCL loss |", "|---|---:|"]
    lines += [f"| {name} | {value:.4f} |" for name, value in rows]
    write_text_atomic(md, "\n".join(lines) + "\n")
    table = io.StringIO(newline="")
    writer = csv.writer(table)
    writer.writerow(["variant", "asccl_loss"])
    writer.writerows((name, f"{value:.6f}") for name, value in rows)
    write_text_atomic(csv_path, table.getvalue())


def _as_numpy_image(image: Tensor):
    return image[0].permute(1, 2, 0).clamp(0, 1).numpy()


def plot_variants(images: dict[str, Tensor], losses: dict[str, float], path: Path) -> Path:
    """Each ``(1, 3, H, W)`` image in [0, 1] with its loss against the source face."""
    plt = pyplot()

    fig, axes = plt.subplots(1, len(images), figsize=(2.4 * len(images), 2.8))
    for ax, (name, image) in zip(axes, images.items(), strict=True):
        ax.imshow(_as_numpy_image(image))
        ax.set_title(f"{name}\nloss {losses[name]:.3f}", fontsize=9)
        ax.axis("off")
    fig.suptitle("ASCCL loss of each image against the source face", fontsize=10)
    fig.tight_layout()
    return save_figure(fig, path, dpi=120)


def plot_regions(face: Tensor, regions: list[Regions], path: Path) -> Path:
    """The sampled anchors (red) and neighbours (cyan) of each stage on ``face``
    ``(1, 3, H, W)``."""
    plt = pyplot()

    size = face.shape[-1]
    fig, axes = plt.subplots(
        1, len(regions), figsize=(2.6 * len(regions), 3.4), layout="constrained"
    )
    for stage, (ax, reg) in enumerate(zip(axes, regions, strict=True)):
        stride = size / reg.width
        ax.imshow(_as_numpy_image(face))

        def centre(flat: Tensor, s: float = stride, w: int = reg.width) -> tuple[Tensor, Tensor]:
            return (flat % w + 0.5) * s, (flat // w + 0.5) * s

        nx, ny = centre(reg.neighbour_index[0].flatten())
        ax_, ay_ = centre(reg.anchor_index[0])
        ax.scatter(nx, ny, s=4, c="cyan", linewidths=0)
        ax.scatter(ax_, ay_, s=10, c="red", linewidths=0)
        ax.set_title(
            f"stage {stage + 1}: {reg.height}x{reg.width} map\n"
            f"{reg.anchor_index.shape[1]} anchors x 8",
            fontsize=8,
        )
        ax.axis("off")
    fig.suptitle("regions ASCCL samples: anchors (red) and their 8 neighbours (cyan)", fontsize=9)
    return save_figure(fig, path, dpi=120)


def plot_optimisation(
    face: Tensor, start: Tensor, result: Tensor, history: list[float], path: Path
) -> Path:
    """Source, start and result ``(1, 3, H, W)`` in [0, 1], and the loss per step."""
    plt = pyplot()

    fig, axes = plt.subplots(1, 4, figsize=(11, 2.8))
    for ax, image, title in zip(
        axes[:3],
        (face, start, result),
        ("source", "start (blur+noise)", "after optimisation"),
        strict=True,
    ):
        ax.imshow(_as_numpy_image(image))
        ax.set_title(title, fontsize=9)
        ax.axis("off")
    axes[3].plot(range(1, len(history) + 1), history)
    axes[3].set_xlabel("step")
    axes[3].set_ylabel("ASCCL loss")
    axes[3].set_title("loss during optimisation", fontsize=9)
    axes[3].grid(alpha=0.3)
    fig.tight_layout()
    return save_figure(fig, path, dpi=120)
