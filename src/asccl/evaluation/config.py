"""Settings and the account of one ``asccl evaluate`` run: :class:`EvalConfig`
(``configs/eval/*.toml``, ``[eval]`` of an experiment) and :class:`EvalSummary` (features
computed or reused, layout problems, clips not scored)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from asccl.config import (
    ConfigError,
    is_device,
    is_int,
    is_number,
    names_field,
    path_field,
    require,
)

METRIC_SWITCHES = ("distribution", "fid", "fad", "csim", "lse", "kid", "ground_truth")
#: the ground-truth metrics' table columns (switch "ground_truth")
GROUND_TRUTH_METRICS = ("lme_mouth", "lme_face", "lmd_mouth", "lmd_face", "psnr", "ssim")
#: what FID/FAD compare the results with (see ``EvalConfig.real_set``)
REAL_SETS = ("sources", "references", "ground_truth")
#: how a metric frames the faces (see :mod:`asccl.evaluation.framing`)
FRAMINGS = ("track", "center", "none")
#: the FID/KID inputs' preprocessing (see :func:`asccl.evaluation.framing.inception_input`)
FID_PREPROCESS = ("pytorch-fid", "center-crop")


@dataclass(frozen=True)
class EvalConfig:
    """Settings of ``asccl evaluate`` (see ``configs/eval/demo.toml``); ``device`` has no
    "auto": the evaluation runs where it is told."""

    results: Path = Path("runs/demo/results")  # results folder (layout: evaluation/results.py)
    out: Path = Path("runs/demo/eval")  # tables/, plots/, grids/, scores.csv, report.txt, cache/
    distribution_metric: Literal["fid", "fad"] = "fid"  # GANmut table: FID; DSM table: FAD
    # switched-on metrics: "distribution" (or its name, "fid"/"fad"), "csim", "lse", "kid"
    # (KID of pytorch-fid's Inception features against real_set: valid for small sets),
    # "ground_truth" (mouth/face landmark error, PSNR, SSIM against ground_truth/: switched
    # on by itself when the results folder has one)
    metrics: tuple[str, ...] = ("distribution", "csim", "lse")
    inception_weights: Path | None = None  # pt_inception-2015-12-05-6726825d.pth (FID)
    arcface_weights: Path | None = None  # insightface backbone.pth (FAD, CSIM)
    arcface_backbone: str = "iresnet50"  # IResNet depth of arcface_weights
    syncnet_weights: Path | None = None  # syncnet_v2.model (LSE)
    # face framing of the face metrics' inputs (evaluation/framing.py): "track" (landmark
    # track: syncnet_python's crop for LSE, 5-point alignment for CSIM/FAD), "center" (centre
    # square), "none" (frames are already aligned crops); framing_csim (CSIM and FAD) and
    # framing_lse override it per metric ("" = framing)
    framing: str = "track"
    framing_csim: str = ""  # framing of CSIM and FAD's inputs ("" = framing)
    framing_lse: str = ""  # framing of LSE's inputs ("" = framing)
    fid_preprocess: str = "pytorch-fid"  # or "center-crop" (not pytorch-fid's: named in tables)
    crop_scale: float = 0.4  # syncnet_python's --crop_scale
    landmark_backend: str = "dlib"  # as asccl data: "dlib" or "fan" (needs fan_weights)
    fan_weights: Path | None = None  # folder of the FAN/S3FD files; None: ASCCL_FAN_WEIGHTS
    detect_every: int = 10  # face detector every N frames, landmarks tracked between
    landmark_every: int = 1  # landmarks every k frames, interpolated between
    max_frames_per_clip: int = 0  # first N frames of each clip; 0 = all
    lse_min_frames: int = 0  # syncnet_python drops tracks of <= 100 frames; MEAD clips are short
    lse_vshift: int = 15  # audio-video offsets searched each way (frames), syncnet_python's
    #: LSE's inputs through the lossy steps of syncnet_python's run_pipeline and evaluate, as
    #: the reference feeds SyncNet: full frames as MPEG-4 (q 2) in AVI then JPEG (q 2), the
    #: crops as OpenCV's XVID video then MJPEG at the CLI's defaults, the audio as MP3 in that
    #: AVI (its 1105-sample priming kept). false: clean frames and audio, the same frame pick
    lse_codecs: bool = True
    #: the ffmpeg CLI whose run_pipeline to follow: "4-6" (4.x to 6.x: the images and audio of
    #: 4.2.2 and 5.1) or "7+" (7.0.2 and 9.0.2: another 25 fps frame pick, late audio unpadded)
    lse_ffmpeg: str = "4-6"
    frame_folder_fps: float = 25.0  # frame rate assumed for frame-folder results
    batch_size: int = 32  # frames per feature-extractor call
    device: str = "cpu"  # where features are computed: "cpu", "cuda", "cuda:N", "mps"
    grid_clips: int = 3  # clips per qualitative grid; 0 = no grids
    methods: tuple[str, ...] = ()  # methods to evaluate, in table order; () = all, by name
    # FID/FAD's real set: "sources" (the inputs), "references" (references/<setting>/) or
    # "ground_truth" (ground_truth/<setting>/: the target clips; layout in results.py)
    real_set: Literal["sources", "references", "ground_truth"] = "sources"

    def __post_init__(self) -> None:
        """One :class:`~asccl.config.ConfigError` per nonsense value, naming its key."""
        names_field(self, "metrics", problem=f"must name switches of {list(METRIC_SWITCHES)}",
                    empty=f'name at least one of {list(METRIC_SWITCHES)}, e.g. ["distribution", '
                    '"csim", "lse"]')  # fmt: skip
        names_field(self, "methods", problem='must be a list of method folder names, e.g. '
                    '["baseline", "asccl"]')  # fmt: skip
        for name in ("results", "out"):
            path_field(self, name)
        for name in ("inception_weights", "arcface_weights", "syncnet_weights"):
            path_field(self, name, optional=True)
        require(self.distribution_metric in ("fid", "fad"), self, "distribution_metric",
                'must be "fid" or "fad"')  # fmt: skip
        unknown = [m for m in self.metrics if m not in METRIC_SWITCHES]
        if unknown:
            raise ConfigError(f"metrics: unknown {unknown}; valid: {list(METRIC_SWITCHES)}")
        other = {"fid": "fad", "fad": "fid"}[self.distribution_metric]
        if other in self.metrics:
            raise ConfigError(
                f"metrics lists {other!r} but distribution_metric is "
                f"{self.distribution_metric!r}; set distribution_metric = {other!r}"
            )
        from asccl.metric.config import IRESNET_LAYERS

        require(self.arcface_backbone in IRESNET_LAYERS, self, "arcface_backbone",
                f"must be one of {list(IRESNET_LAYERS)}")  # fmt: skip
        self._check_framing()
        for name, low in (("max_frames_per_clip", 0), ("lse_min_frames", 0), ("lse_vshift", 1),
                          ("batch_size", 1), ("grid_clips", 0)):  # fmt: skip
            require(is_int(getattr(self, name), low), self, name, f"must be an integer >= {low}")
        require(isinstance(self.lse_codecs, bool), self, "lse_codecs",
                "must be true or false")  # fmt: skip
        from asccl.evaluation.syncnet_timing import FFMPEG_BEHAVIOURS

        require(self.lse_ffmpeg in FFMPEG_BEHAVIOURS, self, "lse_ffmpeg",
                f"must be one of {list(FFMPEG_BEHAVIOURS)}")  # fmt: skip
        require(is_number(self.frame_folder_fps) and 0 < self.frame_folder_fps <= 1000, self,
                "frame_folder_fps", "must be a frame rate > 0 and <= 1000")  # fmt: skip
        require(is_device(self.device), self, "device",
                'must be "cpu", "mps", "cuda" or "cuda:N"')  # fmt: skip
        require(len(set(self.methods)) == len(self.methods), self, "methods",
                "must not repeat a method")  # fmt: skip
        require(self.real_set in REAL_SETS, self, "real_set", f"must be one of {list(REAL_SETS)}")

    def _check_framing(self) -> None:
        for name in ("framing", "framing_csim", "framing_lse"):
            allowed = FRAMINGS if name == "framing" else ("", *FRAMINGS)
            require(getattr(self, name) in allowed, self, name, f"must be one of {list(allowed)}")
        require(self.fid_preprocess in FID_PREPROCESS, self, "fid_preprocess",
                f"must be one of {list(FID_PREPROCESS)}")  # fmt: skip
        require(is_number(self.crop_scale) and 0 <= self.crop_scale <= 2, self, "crop_scale",
                "must be a number in [0, 2] (syncnet_python: 0.4)")  # fmt: skip
        require(self.landmark_backend in ("dlib", "fan"), self, "landmark_backend",
                'must be "dlib" or "fan"')  # fmt: skip
        path_field(self, "fan_weights", optional=True)
        for name in ("detect_every", "landmark_every"):
            require(is_int(getattr(self, name), 1), self, name, "must be an integer >= 1")

    def framing_of(self, kind: str) -> str:
        """The framing of extractor ``kind`` (``"arcface"``, ``"syncnet"``)."""
        override = {"arcface": self.framing_csim, "syncnet": self.framing_lse}[kind]
        return override or self.framing

    @property
    def use_distribution(self) -> bool:
        return bool({"distribution", self.distribution_metric} & set(self.metrics))

    @property
    def table_metrics(self) -> list[str]:
        """Table columns per method, in the paper's order (FID/FAD, LSE-D, CSIM, LSE-C)."""
        names = [self.distribution_metric] if self.use_distribution else []
        names += ["kid"] if "kid" in self.metrics else []  # KID of Inception features
        names += ["lse_d"] if "lse" in self.metrics else []
        names += ["csim"] if "csim" in self.metrics else []
        names += ["lse_c"] if "lse" in self.metrics else []
        names += list(GROUND_TRUTH_METRICS) if "ground_truth" in self.metrics else []
        return names


