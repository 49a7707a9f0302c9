"""Bringing images to the metric's input convention: range [-1, 1], channel order, size."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor


def to_metric_input(
    images: Tensor,
    *,
    input_range: tuple[float, float] = (-1.0, 1.0),
    flip_channels: bool = False,
    size: int | None = None,
) -> Tensor:
    """Map ``(B, 3, H, W)`` images to what the metric expects.

    Args:
        images: ``(B, 3, H, W)`` floating point, values in ``input_range``.
        input_range: ``(low, high)`` of the input values, e.g. ``(0, 1)`` or ``(-1, 1)``.
        flip_channels: reverse the channel order (RGB <-> BGR).
        size: resize to ``size x size`` (bilinear, antialiased) when the input differs.

    Returns:
        ``(B, 3, size, size)`` in [-1, 1]; differentiable.
    """
    if images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"expected images of shape (B, 3, H, W), got {tuple(images.shape)}")
    if not images.is_floating_point():
        raise TypeError(f"expected floating-point images, got {images.dtype}")
    low, high = input_range
    if high <= low:
        raise ValueError(f"input_range must be (low, high) with low < high, got {input_range}")
    if (low, high) != (-1.0, 1.0):
        images = (images - low) * (2.0 / (high - low)) - 1.0
    if flip_channels:
        images = images.flip(1)
    if size is not None and tuple(images.shape[-2:]) != (size, size):
        images = F.interpolate(
            images, size=(size, size), mode="bilinear", align_corners=False, antialias=True
        )
    return images
