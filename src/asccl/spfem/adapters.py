"""SPFEM adapters: where one training step's generated and source images live, and how.

An adapter only *finds and declares* images: it picks the generated frame and the frame it
must stay coherent with out of a generator's ``batch`` and ``outputs`` dicts, and states
their value range and channel order. Conversions (range, channel order, size) are done
by :class:`asccl.ASCCLLoss` with :func:`~asccl.metric.preprocess.to_metric_input` (the one
image contract), from these declarations: ``loss(pair.generated, pair.source)``.

Conventions per generator (``ADAPTERS``), checked against the upstream code (see
``docs/recipes/``):

- ``image2image``: any image-in / image-out generator: ``outputs["generated"]`` vs
  ``batch["source"]`` (optional ``batch["reference"]``), [-1, 1], RGB. asccl's own reference
  generators (:mod:`asccl.spfem.generators`) use it.
- ``ned_renderer``: NED's stage-2 neural renderer (head2head): the generated frames
  ``outputs["fake_B"]`` vs the real ones ``batch["real_B"]``, 256x256 in [-1, 1], RGB. The
  renderer generates a whole window of T frames per step (``fake_B`` is
  ``(B, T, 3, H, W)``, T = ``--max_frames_per_gpu``); stacked ``(B, T*3, H, W)`` works too.
  ``frames="all"`` (default) folds the window into the batch, ``(B*T, 3, H, W)``;
  ``frames="last"`` keeps only the last frame.
- ``icface``: ICface's generated image ``outputs["generated"]`` vs its input
  ``batch["source"]`` (upstream: ``fake_B_recon`` vs ``real_A`` in ``backward_G``), 128x128
  in [-1, 1] (tanh output, inputs normalised with mean = std = 0.5), RGB (PIL-loaded).
- ``ganmut``: ``outputs["generated"]`` vs ``batch["image"]`` (upstream: ``x_fake`` vs
  ``x_real`` in ``Solver.train``), 128x128 in [-1, 1], **BGR**: GANmut's loader reads
  images with OpenCV and never swaps channels; no reference input.

Every key name, the range and the channel order can be overridden:
``get_adapter("ned_renderer", generated_key="fake_frame")``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, Protocol, runtime_checkable

from torch import Tensor

ChannelOrder = Literal["rgb", "bgr"]
FrameMode = Literal["last", "all"]


@dataclass(frozen=True)
class ImagePair:
    """The images of one training step that ASCCL compares.

    Attributes:
        generated: ``(B, 3, H, W)`` generator output (the query; receives gradients).
        source: ``(B, 3, H, W)`` the frame ``generated`` must stay coherent with (the key).
        reference: ``(B, 3, H, W)`` reference-emotion frame, or ``None`` (not used by the
            loss; carried for logging and for generators that compare against it).
        value_range: ``(low, high)`` of the pixel values, e.g. ``(-1.0, 1.0)``.
        channel_order: ``"rgb"`` or ``"bgr"``.
    """

    generated: Tensor
    source: Tensor
    reference: Tensor | None
    value_range: tuple[float, float]
    channel_order: ChannelOrder


@runtime_checkable
class SPFEMAdapter(Protocol):
    """Maps one training step of an SPFEM generator to an :class:`ImagePair`."""

    value_range: tuple[float, float]
    channel_order: ChannelOrder

    def pair(self, batch: Mapping[str, Any], outputs: Mapping[str, Any] | Tensor) -> ImagePair:
        """``batch``: the data loader's dict; ``outputs``: the generator's dict (or tensor)."""
        ...


@dataclass(frozen=True)
class KeyedAdapter:
    """An adapter that reads images from ``batch`` and ``outputs`` by key.

    Args:
        generated_key: key of the generated image in ``outputs``. When ``outputs`` is a
            tensor it is the generated image itself and this key is not used.
        source_key: key of the source (key-side) image in ``batch``.
        reference_key: key of an optional reference image in ``batch`` (``None``: none).
        value_range: declared ``(low, high)`` of all three images.
        channel_order: declared channel order of all three images.
        frames: for stacked temporal windows ``(B, T*3, H, W)`` or ``(B, T, 3, H, W)``:
            ``"last"`` keeps the last frame, ``"all"`` folds them into the batch.
    """

    generated_key: str
    source_key: str
    reference_key: str | None = None
    value_range: tuple[float, float] = (-1.0, 1.0)
    channel_order: ChannelOrder = "rgb"
    frames: FrameMode = "last"

    def __post_init__(self) -> None:
        if self.channel_order not in ("rgb", "bgr"):
            raise ValueError(f"channel_order must be 'rgb' or 'bgr', got {self.channel_order!r}")
        if self.frames not in ("last", "all"):
            raise ValueError(f"frames must be 'last' or 'all', got {self.frames!r}")
        # a list from a YAML/JSON config, or ints, become the float tuple the loss compares
        object.__setattr__(self, "value_range", _value_range(self.value_range))

    def pair(self, batch: Mapping[str, Any], outputs: Mapping[str, Any] | Tensor) -> ImagePair:
        """Pick and reshape the images; shapes are checked, values are not."""
        if isinstance(outputs, Tensor):
            generated = outputs
        else:
            generated = _lookup(outputs, self.generated_key, "outputs")
        generated = self._frames(generated, "generated")
        source = self._frames(_lookup(batch, self.source_key, "batch"), "source")
        if generated.shape != source.shape:
            raise ValueError(
                f"generated {tuple(generated.shape)} and source {tuple(source.shape)} "
                "must have the same shape"
            )
        reference = None
        if self.reference_key is not None and batch.get(self.reference_key) is not None:
            reference = self._frames(batch[self.reference_key], "reference")
        return ImagePair(generated, source, reference, self.value_range, self.channel_order)

    def _frames(self, images: Tensor, name: str) -> Tensor:
        """``(B, 3, H, W)``, ``(B, T*3, H, W)`` or ``(B, T, 3, H, W)`` -> ``(B', 3, H, W)``."""
        if images.dim() == 4 and images.shape[1] == 3:
            return images  # one frame: passed through untouched
        if images.dim() == 4 and images.shape[1] % 3 == 0:
            images = images.unflatten(1, (images.shape[1] // 3, 3))  # (B, T, 3, H, W)
        if images.dim() != 5 or images.shape[2] != 3:
            raise ValueError(
                f"{name} must be (B, 3, H, W), (B, T*3, H, W) or (B, T, 3, H, W), "
                f"got {tuple(images.shape)}"
            )
        if self.frames == "last":
            return images[:, -1]
        return images.flatten(0, 1)  # (B*T, 3, H, W)

    def replace(self, **changes: Any) -> KeyedAdapter:
        """A copy with some fields changed (unknown fields are an error)."""
        return dataclasses.replace(self, **changes)


def _lookup(mapping: Mapping[str, Any], key: str, where: str) -> Tensor:
    if key not in mapping:
        raise KeyError(f"{where} has no {key!r}; its keys are {sorted(mapping)}")
    value = mapping[key]
    if not isinstance(value, Tensor):
        raise TypeError(f"{where}[{key!r}] must be a tensor, got {type(value).__name__}")
    return value


def _value_range(value_range: Any) -> tuple[float, float]:
    """``value_range`` as a ``(low, high)`` float tuple, ``low < high`` (a ValueError if not)."""
    try:
        low, high = (float(v) for v in value_range)
    except (TypeError, ValueError):
        raise ValueError(f"value_range must be (low, high) numbers, got {value_range!r}") from None
    if not low < high:
        raise ValueError(f"value_range must be (low, high) with low < high, got {value_range!r}")
    return low, high


ADAPTERS: dict[str, KeyedAdapter] = {
    "image2image": KeyedAdapter("generated", "source", reference_key="reference"),
    "ned_renderer": KeyedAdapter("fake_B", "real_B", frames="all"),
    "icface": KeyedAdapter("generated", "source"),
    "ganmut": KeyedAdapter("generated", "image", channel_order="bgr"),
}


def get_adapter(name: str, **changes: Any) -> KeyedAdapter:
    """The adapter registered as ``name``, with fields overridden (e.g. key names).

    Raises:
        ValueError: ``name`` is not in :data:`ADAPTERS` (the valid names are listed).
    """
    if name not in ADAPTERS:
        raise ValueError(f"unknown SPFEM adapter {name!r}; valid names: {sorted(ADAPTERS)}")
    adapter = ADAPTERS[name]
    return adapter.replace(**changes) if changes else adapter
