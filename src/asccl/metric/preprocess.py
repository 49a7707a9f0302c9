"""The one image contract: every image that reaches the metric goes through
:func:`to_metric_input` (range to [-1, 1], channel order, size).

The paths into the metric are thin calls to it: :class:`asccl.ASCCLLoss` (generated and
source frames in a declared range and channel order), the metric trainer's
:func:`asccl.training.dataset.to_model_input` (uint8 crop batches) and the SPFEM data's
:func:`asccl.spfem.data.frames_to_model` (uint8 crops as generator inputs and sources).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

UINT8_RANGE = (0.0, 255.0)


def to_metric_input(
    images: Tensor,
    *,
    input_range: tuple[float, float] | None = None,
    flip_channels: bool = False,
    size: int | None = None,
    dtype: torch.dtype | None = None,
) -> Tensor:
    """Map ``(B, 3, H, W)`` images to the metric's convention.

    Steps, in this order: resize to ``size x size`` (bilinear, antialiased, only when the
    input differs), ``(x - low) / ((high - low) / 2) - 1`` (uint8: ``x / 127.5 - 1``),
    reverse the channels if asked. Decoded uint8 frames are then clamped to [-1, 1] (the
    antialiased resize can overshoot 255 by ~1e-4 in float32 arithmetic); floating-point
    inputs are not clamped, so generated images keep their values and gradients.

    Args:
        images: ``(B, 3, H, W)`` floating point with values in ``input_range``, or uint8
            (decoded frames, 0..255).
        input_range: ``(low, high)`` of the input values, e.g. ``(0, 1)``; ``None``: (0, 255)
            for uint8, (-1, 1) for floating point. uint8 images must be (0, 255).
        flip_channels: reverse the channel order (RGB <-> BGR).
        size: output side; ``None`` keeps ``H x W``.
        dtype: floating dtype to cast to first (the metric's: a float16 image for a
            float32 metric); gradients flow back in the input's own dtype. ``None``: kept.

    Returns:
        ``(B, 3, size, size)`` float (``dtype``; else float32 for uint8 inputs, else the
        input's) in [-1, 1]; differentiable.
    """
    if images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"expected images of shape (B, 3, H, W), got {tuple(images.shape)}")
    from_uint8 = images.dtype == torch.uint8
    if from_uint8:
        if input_range is not None and tuple(map(float, input_range)) != UINT8_RANGE:
            raise ValueError(f"uint8 images hold 0..255, but input_range is {input_range}")
        images, input_range = images.float(), UINT8_RANGE
    elif not images.is_floating_point():
        raise TypeError(f"expected floating-point or uint8 images, got {images.dtype}")
    if dtype is not None and images.dtype != dtype:
        images = images.to(dtype)
    low, high = (-1.0, 1.0) if input_range is None else map(float, input_range)
    if not low < high:
        raise ValueError(f"input_range must be (low, high) with low < high, got {input_range}")
    if size is not None and tuple(images.shape[-2:]) != (size, size):
        images = F.interpolate(
            images, size=(size, size), mode="bilinear", align_corners=False, antialias=True
        )
    if (low, high) != (-1.0, 1.0):
        images = (images - low) / ((high - low) / 2) - 1.0
    if flip_channels:
        images = images.flip(1)
    if from_uint8:
        images = images.clamp(-1.0, 1.0)
    return images


def check_input_range(images: dict[str, Tensor], input_range: tuple[float, float]) -> None:
    """Raise a one-line ValueError naming the argument whose values lie far outside
    ``input_range``: below ``low - span`` or above ``high + span`` (``span = high - low``).

    One range width of margin on each side: ``[-3, 3]`` for ``(-1, 1)``, ``[-1, 2]`` for
    ``(0, 1)``. A tanh generator stays inside, an un-squashed one overshooting by a few
    tenths passes, while a 0..255 frame given as ``(-1, 1)`` (max ~255, 85x the margin's
    edge) or as ``(0, 1)`` fails; a [0, 1] image given as ``(-1, 1)`` cannot be told apart
    and passes. uint8 images are skipped (their range is checked by
    :func:`to_metric_input`). NaN values are not flagged. One host sync for all images.
    """
    floats = {name: x for name, x in images.items() if x.is_floating_point() and x.numel()}
    if not floats:
        return
    low, high = map(float, input_range)
    span = high - low
    with torch.no_grad():
        bounds = (
            torch.stack([b for x in floats.values() for b in x.detach().aminmax()]).float().tolist()
        )  # the one sync
    for index, name in enumerate(floats):
        least, most = bounds[2 * index], bounds[2 * index + 1]
        if least < low - span or most > high + span:
            raise ValueError(
                f"{name} holds values in [{least:.4g}, {most:.4g}], far outside "
                f"input_range=({low:g}, {high:g}) (allowed: [{low - span:g}, {high + span:g}]): "
                "give the range the images are in, e.g. input_range=(0, 255)"
            )
