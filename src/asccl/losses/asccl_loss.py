"""``ASCCLLoss``: the frozen ASCCL metric as a training loss for any SPFEM generator."""

from __future__ import annotations

import copy
import os
from typing import Any, Literal

import torch
from torch import Tensor, nn

from asccl.metric.checkpoint import load_metric
from asccl.metric.model import ASCCLMetric
from asccl.metric.preprocess import to_metric_input
from asccl.metric.sampler import Regions


class ASCCLLoss(nn.Module):
    """Spatial coherent correlation loss between a generated frame and its source frame.

    Quick start::

        loss_fn = ASCCLLoss(checkpoint="asccl.safetensors")
        loss = loss_fn(generated, real)  # (B, 3, H, W) in [-1, 1] -> scalar

    The metric is frozen: no parameter requires grad, it is kept in ``eval()`` mode
    (``.train()`` cannot switch it back, so BatchNorm statistics never drift), and
    gradients flow only into ``generated``. ``real`` is the key side: its features are
    computed without gradients, as in the authors' NED renderer (query = generated frame,
    key = real frame).

    Args:
        checkpoint: an asccl ``.safetensors`` metric or the authors' ``.pth``. A bad file
            (missing, truncated, malformed, a bad config in its header, another network,
            wrong shapes, NaN/Inf weights) raises :class:`~asccl.io.CheckpointError`, one
            line naming the file.
        metric: an in-memory :class:`ASCCLMetric` instead of ``checkpoint`` (copied, then
            frozen; the original is left untouched).
        input_range: ``(low, high)`` of the inputs: ``(-1, 1)`` (default) or ``(0, 1)``.
        channel_order: channel order of the inputs; converted to the metric's own order
            (stored in the checkpoint) when they differ.
        weight: factor applied to the returned loss (the authors use 1 on top of the
            metric's internal 0.3).
        **config_overrides: metric settings to change at load time, e.g.
            ``num_anchors=(64, 32, 16, 8)``; architecture fields are rejected.

    Inputs ``(B, 3, H, W)`` of any size are resized to the metric's ``image_size`` (224)
    with antialiasing; works under ``torch.autocast`` (logits are computed in float32).
    """

    def __init__(
        self,
        checkpoint: str | os.PathLike | None = None,
        *,
        metric: ASCCLMetric | None = None,
        input_range: tuple[float, float] = (-1.0, 1.0),
        channel_order: Literal["rgb", "bgr"] = "rgb",
        weight: float = 1.0,
        **config_overrides: Any,
    ) -> None:
        super().__init__()
        if (checkpoint is None) == (metric is None):
            raise ValueError("give exactly one of checkpoint= or metric=")
        if metric is None:
            metric = load_metric(checkpoint, **config_overrides)
        else:
            metric = copy.deepcopy(metric)
            if config_overrides:
                changed = metric.config.replace(**config_overrides)
                if (changed.backbone, changed.head_reduction) != (
                    metric.config.backbone,
                    metric.config.head_reduction,
                ):
                    raise ValueError("backbone and head_reduction are fixed by the metric")
                metric.config = changed
        if channel_order not in ("rgb", "bgr"):
            raise ValueError(f"channel_order must be 'rgb' or 'bgr', got {channel_order!r}")
        self.metric = metric.requires_grad_(False)
        self.input_range = (float(input_range[0]), float(input_range[1]))
        self.channel_order = channel_order
        self.weight = weight
        super().train(False)

    def train(self, mode: bool = True) -> ASCCLLoss:
        """No-op: the metric always stays in eval mode."""
        return super().train(False)

    def preprocess(self, images: Tensor) -> Tensor:
        """``(B, 3, H, W)`` in ``input_range`` -> metric input ``(B, 3, 224, 224)`` in [-1, 1]."""
        return to_metric_input(
            images,
            input_range=self.input_range,
            flip_channels=self.channel_order != self.metric.config.channel_order,
            size=self.metric.config.image_size,
        )

    def forward(
        self,
        generated: Tensor,
        real: Tensor,
        *,
        regions: list[Regions] | None = None,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """Loss between ``generated`` (receives gradients) and ``real`` (constant).

        Args:
            generated: ``(B, 3, H, W)`` generator output, values in ``input_range``.
            real: ``(B, 3, H, W)`` the frame it must stay coherent with (e.g. the source).
            regions: regions to evaluate on, drawn for the metric's ``image_size`` (see
                :meth:`ASCCLMetric.sample_regions`); drawn afresh when ``None``.
            generator: CPU ``torch.Generator`` for that draw (``None``: global RNG).

        Returns:
            Scalar float32 loss, ``weight * metric loss``.
        """
        if generated.shape != real.shape:
            raise ValueError(
                f"generated and real must have the same shape, got {tuple(generated.shape)} "
                f"and {tuple(real.shape)}"
            )
        if regions is None:  # drawn first: the index copies overlap with the backbone
            regions = self.metric.sample_regions(
                generated.shape[0], generator=generator, device=generated.device
            )
        with torch.no_grad():
            key = self.metric.features(self.preprocess(real))
        query = self.metric.features(self.preprocess(generated))
        return self.weight * self.metric.contrast(query, key, regions).loss
