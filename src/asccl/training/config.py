"""``TrainConfig``: every setting of ``asccl train-metric`` (see ``configs/metric/*.toml``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from asccl.metric.config import MetricConfig


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
    epochs: int = 50
    max_steps: int | None = None  #: stop after this many optimiser steps (short runs)
    seed: int = 0
    num_workers: int = 4  #: DataLoader workers per process
    amp: Literal["off", "bf16", "fp16"] = "off"
    channels_last: bool = False
    compile: bool = False  #: torch.compile the backbone
    #: BatchNorm during training: "train" (batch statistics, as the authors), "frozen"
    #: (running statistics, no updates), "sync" (SyncBatchNorm across GPUs under torchrun)
    batchnorm: Literal["train", "frozen", "sync"] = "train"
    checkpoint_every: int = 500  #: optimiser steps between checkpoints (and every epoch end)
    keep_checkpoints: int = 3  #: newest checkpoints kept on disk
    val_every: int = 0  #: optimiser steps between validations (0: at each epoch end only)
    val_batches: int = 50  #: validation batches per validation (0: the whole split)
    resume: bool = True  #: continue from the newest valid checkpoint in ``out``
    device: str = "auto"  #: "auto" (cuda if available), "cpu", "cuda", "cuda:1"...
    tensorboard: bool = False  #: also log to TensorBoard (needs the tensorboard package)
    log_every: int = 10  #: optimiser steps between training log rows
