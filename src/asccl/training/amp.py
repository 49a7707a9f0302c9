"""The one mixed-precision rule of every trainer.

``amp = "off"`` runs in the weights' dtype; ``"bf16"`` / ``"fp16"`` run the forward under
``torch.autocast`` in that dtype on the run's device. A ``GradScaler`` is on **iff**
``amp == "fp16"``, on any device: fp16 gradients underflow wherever they are computed
(bf16 has float32's range and needs none). fp16 on the CPU works but is very slow (no
fp16 kernels); a warning says so.
"""

from __future__ import annotations

import logging
from contextlib import AbstractContextManager, nullcontext
from typing import Literal

import torch

log = logging.getLogger(__name__)

AmpMode = Literal["off", "bf16", "fp16"]
DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


class AMP:
    """Autocast and gradient scalers for ``mode`` on ``device``."""

    def __init__(self, mode: AmpMode, device: torch.device, warn: bool = True) -> None:
        self.mode, self.device = mode, device
        self.dtype = DTYPES.get(mode)
        if mode == "fp16" and device.type == "cpu" and warn:
            log.warning("amp='fp16' on CPU is very slow (no fp16 kernels): use 'bf16'")

    def autocast(self) -> AbstractContextManager:
        """The context a forward pass runs in: ``torch.autocast`` in the AMP dtype, or
        nothing with ``amp = "off"``."""
        if self.dtype is None:
            return nullcontext()
        return torch.autocast(self.device.type, dtype=self.dtype)

    def grad_scaler(self) -> torch.amp.GradScaler:
        """A new ``GradScaler``, enabled iff ``amp == "fp16"`` (disabled, it passes
        ``scale``/``step``/``update`` straight through)."""
        return torch.amp.GradScaler(self.device.type, enabled=self.mode == "fp16")
