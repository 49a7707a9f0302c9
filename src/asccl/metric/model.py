"""``ASCCLMetric``: the learnable spatial coherent correlation metric (backbone + heads)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from asccl.metric.config import MetricConfig
from asccl.metric.contrastive import patch_cosines, patch_nce, random_nce, reduce_pair_losses
from asccl.metric.heads import ProjectionHeads
from asccl.metric.iresnet import STAGE_CHANNELS, build_iresnet, load_arcface_weights
from asccl.metric.sampler import Regions, gather_disparities, sample_regions

StageFeatures = tuple[Tensor, ...]


@dataclass(frozen=True)
class MetricHealth:
    """The metric's health signal on one batch: how well positives stand out per stage.

    Attributes:
        positive_cosine: ``(4,)`` mean cosine of the positive pairs ``(x_{i->j}, y_{i->j})``
            per stage (detached).
        negative_cosine: ``(4,)`` mean cosine of the negative pairs per stage (detached):
            the other pairs of the same image (``"patch"``) or the random regions
            (``"random"``).
    """

    positive_cosine: Tensor
    negative_cosine: Tensor

    @property
    def gap(self) -> Tensor:
        """``(4,)`` ``positive - negative`` per stage: grows as the metric trains."""
        return self.positive_cosine - self.negative_cosine


@dataclass(frozen=True)
class ContrastiveOutput:
    """Result of comparing a query and a key image batch.

    Attributes:
        loss: scalar, ``per_sample.mean()``: what the metric trains on.
        per_sample: ``(B,)`` each image pair's loss, ``loss_scale * per_stage.sum(-1)``.
        per_stage: ``(B, 4)`` each pair's reduced InfoNCE per stage (before ``loss_scale``).
        regions: the regions used, one per stage.
        health: the cosine diagnostics, or ``None`` (computed only when asked for:
            ``forward(..., health=True)`` or :meth:`ASCCLMetric.health`).
    """

    loss: Tensor
    per_sample: Tensor
    per_stage: Tensor
    regions: list[Regions]
    health: MetricHealth | None = None

    @property
    def stage_losses(self) -> Tensor:
        """``(4,)`` the batch mean of ``per_stage``."""
        return self.per_stage.mean(0)


class ASCCLMetric(nn.Module):
    """ArcFace IResNet + per-stage projection heads, trained contrastively on paired frames.

    ``metric(x, y)`` samples regions, computes disparities ``x_{i->j}`` (query, with
    gradients) and ``y_{i->j}`` (key, no gradients: the backbone runs under ``no_grad``
    for ``y``, which is exactly the authors' detached key) and returns a
    :class:`ContrastiveOutput`.

    Args:
        config: a :class:`MetricConfig` (default: the paper's settings).
        **changes: fields of :class:`MetricConfig` to change, e.g. ``backbone="iresnet18"``.

    Inputs are ``(B, 3, S, S)`` in [-1, 1] with ``S = config.image_size``, channels in
    ``config.channel_order``; :func:`asccl.metric.preprocess.to_metric_input` converts.
    """

    def __init__(self, config: MetricConfig | None = None, **changes: Any) -> None:
        super().__init__()
        config = config or MetricConfig()
        self.config = config.replace(**changes) if changes else config
        self.backbone = build_iresnet(self.config.backbone, with_head=False)
        self.heads = ProjectionHeads(STAGE_CHANNELS, self.config.head_reduction)

    def init_backbone_from_arcface(self, path: str | Path | None) -> ASCCLMetric:
        """Initialise the backbone from an insightface ``backbone.pth`` (strict; the identity
        head's keys are the only ones dropped). ``None`` reads ``ASCCL_ARCFACE_WEIGHTS``."""
        load_arcface_weights(self.backbone, path)
        return self

    def compile_backbone(self, **options: Any) -> ASCCLMetric:
        """``torch.compile`` the backbone's stage pass, the code :meth:`features` runs.

        ``nn.Module.compile()`` on the backbone would wrap its ``__call__`` alone, which the
        metric never calls. Options go to :func:`torch.compile` (``backend=``, ``mode=``).
        Weights, ``state_dict`` and checkpoints are unchanged.
        """
        self.backbone.forward_stages = torch.compile(self.backbone.forward_stages, **options)
        return self

    def features(self, images: Tensor) -> StageFeatures:
        """The four stage maps of ``(B, 3, S, S)`` images in [-1, 1]."""
        return self.backbone.forward_stages(images)

    def sample_regions(
        self,
        batch_size: int,
        *,
        image_size: int | tuple[int, int] | None = None,
        generator: torch.Generator | None = None,
        device: torch.device | str = "cpu",
    ) -> list[Regions]:
        """Draw regions for each of the four stages with this metric's settings.

        Args:
            batch_size: images in the batch (matters with ``per_image_regions``).
            image_size: input side (or ``(H, W)``); default ``config.image_size``. Stage
                maps are ``H/2, H/4, H/8, H/16``.
            generator: CPU ``torch.Generator`` for reproducible draws (``None``: global RNG).
            device: where the index tensors go (the features' device).

        Returns:
            One :class:`Regions` per stage. Drawing needs no features, so a caller can draw
            before the backbone runs and the index copies overlap with it.
        """
        cfg = self.config
        size = image_size or cfg.image_size
        height, width = (size, size) if isinstance(size, int) else size
        regions = []
        for stage, count in enumerate(cfg.num_anchors):
            stride = 2 ** (stage + 1)
            drawn = sample_regions(
                height // stride,
                width // stride,
                count,
                batch_size=batch_size,
                per_image=cfg.per_image_regions,
                authors_window=cfg.authors_window,
                num_negatives=cfg.num_random_negatives if cfg.negatives == "random" else 0,
                generator=generator,
            )
            regions.append(drawn.to(device))
        return regions

    def contrast(
        self,
        query: StageFeatures,
        key: StageFeatures,
        regions: list[Regions] | None = None,
        generator: torch.Generator | None = None,
        *,
        health: bool = False,
    ) -> ContrastiveOutput:
        """The ASCCL loss between stage features of the query and key images.

        Args:
            query: four ``(B, C_l, H_l, W_l)`` maps; gradients flow into these.
            key: four maps of the same shapes; treated as constants.
            regions: regions to use (from :meth:`sample_regions`); drawn when ``None``.
            generator: CPU generator for the draw when ``regions`` is ``None``.
            health: also compute the cosine diagnostics (:class:`MetricHealth`).
        """
        cfg = self.config
        if len(query) != 4 or len(key) != 4:
            raise ValueError(f"expected 4 stage maps each, got {len(query)} and {len(key)}")
        for q, k in zip(query, key, strict=True):
            if q.shape != k.shape:
                raise ValueError(
                    f"query and key shapes differ: {tuple(q.shape)} vs {tuple(k.shape)}"
                )
        if regions is None:
            b, _, h, w = query[0].shape
            regions = self.sample_regions(
                b, image_size=(2 * h, 2 * w), generator=generator, device=query[0].device
            )
        for feat, reg in zip(query, regions, strict=True):
            if (reg.height, reg.width) != tuple(feat.shape[-2:]):
                raise ValueError(
                    f"regions drawn for a {reg.height}x{reg.width} map, features are "
                    f"{tuple(feat.shape[-2:])}: draw them for this image size"
                )
        stage_losses, pos_cos, neg_cos = [], [], []
        for stage, (fq, fk, reg) in enumerate(zip(query, key, regions, strict=True)):
            dq = gather_disparities(fq, reg.anchor_index, reg.neighbour_index)  # (B, N, 8, C)
            dk = gather_disparities(fk.detach(), reg.anchor_index, reg.neighbour_index)
            q = self.heads(stage, dq)  # (B, N, 8, D)
            k = self.heads(stage, dk)
            if cfg.negatives == "patch":
                pairs, cosine = patch_nce(q.flatten(1, 2), k.flatten(1, 2), cfg.temperature)
                if health:
                    positive, negative = patch_cosines(cosine)
                    pos_cos.append(positive)
                    neg_cos.append(negative)
            else:
                if reg.negative_index is None:
                    raise ValueError("'random' negatives need regions drawn with num_negatives")
                dn = gather_disparities(fk.detach(), reg.anchor_index, reg.negative_index)
                pairs, pos, neg = random_nce(q, k, self.heads(stage, dn), cfg.temperature)
                if health:
                    pos_cos.append(pos.mean())
                    neg_cos.append(neg.mean())
            stage_losses.append(
                reduce_pair_losses(pairs, dq.flatten(1, 2), cfg.adaptive, cfg.adaptive_threshold)
            )
        per_stage = torch.stack(stage_losses, dim=-1)  # (B, 4)
        per_sample = cfg.loss_scale * per_stage.sum(-1)
        return ContrastiveOutput(
            loss=per_sample.mean(),
            per_sample=per_sample,
            per_stage=per_stage,
            regions=regions,
            health=MetricHealth(torch.stack(pos_cos), torch.stack(neg_cos)) if health else None,
        )

    def forward(
        self,
        x: Tensor,
        y: Tensor,
        *,
        regions: list[Regions] | None = None,
        generator: torch.Generator | None = None,
        health: bool = False,
    ) -> ContrastiveOutput:
        """Contrast ``x`` (query, e.g. the neutral frame) with ``y`` (key, its paired
        emotional frame), both ``(B, 3, S, S)`` in [-1, 1]. ``regions`` (from
        :meth:`sample_regions`) are drawn with ``generator`` when not given; ``health``
        adds the cosine diagnostics to the output (off the training hot path otherwise)."""
        if x.shape != y.shape:
            raise ValueError(
                f"x and y must have the same shape, got {tuple(x.shape)} and {tuple(y.shape)}"
            )
        if regions is None:
            regions = self.sample_regions(
                x.shape[0], image_size=tuple(x.shape[-2:]), generator=generator, device=x.device
            )
        query = self.features(x)
        with torch.no_grad():
            key = self.features(y)
        return self.contrast(query, key, regions, health=health)

    @torch.no_grad()
    def health(
        self,
        x: Tensor,
        y: Tensor,
        *,
        regions: list[Regions] | None = None,
        generator: torch.Generator | None = None,
    ) -> MetricHealth:
        """Per-stage positive/negative cosines and their gap for ``x`` vs ``y``, both
        ``(B, 3, S, S)`` in [-1, 1], without gradients.

        Runs in the module's current mode: call ``.eval()`` first for a trained metric's
        numbers (in train mode BatchNorm uses and updates batch statistics, as in any
        forward). ``regions``/``generator`` as in :meth:`forward`.
        """
        output = self(x, y, regions=regions, generator=generator, health=True)
        assert output.health is not None
        return output.health
