"""Figures of stage 1: a DTW alignment over its cost matrix, and a contact sheet of crops."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from asccl.figures import pyplot, save_figure


def _pyplot():
    plt = pyplot()

    return plt


def plot_alignment(
    cost: np.ndarray,
    neutral_frames: np.ndarray,
    emotional_frames: np.ndarray,
    path: str | Path,
    title: str = "",
) -> Path:
    """Draw the ``(N, M)`` frame-distance matrix with the warping path on top (PNG)."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5, 4.5))
    image = ax.imshow(cost.T, origin="lower", aspect="auto", cmap="magma")
    ax.plot(neutral_frames, emotional_frames, color="cyan", linewidth=1.5, label="DTW path")
    ax.plot([0, cost.shape[0] - 1], [0, cost.shape[1] - 1], "w--", linewidth=0.8,
            label="diagonal")  # fmt: skip
    ax.set_xlabel("neutral frame")
    ax.set_ylabel("emotional frame")
    ax.set_title(title, fontsize=9)
    ax.legend(loc="upper left", fontsize=7)
    fig.colorbar(image, ax=ax, label="audio feature distance")
    fig.tight_layout()
    return save_figure(fig, path, dpi=120)


def plot_crop_sheet(clips: dict[str, np.ndarray], path: str | Path, per_clip: int = 6) -> Path:
    """One row per clip: ``per_clip`` crops evenly spread over its ``(N, S, S, 3)`` frames."""
    plt = pyplot()
    rows = max(len(clips), 1)
    fig, axes = plt.subplots(rows, per_clip, figsize=(1.4 * per_clip, 1.5 * rows), squeeze=False)
    for row, (name, frames) in enumerate(clips.items()):
        picks = np.linspace(0, len(frames) - 1, per_clip).round().astype(int)
        for col, index in enumerate(picks):
            ax = axes[row, col]
            ax.imshow(frames[index])
            ax.set_xticks([])
            ax.set_yticks([])
            if col == 0:
                ax.set_ylabel(name, fontsize=6, rotation=0, ha="right", va="center")
            ax.set_title(f"#{index}", fontsize=6)
    fig.tight_layout()
    return save_figure(fig, path, dpi=110)
