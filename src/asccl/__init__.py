"""asccl: Adaptive Spatial Coherent Correlation Learning for speech-preserving facial
expression manipulation (CVPR 2024), as a toolkit.

Quick start::

    from asccl import ASCCLLoss
    loss_fn = ASCCLLoss(checkpoint="asccl.safetensors")
    loss = loss_fn(generated, source)  # (B, 3, H, W) in [-1, 1]

Importing ``asccl`` is cheap: submodules (and torch) load on first attribute access.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from asccl._lazy import lazy_names
from asccl._version import __version__

_LAZY = {
    "ASCCLLoss": "asccl.losses",
    "ASCCLMetric": "asccl.metric",
    "MetricConfig": "asccl.metric",
    "load_metric": "asccl.metric",
    "save_metric": "asccl.metric",
}

__all__ = [
    "ASCCLLoss",
    "ASCCLMetric",
    "MetricConfig",
    "__version__",
    "load_metric",
    "save_metric",
]

if TYPE_CHECKING:
    from asccl.losses import ASCCLLoss
    from asccl.metric import ASCCLMetric, MetricConfig, load_metric, save_metric


__getattr__, __dir__ = lazy_names(__name__, _LAZY)
