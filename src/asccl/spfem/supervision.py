"""``ASCCLSupervision``: the frozen ASCCL loss wired into an SPFEM generator's training step."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor, nn

from asccl.losses.asccl_loss import ASCCLLoss
from asccl.metric.model import ASCCLMetric
from asccl.spfem.adapters import SPFEMAdapter, get_adapter


def warmup_weight(step: int, weight: float, warmup_steps: int) -> float:
    """Linear ramp from 0: ``weight * min(1, step / warmup_steps)``; ``weight`` when
    ``warmup_steps == 0``. Step 0 of a warm-up therefore has weight 0."""
    if step < 0:
        raise ValueError(f"step must be >= 0, got {step}")
    if warmup_steps <= 0:
        return float(weight)
    return float(weight) * min(1.0, step / warmup_steps)


class ASCCLSupervision(nn.Module):
    """ASCCL as one more generator loss: adapter + schedule + frozen :class:`ASCCLLoss`.

    Quick start::

        asccl = ASCCLSupervision(checkpoint="asccl.safetensors", adapter="ned_renderer")
        extra, logs = asccl(batch, outputs, step)  # batch/outputs: the training step's dicts
        (other_losses + extra).backward()

    Args:
        checkpoint: an asccl ``.safetensors`` metric (or the authors' ``.pth``).
        metric: an in-memory :class:`ASCCLMetric` instead (copied and frozen).
        adapter: a name in :data:`asccl.spfem.ADAPTERS` or an :class:`SPFEMAdapter`. Its
            declared ``value_range`` and ``channel_order`` configure the loss.
        weight: final weight of the loss (the authors' NED renderer uses 1): the only weight
            of the ASCCL term (:class:`ASCCLLoss` is unweighted; ``asccl spfem train`` feeds
            its ``asccl_weight`` here).
        warmup_steps: steps of the linear ramp from 0 to ``weight`` (0: no warm-up).
        every_n_steps: compute the loss only on steps divisible by this (1: every step);
            the weight is not rescaled to make up for skipped steps.
        **metric_changes: metric settings changed at load time (see :class:`ASCCLLoss`).

    The metric is frozen and stays in eval mode whatever ``.train()`` is called on this
    module; gradients reach only the generator, through ``generated``.
    """

    def __init__(
        self,
        checkpoint: str | os.PathLike | None = None,
        *,
        metric: ASCCLMetric | None = None,
        adapter: str | SPFEMAdapter = "image2image",
        weight: float = 1.0,
        warmup_steps: int = 0,
        every_n_steps: int = 1,
        **metric_changes: Any,
    ) -> None:
        super().__init__()
        if weight < 0:
            raise ValueError(f"weight must be >= 0, got {weight}")
        if warmup_steps < 0:
            raise ValueError(f"warmup_steps must be >= 0, got {warmup_steps}")
        if every_n_steps < 1:
            raise ValueError(f"every_n_steps must be >= 1, got {every_n_steps}")
        self.adapter = get_adapter(adapter) if isinstance(adapter, str) else adapter
        self.loss = ASCCLLoss(
            checkpoint,
            metric=metric,
            input_range=self.adapter.value_range,
            channel_order=self.adapter.channel_order,
            **metric_changes,
        )  # unweighted: this module holds the one weight (and its schedule)
        self.weight = float(weight)
        self.warmup_steps = int(warmup_steps)
        self.every_n_steps = int(every_n_steps)

    def weight_at(self, step: int) -> float:
        """The weight applied at ``step`` (0 on skipped steps and at the start of a warm-up)."""
        if step % self.every_n_steps != 0:
            return 0.0
        return warmup_weight(step, self.weight, self.warmup_steps)

    def forward(
        self,
        batch: Mapping[str, Any],
        outputs: Mapping[str, Any] | Tensor,
        step: int,
        *,
        generator: torch.Generator | None = None,
    ) -> tuple[Tensor, dict[str, Tensor | float]]:
        """The weighted ASCCL loss of one training step.

        Args:
            batch: the data loader's dict (holds the source frame).
            outputs: the generator's dict (holds the generated frame), or the generated
                ``(B, 3, H, W)`` tensor itself.
            step: the global training step (drives warm-up and ``every_n_steps``).
            generator: CPU ``torch.Generator`` for the region draw (``None``: global RNG).

        Returns:
            ``(loss, logs)``: ``loss`` a scalar, ``weight_at(step) * raw``; ``logs`` holds
            ``"asccl_weight"`` (float) and, when the metric ran, ``"asccl"`` (the raw loss,
            a detached tensor: no device sync). While the weight is 0 the metric does not
            run and ``loss`` is a constant 0 on the images' device (no graph: add it to the
            generator's other losses, do not backpropagate it alone).
        """
        pair = self.adapter.pair(batch, outputs)
        declared = tuple(float(v) for v in pair.value_range)  # a list or ints compare equal
        if (declared, pair.channel_order) != (self.loss.input_range, self.loss.channel_order):
            raise ValueError(
                f"the adapter declared {pair.value_range} {pair.channel_order} for this step "
                f"but the loss was built for {self.loss.input_range} {self.loss.channel_order}"
            )
        weight = self.weight_at(step)
        logs: dict[str, Tensor | float] = {"asccl_weight": weight}
        if weight == 0.0:
            return torch.zeros((), device=pair.generated.device), logs
        raw = self.loss(pair.generated, pair.source, generator=generator)
        logs["asccl"] = raw.detach()
        return weight * raw, logs
