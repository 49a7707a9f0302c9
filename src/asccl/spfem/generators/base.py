"""The interface every reference SPFEM generator implements (GANmut-style, ICface-style).

A generator owns its networks (generator and discriminator), computes its own loss terms
and says which ASCCL adapter describes its outputs; :func:`asccl.spfem.train.train_spfem`
runs the same loop for all of them::

    d_terms = model.discriminator_losses(batch)            # {name: weighted scalar}
    sum(d_terms.values()).backward(); d_opt.step()
    g_terms, outputs = model.generator_losses(batch)       # outputs["generated"]: (B,3,H,W)
    extra, logs = asccl(batch, outputs, step)              # ASCCLSupervision(adapter=model.adapter)
    (sum(g_terms.values()) + extra).backward(); g_opt.step()

Batches are the dicts of :class:`asccl.spfem.data.SPFEMFrames` (tensor values only):

- ``"image"``, ``"source"``: the neutral frame, ``(B, 3, S, S)`` float in [-1, 1], RGB;
- ``"target"``, ``"reference"``: the DTW-aligned emotional frame, same shape and range;
- ``"emotion"``, ``"target_emotion"``: ``(B,)`` int64 labels into
  :data:`asccl.spfem.data.EMOTIONS` (``"emotion"`` is the source's: neutral);
- ``"source_landmarks"``, ``"target_landmarks"``: ``(B, 68, 2)`` float32 in [0, 1] crop
  coordinates ``(x, y)``, NaN-free.
"""

from __future__ import annotations

import abc
from collections.abc import Iterator
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

Batch = dict[str, Tensor]


class ReferenceGenerator(nn.Module, abc.ABC):
    """Abstract base of the reference generators.

    Subclasses set ``name`` (``"ganmut"``, ``"icface"``), ``adapter`` (a key of
    :data:`asccl.spfem.ADAPTERS`: where ``outputs`` keeps the generated image and ``batch``
    the source) and ``Config`` (a frozen dataclass with at least ``image_size``), build every
    parameter in ``__init__(config)`` and keep the config as ``self.config``.
    """

    name: ClassVar[str]
    adapter: ClassVar[str]
    Config: ClassVar[type]

    config: Any

    @abc.abstractmethod
    def generator_parameters(self) -> Iterator[nn.Parameter]:
        """The parameters the generator optimiser updates."""

    @abc.abstractmethod
    def discriminator_parameters(self) -> Iterator[nn.Parameter]:
        """The parameters the discriminator optimiser updates."""

    @abc.abstractmethod
    def discriminator_losses(self, batch: Batch) -> dict[str, Tensor]:
        """The discriminator's weighted loss terms (scalars); the trainer sums them.

        The generator's output is computed without gradient (or detached) here.
        """

    @abc.abstractmethod
    def generator_losses(self, batch: Batch) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
        """``(terms, outputs)``: the generator's weighted loss terms (scalars; the trainer
        sums them) and its outputs, at least ``"generated"``: ``(B, 3, S, S)`` in [-1, 1]
        RGB, the source translated to ``batch["target_emotion"]`` (what ASCCL supervises)."""

    @abc.abstractmethod
    @torch.no_grad()
    def translate(self, batch: Batch) -> Tensor:
        """Inference: ``batch["source"]`` (= ``"image"``) turned to
        ``batch["target_emotion"]``; ``(B, 3, S, S)`` in [-1, 1] RGB. Reference-driven
        models also read ``"reference"`` (and ``"target_landmarks"`` or
        ``"reference_params"``)."""

    def extra_repr(self) -> str:
        return f"name={self.name!r}, config={self.config!r}"


def check_images(images: Tensor, name: str, size: int | None = None) -> None:
    """Raise a ``ValueError`` naming ``name`` unless ``images`` is ``(B, 3, size, size)``."""
    ok = images.dim() == 4 and images.shape[1] == 3
    if ok and size is not None:
        ok = images.shape[-2:] == (size, size)
    if not ok:
        want = f"(B, 3, {size}, {size})" if size is not None else "(B, 3, H, W)"
        raise ValueError(f"{name} must be {want}, got {tuple(images.shape)}")
