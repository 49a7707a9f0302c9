"""Random-weight evaluation networks saved in their published formats (insightface's
``backbone.pth``, syncnet_python's ``syncnet_v2.model`` state dict), drawn after
``torch.manual_seed(0)`` so every test that builds them gets the same bytes."""

from __future__ import annotations

from pathlib import Path

import torch

from asccl.evaluation.syncnet import SyncNet
from asccl.metric.iresnet import build_iresnet


def save_random_arcface(path: Path) -> Path:
    """Seed 0, then an IResNet-18 with its head saved to ``path``; returns ``path``."""
    torch.manual_seed(0)
    torch.save(build_iresnet("iresnet18", with_head=True).state_dict(), path)
    return path


def save_random_evaluators(folder: Path) -> dict[str, Path]:
    """:func:`save_random_arcface` to ``folder/backbone.pth``, then (drawing on from the
    same seed) a SyncNet to ``folder/syncnet_v2.model``: ``{"arcface": ..., "syncnet": ...}``."""
    arcface = save_random_arcface(folder / "backbone.pth")
    syncnet = folder / "syncnet_v2.model"
    torch.save(SyncNet().state_dict(), syncnet)
    return {"arcface": arcface, "syncnet": syncnet}


def random_state(
    shapes: dict[str, tuple[int, ...]], num_batches_tracked: int, seed: int = 0
) -> dict[str, torch.Tensor]:
    """A state dict of the layout ``shapes`` (key -> shape), drawn in key order from a
    generator seeded ``seed``: ``running_var`` uniform in [0.5, 1.5) (a valid variance),
    ``num_batches_tracked`` the count given, every other tensor normal with std 0.05."""
    g = torch.Generator().manual_seed(seed)
    state = {}
    for key, shape in shapes.items():
        if key.endswith("num_batches_tracked"):
            state[key] = torch.tensor(num_batches_tracked)
        elif key.endswith("running_var"):
            state[key] = torch.rand(shape, generator=g) + 0.5
        else:
            state[key] = torch.randn(shape, generator=g) * 0.05
    return state
