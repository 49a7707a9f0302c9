"""``SPFEMTrainConfig``: every setting of ``asccl spfem train`` (see ``configs/spfem/*.toml``)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from asccl.config import ConfigError, is_device, is_int, is_number, names_field, path_field, require
from asccl.spfem.generators import GENERATORS
from asccl.spfem.generators.ganmut import GANmutConfig
from asccl.spfem.generators.icface import ICfaceConfig
from asccl.training.resume import OMIT, data_settings, run_settings, weights_digest

#: settings a resumed run may change: they move neither the data order nor the maths
RESUMABLE_CHANGES = frozenset({
    "out", "steps", "sample_every", "sample_rows", "checkpoint_every", "keep_checkpoints",
    "log_every", "workers", "device", "threads", "resume", "tensorboard",
})  # fmt: skip


@dataclass(frozen=True)
class SPFEMTrainConfig:
    """Settings of ``asccl spfem train`` (see ``configs/spfem/*.toml``).

    The model's own settings are the table named after it (``[ganmut]`` or ``[icface]``);
    ``image_size`` here overrides theirs.
    """

    model: Literal["ganmut", "icface"] = "ganmut"  #: the generator trained
    data: Path = Path("runs/demo/data")  #: stage-1 output (pairs.csv + crops/)
    out: Path = Path("runs/spfem/ganmut")  #: checkpoints, samples, log, final generator
    steps: int = 1000  #: generator updates
    batch_size: int = 16  #: frame pairs per update, over all processes
    g_lr: float = 1e-4  #: generator Adam learning rate [GANmut 1e-4]
    d_lr: float = 1e-4  #: discriminator Adam learning rate [GANmut 1e-4]
    betas: tuple[float, float] = (0.5, 0.999)  #: Adam betas [GANmut 0.5, 0.999]
    n_critic: int = 1  #: discriminator updates per generator update [GANmut 5]
    image_size: int = 64  #: frames are resized to this side
    seed: int = 0  #: seed of the run's random draws (initialisation, data order, regions)
    #: autocast dtype; fp16 also scales the losses (GradScaler), see asccl.training.amp
    amp: Literal["off", "bf16", "fp16"] = "off"
    asccl_checkpoint: Path | None = None  #: the frozen ASCCL metric (.safetensors)
    asccl_weight: float = 0.0  #: 0: baseline, the metric is never built
    asccl_warmup: int = 0  #: steps of the linear ramp of the ASCCL weight
    asccl_every: int = 1  #: compute the ASCCL term every n steps
    sample_every: int = 100  #: steps between sample grids (0: only at the end)
    sample_rows: int = 7  #: frame pairs (one per emotion, up to this many) in a grid
    checkpoint_every: int = 100  #: steps between checkpoints (and at the end)
    keep_checkpoints: int = 2  #: newest checkpoints kept on disk
    log_every: int = 10  #: steps between log rows
    workers: int = 2  #: DataLoader workers per process
    speakers: tuple[str, ...] | None = None  #: train on these speakers only (None: all)
    exclude_speakers: tuple[str, ...] = ()  #: held out (test speakers)
    emotions: tuple[str, ...] | None = None  #: target emotions to train on (None: all)
    crop_format: Literal["jpeg", "npy"] = "jpeg"  #: the stage-1 crop store's format
    device: str = "auto"  #: "auto" (cuda if available), "cpu", "cuda", "cuda:1"
    #: CPU threads for torch (0: torch's default); 1 is fastest on a busy shared machine
    threads: int = 0
    resume: bool = True  #: continue from the newest checkpoint in ``out``
    tensorboard: bool = False  #: also log to TensorBoard (needs the tensorboard package)
    ganmut: GANmutConfig = field(default_factory=GANmutConfig)  #: model = "ganmut"'s settings
    icface: ICfaceConfig = field(default_factory=ICfaceConfig)  #: model = "icface"'s settings

    def __post_init__(self) -> None:
        """One :class:`ConfigError` per nonsense value, naming its key."""
        # a single name given on the command line arrives as a string
        for name in ("speakers", "exclude_speakers", "emotions"):
            names_field(self, name, optional=name != "exclude_speakers",
                        problem='must be a list of names, e.g. ["W021"]')  # fmt: skip
        require(self.model in GENERATORS, self, "model", f"must be one of {sorted(GENERATORS)}")
        for name in ("data", "out"):
            path_field(self, name)
        path_field(self, "asccl_checkpoint", optional=True)
        for name in ("steps", "batch_size", "n_critic", "asccl_every", "sample_rows"):
            require(is_int(getattr(self, name), 1), self, name, "must be an integer >= 1")
        for name in ("asccl_warmup", "sample_every", "checkpoint_every", "keep_checkpoints",
                     "log_every", "workers", "threads"):  # fmt: skip
            require(is_int(getattr(self, name), 0), self, name, "must be an integer >= 0")
        require(is_int(self.seed, 0, 2**63 - 3), self, "seed", "must be in [0, 2**63 - 2)")
        require(is_int(self.image_size, 16, 1024), self, "image_size",
                "must be an integer in [16, 1024]")  # fmt: skip
        for name in ("g_lr", "d_lr"):
            require(is_number(getattr(self, name)) and getattr(self, name) > 0, self, name,
                    "must be a finite number > 0")  # fmt: skip
        require(isinstance(self.betas, tuple) and len(self.betas) == 2
                and all(is_number(b) and 0 <= b < 1 for b in self.betas), self, "betas",
                "must be two numbers in [0, 1), e.g. [0.5, 0.999]")  # fmt: skip
        require(is_number(self.asccl_weight) and self.asccl_weight >= 0, self, "asccl_weight",
                "must be a finite number >= 0")  # fmt: skip
        require(is_device(self.device, auto=True), self, "device",
                'must be "auto", "cpu", "mps", "cuda" or "cuda:N"')  # fmt: skip
        if self.asccl_weight > 0 and self.asccl_checkpoint is None:
            raise ConfigError(
                f"asccl_weight = {self.asccl_weight} needs asccl_checkpoint (a metric "
                ".safetensors from `asccl train-metric`)"
            )
        try:  # the model's own checks (e.g. image_size a multiple of 2**downsamples)
            self.model_config()
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"{self.model}: {exc}") from None

    def model_config(self) -> Any:
        """The chosen model's config with this run's ``image_size``."""
        return dataclasses.replace(getattr(self, self.model), image_size=self.image_size)

    def run_settings(self) -> dict[str, str]:
        """What a run's weights depend on (saved in each checkpoint; a resume must match):
        every setting but :data:`RESUMABLE_CHANGES`; the chosen model's table only; the
        data folder and a digest of its ``pairs.csv``; the ASCCL settings only when its
        weight is > 0, with the metric file by its
        :func:`~asccl.training.resume.weights_digest`."""
        other = "icface" if self.model == "ganmut" else "ganmut"
        asccl: dict[str, Any] = {"asccl_checkpoint": OMIT, "asccl_warmup": OMIT,
                                 "asccl_every": OMIT}  # fmt: skip
        if self.asccl_weight > 0:  # else the metric is never built: none of it matters
            asccl = {"asccl_checkpoint": weights_digest(self.asccl_checkpoint)}
        return run_settings(self, RESUMABLE_CHANGES, **{other: OMIT},
                            **{self.model: self.model_config()}, **data_settings(self.data),
                            **asccl)  # fmt: skip
