"""Per-stage projection heads: Linear(C, C) - ReLU - Linear(C, C / 4), then L2 normalisation."""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from asccl.metric.contrastive import l2_normalize


class ProjectionHeads(nn.Module):
    """One MLP head per backbone stage, mapping disparities to unit vectors.

    Args:
        channels: input channels per stage, ``(64, 128, 256, 512)`` for an IResNet.
        reduction: output size is ``C // reduction`` (4 in the paper's code).
    """

    def __init__(self, channels: Sequence[int], reduction: int = 4) -> None:
        super().__init__()
        self.heads = nn.ModuleList(
            nn.Sequential(nn.Linear(c, c), nn.ReLU(), nn.Linear(c, c // reduction))
            for c in channels
        )

    def forward(self, stage: int, disparities: Tensor) -> Tensor:
        """Project ``(..., C)`` disparities of ``stage`` (0-based) to ``(..., C // reduction)``
        L2-normalised embeddings."""
        return l2_normalize(self.heads[stage](disparities))
