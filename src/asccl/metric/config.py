"""The metric's settings: :class:`MetricConfig`, saved inside every checkpoint so that a
loaded metric behaves as trained, and :class:`MetricEvalConfig`, ``asccl metric evaluate``'s.

Torch-free (``--help`` and config checks import it alone): the architecture facts the
checks need live here, and the torch modules import them (``IRESNET_LAYERS`` in
:mod:`~asccl.metric.iresnet`, :func:`anchor_window` in :mod:`~asccl.metric.sampler`).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from asccl.config import is_device, is_int, names_field, path_field, require
from asccl.data.crop_store import STORE_SUFFIX

ChannelOrder = Literal["rgb", "bgr"]
NegativeMode = Literal["patch", "random"]
AdaptiveMode = Literal["pair", "authors", "off"]

#: Blocks per stage of each published depth (arcface_torch ``backbones/iresnet.py``).
IRESNET_LAYERS: dict[str, tuple[int, int, int, int]] = {
    "iresnet18": (2, 2, 2, 2),
    "iresnet34": (3, 4, 6, 3),
    "iresnet50": (3, 4, 14, 3),
    "iresnet100": (3, 13, 30, 3),
}

#: The authors' released loss arithmetic, independent of any weights: negatives from the
#: other sampled patches, one set of regions per batch, their anchor window (stage-4
#: neighbours may wrap to the far edge) and their adaptive weighting (one global scale).
#: With ``channel_order="bgr"`` (their OpenCV frames) it reproduces their loss exactly.
AUTHORS_ARITHMETIC: dict[str, Any] = {
    "negatives": "patch",
    "per_image_regions": False,
    "authors_window": True,
    "adaptive": "authors",
}


@dataclass(frozen=True)
class MetricConfig:
    """Architecture and contrastive settings of an :class:`~asccl.metric.ASCCLMetric`.

    Defaults follow the paper and the authors' code, except where the spec asks for the
    intended behaviour (neighbours kept inside the map, per-pair adaptive weights).
    """

    backbone: str = "iresnet50"  #: IResNet depth: iresnet18/34/50/100
    image_size: int = 224  #: side of the square input the metric sees
    channel_order: ChannelOrder = "rgb"  #: channel order the metric was trained on
    num_anchors: tuple[int, int, int, int] = (32, 16, 8, 4)  #: anchors per stage 1..4
    negatives: NegativeMode = "patch"  #: "patch" (authors' code) or "random" (paper text)
    num_random_negatives: int = 8  #: K random regions per anchor in "random" mode
    temperature: float = 0.07  #: InfoNCE temperature
    loss_scale: float = 0.3  #: the authors' factor on the sum over stages
    adaptive: AdaptiveMode = "pair"  #: "pair" (intended), "authors" (global scale), "off"
    adaptive_threshold: float = 0.8  #: sigmoid(|disparity|) above it is weighted 2 t^2
    per_image_regions: bool = False  #: new locations per image instead of per batch
    authors_window: bool = False  #: the authors' anchor window (neighbours may wrap)
    head_reduction: int = 4  #: head output size is C // head_reduction
    extra: dict[str, Any] = field(default_factory=dict)  #: free-form provenance notes

    def __post_init__(self) -> None:
        object.__setattr__(self, "num_anchors", tuple(int(n) for n in self.num_anchors))
        if self.backbone not in IRESNET_LAYERS:
            raise ValueError(
                f"unknown backbone {self.backbone!r}; valid: {', '.join(IRESNET_LAYERS)}"
            )
        _check_choice("channel_order", self.channel_order, ("rgb", "bgr"))
        _check_choice("negatives", self.negatives, ("patch", "random"))
        _check_choice("adaptive", self.adaptive, ("pair", "authors", "off"))
        if len(self.num_anchors) != 4 or min(self.num_anchors) < 1:
            raise ValueError(f"num_anchors needs 4 positive counts, got {self.num_anchors}")
        if not _is_int(self.image_size) or self.image_size < 16 or self.image_size % 16:
            raise ValueError(f"image_size must be a multiple of 16, got {self.image_size}")
        for name in ("temperature", "loss_scale", "adaptive_threshold"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
                raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
        for name in ("num_random_negatives", "head_reduction"):
            value = getattr(self, name)
            if not _is_int(value) or value < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
        if self.head_reduction > 64:  # stage 1 has 64 channels
            raise ValueError(f"head_reduction must be <= 64, got {self.head_reduction}")
        for stage, count in enumerate(self.num_anchors):  # stage maps: size/2 .. size/16
            side = self.image_size // 2 ** (stage + 1)
            try:
                start, stop = anchor_window(side, authors_window=self.authors_window)
            except ValueError:
                start = stop = 0
            room = (stop - start) ** 2
            if count > room:
                raise ValueError(
                    f"image_size {self.image_size} is too small for num_anchors "
                    f"{self.num_anchors}: the stage-{stage + 1} map is {side}x{side}, with "
                    f"room for {room} anchors"
                )
            if self.negatives == "random" and side * side <= 9:
                raise ValueError(
                    f"image_size {self.image_size} is too small for random negatives: the "
                    f"stage-{stage + 1} map is {side}x{side}, all anchor or neighbour"
                )

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-serialisable dict."""
        data = dataclasses.asdict(self)
        data["num_anchors"] = list(self.num_anchors)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> MetricConfig:
        """Inverse of :meth:`to_dict`; unknown keys are an error."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown metric config keys {unknown}; valid: {sorted(known)}")
        return cls(**data)

    def replace(self, **changes: Any) -> MetricConfig:
        """A copy with ``changes`` applied (validated; unknown names are an error)."""
        return MetricConfig.from_dict({**self.to_dict(), **changes})

    def authors_differences(self) -> dict[str, Any]:
        """The fields of :data:`AUTHORS_ARITHMETIC` where this config departs from the
        authors' arithmetic, with this config's values (empty: it computes their loss)."""
        return {
            name: getattr(self, name)
            for name, value in AUTHORS_ARITHMETIC.items()
            if getattr(self, name) != value
        }


#: what to give instead of an empty list (``names_field``'s ``empty``), for the held-out
#: speakers and emotions of ``MetricEvalConfig`` and ``TrainConfig``: no held-out speaker
#: leaves nothing to validate on; emotions left out (``None``) is all, an empty list none
NAMES_IF_EMPTY = {
    "val_speakers": 'name at least one held-out speaker, e.g. ["W021"]',
    "emotions": 'name at least one emotion, e.g. ["angry"], or leave it out for all',
}


@dataclass(frozen=True)
class MetricEvalConfig:
    """Settings of ``asccl metric evaluate`` (see ``configs/metric/health_demo.toml``)."""

    checkpoint: Path = Path("runs/metric/metric.safetensors")  #: the trained metric
    data: Path = Path("runs/mead")  #: the stage-1 folder it trained on (pairs.csv, crops/)
    out: Path = Path("runs/metric/health")  #: tables, plot, JSON
    val_speakers: tuple[str, ...] = ("W021",)  #: held-out speakers
    emotions: tuple[str, ...] | None = None  #: only these emotions' clip pairs (None: all)
    crop_format: str = "jpeg"  #: the crop store format stage 1 wrote
    #: insightface backbone.pth for the untrained baseline (None: random init, seeded)
    arcface_weights: Path | None = None
    max_pairs: int = 0  #: clip pairs evaluated, spread over the emotions (0: all)
    max_frames: int = 32  #: neutral frames per clip pair, evenly spaced (0: all)
    tolerance: int = 1  #: a retrieved frame within this many frames of the partner hits
    seed: int = 0  #: the regions' draw and the untrained baseline's init
    batch_size: int = 32  #: frames per backbone call
    device: str = "auto"  #: "auto" (cuda if available), "cpu", "cuda", "cuda:1"...
    threads: int = 0  #: CPU threads for torch (0: torch's default)
    channels_last: bool = False  #: run the backbones channels-last (faster on CPU)

    def __post_init__(self) -> None:
        """One :class:`~asccl.config.ConfigError` per nonsense value, naming its key."""
        for name in ("checkpoint", "data", "out"):
            path_field(self, name)
        path_field(self, "arcface_weights", optional=True)
        for name, empty in NAMES_IF_EMPTY.items():
            names_field(self, name, optional=name == "emotions", empty=empty,
                        problem='must be a list of non-empty names, e.g. ["W021"]')  # fmt: skip
        require(self.crop_format in STORE_SUFFIX, self, "crop_format",
                f"must be one of {', '.join(STORE_SUFFIX)}")  # fmt: skip
        for name in ("max_pairs", "max_frames", "tolerance", "threads"):
            require(is_int(getattr(self, name), 0), self, name, "must be an integer >= 0")
        require(is_int(self.batch_size, 1), self, "batch_size", "must be an integer >= 1")
        require(isinstance(self.channels_last, bool), self, "channels_last",
                "must be true or false")  # fmt: skip
        require(is_int(self.seed, 0, 2**63 - 1), self, "seed", "must be in [0, 2**63)")
        require(is_device(self.device, auto=True), self, "device",
                'must be "auto", "cpu", "mps", "cuda" or "cuda:N"')  # fmt: skip


def anchor_window(size: int, *, authors_window: bool = False) -> tuple[int, int]:
    """``[start, stop)`` of anchor coordinates along an axis of length ``size``.

    The authors' central window has side ``int(size // 2 + 0.45 * size)`` and border
    ``(size - side) // 2``. Unless ``authors_window``, it is clipped to ``[1, size - 1)``
    so that all 8 neighbours stay inside the map.
    """
    side = int(size // 2 + 0.45 * size)
    start = (size - side) // 2
    stop = start + side
    if not authors_window:
        start, stop = max(start, 1), min(stop, size - 1)
    if stop <= start:
        raise ValueError(f"a feature map of size {size} is too small to sample regions from")
    return start, stop


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_choice(name: str, value: str, valid: tuple[str, ...]) -> None:
    if value not in valid:
        raise ValueError(f"{name} must be one of {valid}, got {value!r}")
