"""``TrainConfig``: every setting of ``asccl train-metric`` (see ``configs/metric/*.toml``)."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from asccl.config import ConfigError
from asccl.metric.config import MetricConfig

#: what ``device`` may be: "auto", "cpu", "mps", "cuda" or "cuda:N"
DEVICE = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")


@dataclass
class TrainConfig:
    """Metric training settings. Defaults are the paper's (seed 1.2): 224x224, Adam,
    batch 16, learning rate 1e-4, 50 epochs."""

    data: Path = Path("runs/mead")  #: a stage-1 output folder (pairs.csv + crops/)
    out: Path = Path("runs/metric")  #: checkpoints, logs, curves
    metric: MetricConfig = field(default_factory=MetricConfig)
    #: "arcface": initialise the backbone from insightface weights (arcface_weights or
    #: ASCCL_ARCFACE_WEIGHTS); "random": random init (for tests and demos; logged loudly)
    init: Literal["arcface", "random"] = "arcface"
    arcface_weights: Path | None = None
    val_speakers: list[str] = field(default_factory=lambda: ["W021"])  #: held out (authors)
    emotions: list[str] | None = None  #: restrict training pairs to these emotions
    batch_size: int = 16  #: global batch (split over processes under torchrun)
    grad_accum: int = 1  #: micro-batches per optimiser step
    lr: float = 1e-4
    epochs: int = 50  #: passes over the training pairs (>= 1: a run always trains)
    max_steps: int | None = None  #: stop after this many optimiser steps (short runs)
    seed: int = 0
    num_workers: int = 4  #: DataLoader workers per process
    amp: Literal["off", "bf16", "fp16"] = "off"
    #: dtype of the weights, the optimiser state and the inputs. "float64" is for
    #: reproducibility checks: runs that differ only in the order of sums (processes,
    #: threads) then agree to ~1e-16 relative instead of float32's ~1e-7, which Adam's
    #: division by sqrt(v) + eps can blow up to a whole step on near-zero gradients.
    #: Slow (no fast float64 kernels on GPUs); not with ``amp``. The metric is saved in
    #: this dtype (``load_metric`` reads it back as float32).
    precision: Literal["float32", "float64"] = "float32"
    channels_last: bool = False
    compile: bool = False  #: torch.compile the backbone
    #: BatchNorm during training: "train" (batch statistics, as the authors), "frozen"
    #: (running statistics, no updates), "sync" (SyncBatchNorm across GPUs under torchrun)
    batchnorm: Literal["train", "frozen", "sync"] = "train"
    #: optimiser steps between checkpoints (and every epoch end; 0: at epoch ends only)
    checkpoint_every: int = 500
    keep_checkpoints: int = 3  #: newest checkpoints kept on disk (0: all)
    val_every: int = 0  #: optimiser steps between validations (0: at each epoch end only)
    val_batches: int = 50  #: validation batches per validation (0: the whole split)
    resume: bool = True  #: continue from the newest valid checkpoint in ``out``
    device: str = "auto"  #: "auto" (cuda if available), "cpu", "cuda", "cuda:1"...
    tensorboard: bool = False  #: also log to TensorBoard (needs the tensorboard package)
    log_every: int = 10  #: optimiser steps between training log rows

    def __post_init__(self) -> None:
        """One :class:`ConfigError` per nonsense value, naming its key."""
        check = self._require
        for name in ("data", "out"):
            check(isinstance(getattr(self, name), Path), name, "must be a path")
        check(
            self.arcface_weights is None or isinstance(self.arcface_weights, Path),
            "arcface_weights",
            "must be a path",
        )
        for name in ("val_speakers", "emotions"):
            names = getattr(self, name)
            if name == "emotions" and names is None:
                continue
            check(
                isinstance(names, (list, tuple)) and all(isinstance(n, str) for n in names),
                name,
                'must be a list of names, e.g. ["W021"]',
            )
            check(len(names) > 0, name, "must name at least one")
        for name in ("batch_size", "grad_accum", "epochs", "log_every"):
            check(_is_int(getattr(self, name), 1), name, "must be an integer >= 1")
        check(
            self.max_steps is None or _is_int(self.max_steps, 1),
            "max_steps",
            "must be an integer >= 1 (or unset: all epochs)",
        )
        check(
            self.batch_size % self.grad_accum == 0,
            "batch_size",
            f"must be divisible by grad_accum ({self.grad_accum}): each optimiser step "
            "averages equal micro-batches",
        )
        for name in (
            "num_workers",
            "checkpoint_every",
            "keep_checkpoints",
            "val_every",
            "val_batches",
        ):
            check(_is_int(getattr(self, name), 0), name, "must be an integer >= 0")
        check(_is_int(self.seed, 0) and self.seed < 2**63, "seed", "must be in [0, 2**63)")
        check(
            isinstance(self.lr, (int, float))
            and not isinstance(self.lr, bool)
            and math.isfinite(self.lr)
            and self.lr > 0,
            "lr",
            "must be a finite number > 0",
        )
        check(
            isinstance(self.device, str) and bool(DEVICE.match(self.device)),
            "device",
            'must be "auto", "cpu", "mps", "cuda" or "cuda:N"',
        )
        check(
            self.precision == "float32" or self.amp == "off",
            "precision",
            f'"float64" cannot be combined with amp = "{self.amp}" (use amp = "off")',
        )
        check(isinstance(self.metric, MetricConfig), "metric", "must be a MetricConfig")

    def _require(self, ok: bool, key: str, problem: str) -> None:
        if not ok:
            raise ConfigError(f"{key} {problem}, got {getattr(self, key)!r}")


def _is_int(value: object, low: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= low
