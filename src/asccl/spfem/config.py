"""``SPFEMTrainConfig``: every setting of ``asccl spfem train`` (see ``configs/spfem/*.toml``),
with its models' tables ``GANmutConfig`` and ``ICfaceConfig`` (torch-free, for ``--help``)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from asccl.config import ConfigError, is_device, is_int, is_number, names_field, path_field, require
from asccl.data.clips import MEAD_EMOTIONS
from asccl.training.resume import OMIT, data_settings, run_settings, weights_digest

#: the reference generators (:data:`asccl.spfem.generators.GENERATORS`' names)
MODELS = ("ganmut", "icface")
#: ICface's driving-parameter layouts (:data:`asccl.spfem.action_units.LAYOUTS`' names)
ICFACE_PARAMS = ("landmarks", "openface")

#: settings a resumed run may change: they move neither the data order nor the maths
RESUMABLE_CHANGES = frozenset({
    "out", "steps", "sample_every", "sample_rows", "checkpoint_every", "keep_checkpoints",
    "log_every", "workers", "device", "threads", "resume", "tensorboard",
})  # fmt: skip


@dataclass(frozen=True)
class GANmutConfig:
    """Architecture and loss weights of :class:`GANmut` (GANmut's values in brackets)."""

    #: not set here: the run's top-level ``image_size`` replaces it (another value is refused)
    image_size: int = 64
    variant: Literal["linear", "gaussian"] = "linear"  #: the gamut's form (see the module)
    num_emotions: int = len(MEAD_EMOTIONS)  #: classes, label 0 neutral [7, AffectNet]
    g_channels: int = 32  #: generator width after the stem [64]
    g_downsamples: int = 2  #: stride-2 stages (the bottleneck is size / 2^n) [2]
    g_res_blocks: int = 3  #: residual blocks in the bottleneck [6]
    d_channels: int = 32  #: discriminator width of its first layer [64]
    d_layers: int = 4  #: discriminator stride-2 layers (size / 2^n must be >= 1) [6]
    adversarial: Literal["wgan-gp", "lsgan"] = "wgan-gp"  #: adversarial loss ["gp": WGAN-GP]
    lambda_gp: float = 10.0  #: WGAN gradient penalty [10]
    lambda_cls: float = 1.0  #: emotion classification (D on real, G on fake) [1]
    lambda_point: float = 1.0  #: gamut point regression, GANmut's "info" loss (D and G)
    lambda_strength: float = 1.0  #: linear: D's top class probability on a fake vs rho
    lambda_cycle: float = 10.0  #: cycle L1 [10, "lambda_rec"]
    lambda_identity: float = 1.0  #: reconstruction L1, G(x, own condition) = x [none]
    lambda_paired: float = 0.0  #: L1 to the DTW-aligned target [none]
    rho_min: float = 0.2  #: linear: training intensities rho ~ U[rho_min, 1] [0.2]
    point_noise: float = 0.075  #: linear: std of the jitter added to training points [0.075]
    num_random: int = 2  #: rows per batch given a random gamut point ["n_r", 5]
    translate_rho: float = 1.0  #: linear: intensity used by translate()
    #: output ``tanh(head + atanh(x))``: the generator starts at the identity and learns the
    #: change (not GANmut; for short CPU budgets such as the demo) [false]
    skip: bool = False

    def __post_init__(self) -> None:
        if self.variant not in ("linear", "gaussian"):
            raise ValueError(f"variant must be 'linear' or 'gaussian', got {self.variant!r}")
        if self.adversarial not in ("wgan-gp", "lsgan"):
            raise ValueError(f"adversarial must be 'wgan-gp' or 'lsgan', got {self.adversarial!r}")
        if self.num_emotions < 2:
            raise ValueError(f"num_emotions must be >= 2, got {self.num_emotions}")
        for name in ("g_downsamples", "d_layers"):
            if self.image_size % 2 ** getattr(self, name):
                raise ValueError(
                    f"image_size {self.image_size} must be a multiple of 2**{name} "
                    f"= {2 ** getattr(self, name)}"
                )
        if not 0.0 <= self.rho_min <= 1.0:
            raise ValueError(f"rho_min must be in [0, 1], got {self.rho_min}")
        if self.num_random < 0:
            raise ValueError(f"num_random must be >= 0, got {self.num_random}")
        for name in ("g_channels", "d_channels", "d_layers"):
            require(is_int(getattr(self, name), 1), self, name, "must be an integer >= 1")
        for name in ("g_downsamples", "g_res_blocks"):
            require(is_int(getattr(self, name), 0), self, name, "must be an integer >= 0")
        # a weight of 0 switches its term off; no jitter (point_noise = 0) is allowed too
        for name in (*_weights(self), "point_noise"):
            require(is_number(getattr(self, name)) and getattr(self, name) >= 0, self, name,
                    "must be a finite number >= 0")  # fmt: skip
        # 0 is neutral's point (the origin), 1 the gamut's edge, as training's rho
        require(is_number(self.translate_rho) and 0 <= self.translate_rho <= 1, self,
                "translate_rho", "must be a number in [0, 1]")  # fmt: skip


def _weights(config: object) -> tuple[str, ...]:
    """The ``lambda_*`` loss weights of a model's config."""
    return tuple(f.name for f in dataclasses.fields(config) if f.name.startswith("lambda_"))


@dataclass(frozen=True)
class ICfaceConfig:
    """Settings of :class:`ICface`.

    Attributes:
        image_size: side ``S`` of the square frames (a multiple of ``2 ** d_layers`` and of
            ``2 ** num_down``); not set here: the run's top-level ``image_size`` replaces
            it (another value is refused).
        params: ``"landmarks"`` (12 values from ``batch["*_landmarks"]``) or ``"openface"``
            (ICface's 20 values in ``batch["source_params"]``, ``batch["target_params"]``).
        mouth_from: ``"source"``: the speech entries (mouth opening, width, jaw) of the
            driving vector come from the source frame; ``"reference"``: from the reference.
        pose_from: ``"source"`` or ``"reference"``: where the head-pose entries come from.
        conv_dim: channels of each sub-net's first layer (doubled at each down step).
        num_down: stride-2 steps of each encoder (and x2 steps of each decoder).
        res_blocks: residual blocks at each sub-net's bottleneck.
        d_conv_dim, d_layers: discriminator width and depth (PatchGAN, no normalisation).
        lambda_adv: adversarial (LSGAN) weight, generator and discriminator side.
        lambda_param: parameter regression weight, generator side (generated and neutral).
        lambda_d_param: parameter regression weight, discriminator side (real frames).
        lambda_rec: L1 weight of ``G_A(neutral, source params)`` vs the source.
        lambda_paired: L1 weight of ``generated`` vs the DTW-aligned target frame.
        skip: each sub-net outputs ``tanh(head + atanh(input image))`` with a zero-initialised
            head, so both start at the identity and learn the change (not ICface; for short
            CPU budgets such as the demo, as GANmut's ``skip``).
    """

    image_size: int = 64
    params: str = "landmarks"
    mouth_from: str = "source"
    pose_from: str = "source"
    conv_dim: int = 32
    num_down: int = 2
    res_blocks: int = 3
    d_conv_dim: int = 32
    d_layers: int = 4
    lambda_adv: float = 1.0
    lambda_param: float = 10.0
    lambda_d_param: float = 10.0
    lambda_rec: float = 10.0
    lambda_paired: float = 10.0
    skip: bool = False

    def __post_init__(self) -> None:
        if self.params not in ICFACE_PARAMS:
            raise ValueError(f"params must be one of {sorted(ICFACE_PARAMS)}, got {self.params!r}")
        for name in ("mouth_from", "pose_from"):
            if getattr(self, name) not in ("source", "reference"):
                raise ValueError(f"{name} must be 'source' or 'reference', got "
                                 f"{getattr(self, name)!r}")  # fmt: skip
        for name in ("image_size", "conv_dim", "num_down", "d_conv_dim", "d_layers"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        require(is_int(self.res_blocks, 0), self, "res_blocks", "must be an integer >= 0")
        for name in _weights(self):  # a weight of 0 switches its term off
            require(is_number(getattr(self, name)) and getattr(self, name) >= 0, self, name,
                    "must be a finite number >= 0")  # fmt: skip
        if self.image_size % 2 ** max(self.num_down, self.d_layers):
            raise ValueError(
                f"image_size {self.image_size} must be a multiple of "
                f"2 ** max(num_down, d_layers) = {2 ** max(self.num_down, self.d_layers)}"
            )


@dataclass(frozen=True)
class SPFEMTrainConfig:
    """Settings of ``asccl spfem train`` (see ``configs/spfem/*.toml``).

    The model's own settings are the table named after it (``[ganmut]`` or ``[icface]``);
    ``image_size`` here replaces theirs: a table's ``image_size`` other than its default
    and this one is refused (it would be ignored).
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
        # speakers/emotions left out are all; an empty list would leave no frame pair to train
        # on (a DataError once the data loads): refused here. exclude_speakers = [] is none.
        names, all_ = 'must be a list of names, e.g. ["W021"]', "or leave it out for all"
        names_field(self, "speakers", optional=True, problem=names,
                    empty=f'name at least one speaker, e.g. ["W021"], {all_}')  # fmt: skip
        names_field(self, "exclude_speakers", problem=names)
        names_field(self, "emotions", optional=True, problem=names,
                    empty=f'name at least one emotion, e.g. ["angry"], {all_}')  # fmt: skip
        require(self.model in MODELS, self, "model", f"must be one of {sorted(MODELS)}")
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
        for name in MODELS:  # a table's own image_size is never used: refuse one that differs
            size, default = getattr(self, name).image_size, _default_size(name)
            if size not in (default, self.image_size):
                raise ConfigError(
                    f"{name}.image_size = {size} is not used (the run's image_size = "
                    f"{self.image_size} replaces it): set the top-level image_size instead"
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


def _default_size(model: str) -> int:
    """The default ``image_size`` of ``model``'s table (``GANmutConfig``, ``ICfaceConfig``)."""
    cls = {"ganmut": GANmutConfig, "icface": ICfaceConfig}[model]
    return next(f.default for f in dataclasses.fields(cls) if f.name == "image_size")
