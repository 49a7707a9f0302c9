"""The spatial coherent correlation metric: IResNet backbone, region sampler, heads, InfoNCE.

Importing ``asccl.metric`` is cheap: the names below load (with torch) on first access,
so a config-only import (``asccl.metric.config``) never pays for torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from asccl._lazy import lazy_names

_LAZY = {
    "ASCCLMetric": "asccl.metric.model",
    "CheckpointError": "asccl.metric.checkpoint",
    "ContrastiveOutput": "asccl.metric.model",
    "IResNet": "asccl.metric.iresnet",
    "MetricConfig": "asccl.metric.config",
    "MetricHealth": "asccl.metric.model",
    "Regions": "asccl.metric.sampler",
    "build_iresnet": "asccl.metric.iresnet",
    "load_arcface_weights": "asccl.metric.iresnet",
    "load_metric": "asccl.metric.checkpoint",
    "read_metric_config": "asccl.metric.checkpoint",
    "sample_regions": "asccl.metric.sampler",
    "save_metric": "asccl.metric.checkpoint",
}

__all__ = [
    "ASCCLMetric",
    "CheckpointError",
    "ContrastiveOutput",
    "IResNet",
    "MetricConfig",
    "MetricHealth",
    "Regions",
    "build_iresnet",
    "load_arcface_weights",
    "load_metric",
    "read_metric_config",
    "sample_regions",
    "save_metric",
]

if TYPE_CHECKING:
    from asccl.metric.checkpoint import (
        CheckpointError,
        load_metric,
        read_metric_config,
        save_metric,
    )
    from asccl.metric.config import MetricConfig
    from asccl.metric.iresnet import IResNet, build_iresnet, load_arcface_weights
    from asccl.metric.model import ASCCLMetric, ContrastiveOutput, MetricHealth
    from asccl.metric.sampler import Regions, sample_regions


__getattr__, __dir__ = lazy_names(__name__, _LAZY)