@dataclass
class EvalSummary:
    """What a run did: feature counts, layout problems, unreadable or dropped clips."""

    computed: int = 0
    cached: int = 0
    redone: int = 0  #: of ``computed``: cache entries made by other settings or another clip
    redone_because: dict[str, int] = field(default_factory=dict)  #: recipe key -> entries
    problems: list[str] = field(default_factory=list)
    failures: dict[str, str] = field(default_factory=dict)  # path -> reason

    def fail(self, path: Path, reason: str) -> None:
        """List ``path`` as not (fully) scored, with ``reason`` (reasons accumulate)."""
        key, before = str(path), self.failures.get(str(path))
        if before is None:
            self.failures[key] = reason
        elif reason not in before.split("; "):
            self.failures[key] = f"{before}; {reason}"

    def report(self) -> str:
        redone = ""
        if self.redone:
            why = ", ".join(f"{k} ({n})" for k, n in sorted(self.redone_because.items()))
            redone = f" ({self.redone} redone: cached with other settings or clip: {why})"
        lines = [
            f"features computed: {self.computed}{redone}, reused from cache: {self.cached}",
            f"layout problems: {len(self.problems)}",
            *(f"  {p}" for p in self.problems),
            f"clips skipped (unreadable or unscored): {len(self.failures)}",
            *(f"  {p}: {r}" for p, r in sorted(self.failures.items())),
        ]
        return "\n".join(lines) + "\n"
