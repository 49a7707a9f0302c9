"""The spatial coherent correlation metric: IResNet backbone, region sampler, heads, InfoNCE."""

from asccl.metric.checkpoint import CheckpointError, load_metric, read_metric_config, save_metric
from asccl.metric.config import MetricConfig
from asccl.metric.iresnet import IResNet, build_iresnet, load_arcface_weights
from asccl.metric.model import ASCCLMetric, ContrastiveOutput, MetricHealth
from asccl.metric.sampler import Regions, sample_regions

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
