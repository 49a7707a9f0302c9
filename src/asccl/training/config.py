"""``TrainConfig``: every setting of ``asccl train-metric`` (see ``configs/metric/*.toml``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from asccl.config import is_device, is_int, is_number, names_field, path_field, require
from asccl.metric.config import NAMES_IF_EMPTY, MetricConfig
from asccl.training.resume import OMIT, data_settings, run_settings

#: settings a resumed run may change: they move neither the data order nor the maths
#: (``channels_last``/``compile``/``device``/``threads`` pick other kernels for the same
#: maths: equal to rounding, not bit for bit; ``epochs``/``max_steps`` only where it
#: stops; validation reads, never trains)
RESUMABLE_CHANGES = frozenset(
    {
        "out",
        "resume",
        "device",
        "threads",
        "workers",
        "channels_last",
        "compile",
        "epochs",
        "max_steps",
        "checkpoint_every",
        "keep_checkpoints",
        "val_every",
        "log_every",
        "tensorboard",
    }
)


@dataclass(frozen=True)
class TrainConfig:
    """Metric training settings. Defaults are the paper's (seed 1.2): 224x224, Adam,
    batch 16, learning rate 1e-4, 50 epochs."""

    data: Path = Path("runs/mead")  #: a stage-1 output folder (pairs.csv + crops/)
    out: Path = Path("runs/metric")  #: checkpoints, logs, curves
    #: the metric's architecture and contrastive settings (saved in its checkpoint)
    metric: MetricConfig = field(default_factory=MetricConfig)
    #: "arcface": initialise the backbone from insightface weights (arcface_weights or
    #: ASCCL_ARCFACE_WEIGHTS); "random": random init (for tests and demos; logged loudly)
    init: Literal["arcface", "random"] = "arcface"
    arcface_weights: Path | None = None  #: insightface IResNet weights for init = "arcface"
    val_speakers: tuple[str, ...] = ("W021",)  #: held out (the authors' split)
    emotions: tuple[str, ...] | None = None  #: restrict training pairs to these emotions
    batch_size: int = 16  #: global batch (split over processes under torchrun)
    grad_accum: int = 1  #: micro-batches per optimiser step
    lr: float = 1e-4  #: Adam learning rate
    epochs: int = 50  #: passes over the training pairs (>= 1: a run always trains)
    max_steps: int | None = None  #: stop after this many optimiser steps (short runs)
    seed: int = 0  #: seed of the run's random draws (initialisation, data order, regions)
    workers: int = 4  #: DataLoader workers per process
    #: CPU threads for torch (0: torch's default); 1 is fastest on a busy shared machine
    threads: int = 0
    amp: Literal["off", "bf16", "fp16"] = "off"  #: autocast dtype (fp16 also scales the loss)
    #: dtype of the weights, the optimiser state and the inputs. "float64" is for
    #: reproducibility checks: runs that differ only in the order of sums (processes,
    #: threads) then agree to ~1e-16 relative instead of float32's ~1e-7, which Adam's
    #: division by sqrt(v) + eps can blow up to a whole step on near-zero gradients.
    #: Slow (no fast float64 kernels on GPUs); not with ``amp``. The metric is saved in
    #: this dtype (``load_metric`` reads it back as float32).
    precision: Literal["float32", "float64"] = "float32"
    channels_last: bool = False  #: channels-last memory layout (faster convolutions on GPUs)
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
        for name in ("data", "out"):
            path_field(self, name)
        path_field(self, "arcface_weights", optional=True)
        # a list (TOML) or one name (the command line) becomes a tuple of non-empty names;
        # a checkpoint's settings hold its JSON text, the same for a list and a tuple
        for name, empty in NAMES_IF_EMPTY.items():
            names_field(self, name, optional=name == "emotions", empty=empty,
                        problem='must be a list of non-empty names, e.g. ["W021"]')  # fmt: skip
        for name in ("batch_size", "grad_accum", "epochs", "log_every"):
            require(is_int(getattr(self, name), 1), self, name, "must be an integer >= 1")
        require(
            self.max_steps is None or is_int(self.max_steps, 1),
            self,
            "max_steps",
            "must be an integer >= 1 (or unset: all epochs)",
        )
        require(
            self.batch_size % self.grad_accum == 0,
            self,
            "batch_size",
            f"must be divisible by grad_accum ({self.grad_accum}): each optimiser step "
            "averages equal micro-batches",
        )
        for name in (
            "workers",
            "threads",
            "checkpoint_every",
            "keep_checkpoints",
            "val_every",
            "val_batches",
        ):
            require(is_int(getattr(self, name), 0), self, name, "must be an integer >= 0")
        require(is_int(self.seed, 0, 2**63 - 1), self, "seed", "must be in [0, 2**63)")
        require(is_number(self.lr) and self.lr > 0, self, "lr", "must be a finite number > 0")
        require(
            is_device(self.device, auto=True),
            self,
            "device",
            'must be "auto", "cpu", "mps", "cuda" or "cuda:N"',
        )
        require(
            self.precision == "float32" or self.amp == "off",
            self,
            "precision",
            f'"float64" cannot be combined with amp = "{self.amp}" (use amp = "off")',
        )
        require(isinstance(self.metric, MetricConfig), self, "metric", "must be a MetricConfig")

    def run_settings(self) -> dict[str, str]:
        """What the run's weights depend on (saved in each checkpoint; a resume must match):
        every setting but :data:`RESUMABLE_CHANGES`, the data folder with a digest of its
        ``pairs.csv``; not ``arcface_weights``, read at step 0 only (``init`` is kept)."""
        return run_settings(
            self, RESUMABLE_CHANGES, **data_settings(self.data), arcface_weights=OMIT
        )
