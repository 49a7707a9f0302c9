"""The metric's settings: saved inside every checkpoint, so a loaded metric behaves as trained."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, Literal

from asccl.metric.contrastive import AdaptiveMode
from asccl.metric.iresnet import IRESNET_LAYERS
from asccl.metric.sampler import anchor_window

ChannelOrder = Literal["rgb", "bgr"]
NegativeMode = Literal["patch", "random"]

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


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_choice(name: str, value: str, valid: tuple[str, ...]) -> None:
    if value not in valid:
        raise ValueError(f"{name} must be one of {valid}, got {value!r}")
