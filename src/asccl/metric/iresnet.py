"""ArcFace IResNet backbones, key for key as insightface's ``arcface_torch`` defines them.

An unmodified insightface ``backbone.pth`` loads with strict key matching
(:func:`load_arcface_weights`). Unlike the original, the module

* exposes the four residual stage outputs (:meth:`IResNet.forward_stages`), which
  ASCCL's metric needs, for any input whose side is a multiple of 16;
* leaves numeric precision to the caller (no autocast inside ``forward``), so
  ``torch.autocast`` and ``channels_last`` work from outside;
* can be built without its identity head (``fc`` + ``features``), as the ASCCL metric
  uses it, so that no parameter sits unused under DDP.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from asccl.io import unwrap_state_dict
from asccl.metric.config import IRESNET_LAYERS
from asccl.weights import ARCFACE_WEIGHTS, load_pretrained, require_weights_file

#: Output channels of the four residual stages.
STAGE_CHANNELS: tuple[int, int, int, int] = (64, 128, 256, 512)

#: Keys of the identity head: present in insightface files, absent from a headless backbone.
HEAD_PREFIXES: tuple[str, ...] = ("fc.", "features.")


class IBasicBlock(nn.Module):
    """Pre-activation style residual block: BN-conv-BN-PReLU-conv(stride)-BN + shortcut."""

    def __init__(self, inplanes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(inplanes, eps=1e-5)
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes, eps=1e-5)
        self.prelu = nn.PReLU(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes, eps=1e-5)
        self.downsample: nn.Sequential | None = None
        if stride != 1 or inplanes != planes:
            self.downsample = nn.Sequential(
                nn.Conv2d(inplanes, planes, 1, stride=stride, bias=False),
                nn.BatchNorm2d(planes, eps=1e-5),
            )

    def forward(self, x: Tensor) -> Tensor:
        out = self.bn3(self.conv2(self.prelu(self.bn2(self.conv1(self.bn1(x))))))
        identity = x if self.downsample is None else self.downsample(x)
        return out + identity


class IResNet(nn.Module):
    """ArcFace IResNet.

    Args:
        layers: blocks in each of the four stages, e.g. ``(3, 4, 14, 3)`` for IResNet-50.
        num_features: size of the identity embedding.
        with_head: build the identity head (``bn2`` -> ``fc`` -> ``features``) that maps a
            112x112 face to its embedding. ``bn2`` is always built: the authors' ASCCL
            checkpoints carry it.
        dropout: dropout before ``fc`` (0 in every published model).

    Input: ``(B, 3, H, W)`` RGB in [-1, 1] (insightface's ``(x / 255 - 0.5) / 0.5``), H and W
    multiples of 16. Stage outputs have 64/128/256/512 channels at H/2, H/4, H/8, H/16.
    """

    def __init__(
        self,
        layers: Sequence[int],
        num_features: int = 512,
        with_head: bool = True,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if len(layers) != 4:
            raise ValueError(f"IResNet needs 4 stage depths, got {list(layers)}")
        self.conv1 = nn.Conv2d(3, 64, 3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(64, eps=1e-5)
        self.prelu = nn.PReLU(64)
        inplanes = 64
        for index, (planes, depth) in enumerate(zip(STAGE_CHANNELS, layers, strict=True)):
            blocks = [IBasicBlock(inplanes, planes, stride=2)]
            blocks += [IBasicBlock(planes, planes) for _ in range(depth - 1)]
            self.add_module(f"layer{index + 1}", nn.Sequential(*blocks))
            inplanes = planes
        self.bn2 = nn.BatchNorm2d(512, eps=1e-5)
        self.with_head = with_head
        if not with_head:  # bn2 only feeds the head: keep it out of the optimiser and DDP
            self.bn2.requires_grad_(False)
        if with_head:
            self.dropout = nn.Dropout(p=dropout)
            self.fc = nn.Linear(512 * 7 * 7, num_features)
            self.features = nn.BatchNorm1d(num_features, eps=1e-5)
            self.features.weight.requires_grad_(False)  # as insightface: a fixed-scale BN
        self._init_weights()

    def _init_weights(self) -> None:
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.normal_(module.weight, 0.0, 0.1)
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
        if self.with_head:
            nn.init.ones_(self.features.weight)

    def forward_stages(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """Outputs of the four residual stages.

        Args:
            x: ``(B, 3, H, W)`` in [-1, 1], H and W multiples of 16.

        Returns:
            ``(B, 64, H/2, W/2)``, ``(B, 128, H/4, W/4)``, ``(B, 256, H/8, W/8)``,
            ``(B, 512, H/16, W/16)``.
        """
        _check_image(x, multiple=16)
        x = self.prelu(self.bn1(self.conv1(x)))
        s1 = self.layer1(x)
        s2 = self.layer2(s1)
        s3 = self.layer3(s2)
        s4 = self.layer4(s3)
        return s1, s2, s3, s4

    def embed_from_stage4(self, s4: Tensor) -> Tensor:
        """Identity embedding ``(B, num_features)`` from a ``(B, 512, 7, 7)`` stage-4 map."""
        if not self.with_head:
            raise RuntimeError("this IResNet was built with with_head=False: no embedding")
        if s4.shape[-2:] != (7, 7):
            raise ValueError(
                f"the identity embedding needs 112x112 faces (a 7x7 stage-4 map); "
                f"got a stage-4 map of {tuple(s4.shape[-2:])}"
            )
        x = torch.flatten(self.bn2(s4), 1)
        return self.features(self.fc(self.dropout(x)))

    def forward(self, x: Tensor) -> Tensor:
        """Identity embedding, as insightface's ``forward``.

        Args:
            x: ``(B, 3, 112, 112)`` aligned faces, RGB in [-1, 1].

        Returns:
            ``(B, num_features)`` embedding (not L2-normalised, as insightface returns it).
        """
        if not self.with_head:
            raise RuntimeError("this IResNet was built with with_head=False: no embedding")
        if x.shape[-2:] != (112, 112):
            raise ValueError(f"the embedding needs (B, 3, 112, 112) faces, got {tuple(x.shape)}")
        return self.embed_from_stage4(self.forward_stages(x)[3])


def _check_image(x: Tensor, multiple: int) -> None:
    if x.ndim != 4 or x.shape[1] != 3:
        raise ValueError(f"expected images of shape (B, 3, H, W), got {tuple(x.shape)}")
    if x.shape[-1] % multiple or x.shape[-2] % multiple:
        raise ValueError(
            f"image height and width must be multiples of {multiple}, got {tuple(x.shape[-2:])}"
        )
    if not x.is_floating_point():
        raise TypeError(f"expected a floating-point image tensor, got {x.dtype}")


def build_iresnet(name: str, *, with_head: bool = True, num_features: int = 512) -> IResNet:
    """Build an IResNet by name (``"iresnet18"``, ``"iresnet34"``, ``"iresnet50"``,
    ``"iresnet100"``) with random weights."""
    if name not in IRESNET_LAYERS:
        raise ValueError(f"unknown backbone {name!r}; valid: {', '.join(IRESNET_LAYERS)}")
    return IResNet(IRESNET_LAYERS[name], num_features=num_features, with_head=with_head)


def depth_name(model: IResNet) -> str:
    """``"iresnet50"`` etc. from the model's blocks per stage (``"iresnet"`` if unpublished)."""
    layers = tuple(len(getattr(model, f"layer{i}")) for i in range(1, 5))
    names = [name for name, depths in IRESNET_LAYERS.items() if depths == layers]
    return names[0] if names else f"iresnet{list(layers)}"


def arcface_filter(state: Mapping[str, Any], model: nn.Module) -> dict[str, Any]:
    """``filter_fn`` for insightface files: unwrap containers and ``module.`` prefixes; for
    a headless model drop the identity head's keys (``fc.*``, ``features.*``), the only
    keys allowed to go unused."""
    state = unwrap_state_dict(state)
    if not getattr(model, "with_head", True):
        state = {k: v for k, v in state.items() if not k.startswith(HEAD_PREFIXES)}
    return state


def _arcface_what(model: IResNet) -> str:
    head = "" if model.with_head else " (identity head unused)"
    return f"an insightface {depth_name(model)} backbone{head}"


def load_arcface_weights(model: IResNet, path: str | Path | None) -> IResNet:
    """Load an insightface ``backbone.pth`` into ``model``, strictly.

    The file is read with ``torch.load(weights_only=True)`` (nothing is unpickled) through
    :func:`asccl.weights.load_pretrained`. For a headless model the identity-head keys
    (``fc.*``, ``features.*``) are the only keys allowed to go unused; any other mismatch,
    a wrong shape or a NaN/Inf value is an error naming the file and the key. ``path`` may
    be ``None``, in which case the environment variable ``ASCCL_ARCFACE_WEIGHTS`` is used.

    Raises:
        MissingWeightsError: no path, or no file there.
        CheckpointError: (a ``ValueError``) any other problem with the file; ``model`` is
            left unchanged.
    """
    load_pretrained(model, path, ARCFACE_WEIGHTS, arcface_filter, what=_arcface_what(model))
    return model


def check_arcface_weights(path: str | Path | None, name: str = "iresnet50") -> Path:
    """Check, without loading, that an insightface ``backbone.pth`` initialises a headless
    ``name`` backbone (what a metric's training starts from); returns the file.

    Every check of :func:`load_arcface_weights` runs (the model is built on the ``meta``
    device: no memory, no initialisation), so a bad file is refused before long work.
    """
    file = require_weights_file(path, ARCFACE_WEIGHTS)
    with torch.device("meta"):
        model = build_iresnet(name, with_head=False)
    what = _arcface_what(model)
    load_pretrained(model, file, ARCFACE_WEIGHTS, arcface_filter, what=what, check_only=True)
    return file
