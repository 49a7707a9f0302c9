"""The ASCCL loss in one file: plain PyTorch, no asccl needed.

``asccl metric export CHECKPOINT OUT/`` writes this module to ``OUT/``, with the
settings of one metric checkpoint in the constants below and that checkpoint's weights
beside it (``asccl_loss_weights.npz``). It is for code bases that pin an environment
asccl (Python >= 3.10, PyTorch >= 2.3) cannot join: NED (Python 3.8, PyTorch 1.7.1),
GANmut (PyTorch 1.4). It needs Python >= 3.8, PyTorch >= 1.7 and numpy, and computes
the loss and the gradients of ``asccl.ASCCLLoss(checkpoint=CHECKPOINT)``: the same
preprocessing (bilinear antialiased resize to ``IMAGE_SIZE``, range to [-1, 1],
channel order), the same regions from the same random numbers, the same InfoNCE and
adaptive weighting. Use::

    from asccl_loss_standalone import ASCCLLoss

    asccl = ASCCLLoss(channel_order="rgb").to(device)  # once; frozen, always eval()
    loss_G = loss_G + weight * asccl(fake, real)  # each generator step

``fake`` (the generated frame, gets gradients) and ``real`` (the frame it was made
from, a constant) are ``(B, 3, H, W)`` float tensors in ``input_range`` ([-1, 1]).

Why the weights are an ``.npz`` read with ``numpy.load(allow_pickle=False)``: a
``torch.load`` of a ``.pth`` file unpickles it, and unpickling can run any code the
file holds; PyTorch < 1.13 has no ``weights_only=True`` to stop that. An ``.npz`` of
plain arrays read without pickle cannot run code and loads alike in every PyTorch and
numpy version; its SHA-256 (``WEIGHTS_SHA256``) is checked first, so this file never
runs with weights other than those it was exported with.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import warnings

import numpy as np
import torch
from torch import nn

# --- settings: written by `asccl metric export` (here: asccl's defaults) ---
SOURCE = "metric.safetensors"  # the checkpoint this file was exported from
ASCCL_VERSION = "template"  # the asccl that exported it
STAGE_DEPTHS = (3, 4, 14, 3)  # IResNet blocks per stage (18: 2,2,2,2; 50: 3,4,14,3)
IMAGE_SIZE = 224  # side of the square image the metric sees
CHANNEL_ORDER = "rgb"  # channel order the metric was trained on
NUM_ANCHORS = (32, 16, 8, 4)  # anchors drawn per stage
NEGATIVES = "patch"  # "patch": the other sampled pairs; "random": K random regions
NUM_RANDOM_NEGATIVES = 8  # K, with NEGATIVES = "random"
TEMPERATURE = 0.07  # InfoNCE temperature
LOSS_SCALE = 0.3  # factor on the sum over the four stages
ADAPTIVE = "pair"  # "pair": per-pair weights; "authors": one global scale; "off"
ADAPTIVE_THRESHOLD = 0.8  # sigmoid(|d|) above it weighs 2 * sigmoid(|d|) ** 2
PER_IMAGE_REGIONS = False  # new regions per image instead of one set per batch
AUTHORS_WINDOW = False  # the authors' anchor window (stage-4 neighbours may wrap)
HEAD_REDUCTION = 4  # head output size is C // HEAD_REDUCTION
WEIGHTS_FILE = "asccl_loss_weights.npz"  # beside this file
# WEIGHTS_SHA256 is checked before loading ("": not checked)
WEIGHTS_SHA256 = ""
# --- end of settings ---

STAGE_CHANNELS = (64, 128, 256, 512)
#: (row, col) offsets of an anchor's 8 neighbours, row-major, centre skipped.
NEIGHBOUR_OFFSETS = (
    (-1, -1),
    (-1, 0),
    (-1, 1),
    (0, -1),
    (0, 1),
    (1, -1),
    (1, 0),
    (1, 1),
)


# ----------------------------------------------------------------------------- backbone


class IBasicBlock(nn.Module):
    """ArcFace IResNet block: BN-conv-BN-PReLU-conv(stride)-BN + shortcut."""

    def __init__(self, inplanes: int, planes: int, stride: int) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(inplanes, eps=1e-5)
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes, eps=1e-5)
        self.prelu = nn.PReLU(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes, eps=1e-5)
        self.downsample = None
        if stride != 1 or inplanes != planes:
            self.downsample = nn.Sequential(
                nn.Conv2d(inplanes, planes, 1, stride=stride, bias=False),
                nn.BatchNorm2d(planes, eps=1e-5),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn3(self.conv2(self.prelu(self.bn2(self.conv1(self.bn1(x))))))
        identity = x if self.downsample is None else self.downsample(x)
        return out + identity


class IResNetStages(nn.Module):
    """ArcFace IResNet up to its fourth stage (insightface's key names, no head)."""

    def __init__(self, depths: tuple[int, ...]) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(64, eps=1e-5)
        self.prelu = nn.PReLU(64)
        inplanes = 64
        for index, (planes, depth) in enumerate(zip(STAGE_CHANNELS, depths)):
            blocks = [IBasicBlock(inplanes, planes, 2)]
            blocks += [IBasicBlock(planes, planes, 1) for _ in range(depth - 1)]
            self.add_module(f"layer{index + 1}", nn.Sequential(*blocks))
            inplanes = planes

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """``(B, 3, S, S)`` in [-1, 1] -> the four stage maps, ``(B, 64, S/2, S/2)`` ...
        ``(B, 512, S/16, S/16)``."""
        x = self.prelu(self.bn1(self.conv1(x)))
        stages = []
        for layer in (self.layer1, self.layer2, self.layer3, self.layer4):
            x = layer(x)
            stages.append(x)
        return stages


# ------------------------------------------------------------------------ preprocessing


def resize_taps(in_size: int, out_size: int, dtype=np.float32):
    """The taps of PyTorch's bilinear antialiased resize along one axis
    (``F.interpolate(..., mode="bilinear", align_corners=False, antialias=True)``,
    which PyTorch < 1.11 lacks): a triangle filter, widened by the scale when
    shrinking, each output's weights normalised to sum 1.

    Returns ``(index, weight)``, ``(out_size, K)`` int64 and ``dtype`` numpy arrays:
    output ``i`` is ``sum_k weight[i, k] * input[index[i, k]]`` (padded with weight 0).
    The arithmetic is PyTorch's, step for step, in ``dtype`` (float32 for float32
    images, float64 for float64), so the weights are bit for bit its own.
    """
    f = dtype
    scale = f(in_size) / f(out_size)
    support = scale if scale >= 1.0 else f(1.0)
    invscale = f(1.0 / np.float64(scale)) if scale >= 1.0 else f(1.0)
    rows = []
    for i in range(out_size):
        center = f(np.float64(scale) * (i + 0.5))
        first = max(int(np.float64(center - support) + 0.5), 0)
        stop = min(int(np.float64(center + support) + 0.5), in_size)
        weights, total = [], f(0.0)
        for j in range(first, stop):
            x = f((np.float64(f(j) - center) + 0.5) * np.float64(invscale))
            w = f(1.0 - abs(x)) if abs(x) < 1.0 else f(0.0)
            weights.append(w)
            total = f(total + w)
        if total != 0.0:
            weights = [f(w / total) for w in weights]
        rows.append((first, weights))
    taps = max(len(weights) for _, weights in rows)
    index = np.zeros((out_size, taps), dtype=np.int64)
    weight = np.zeros((out_size, taps), dtype=f)
    for i, (first, weights) in enumerate(rows):
        index[i] = first
        index[i, : len(weights)] = np.arange(first, first + len(weights))
        weight[i, : len(weights)] = weights
    return index, weight


def resize_last_axis(x: torch.Tensor, index: torch.Tensor, weight: torch.Tensor):
    """``(..., n)`` -> ``(..., out)`` with the taps of :func:`resize_taps`, summed in
    PyTorch's order: the first product, then one fused multiply-add per tap (for
    float32 emulated in float64, where the product of two float32 is exact).

    On CPU, with up to 4 taps (any enlargement, shrinking by up to 2x: 256 -> 224 and
    128 -> 224 among them), the result is bit for bit ``F.interpolate``'s, so the
    loss's gradient, which jumps at ReLU kinks and at the adaptive weights' threshold,
    is asccl's too; with more taps PyTorch sums in another order (float rounding).
    """
    total = x[..., index[:, 0]] * weight[:, 0]
    for k in range(1, index.shape[1]):
        term = x[..., index[:, k]].double() * weight[:, k].double()
        total = (total.double() + term).to(x.dtype)
    return total


def autocast_dtype(device_type: str):
    """The dtype of the autocast that is on for ``device_type``, else ``None``."""
    if hasattr(torch, "get_autocast_dtype"):  # PyTorch >= 2.4
        if torch.is_autocast_enabled(device_type):
            return torch.get_autocast_dtype(device_type)
        return None
    if device_type == "cuda" and torch.is_autocast_enabled():
        if hasattr(torch, "get_autocast_gpu_dtype"):  # PyTorch >= 1.10
            return torch.get_autocast_gpu_dtype()
        return torch.float16  # PyTorch 1.6 - 1.9: float16 only
    cpu = device_type == "cpu" and hasattr(torch, "is_autocast_cpu_enabled")
    if cpu and torch.is_autocast_cpu_enabled():
        return torch.get_autocast_cpu_dtype()
    return None


def has_bfloat16(device_type: str) -> bool:
    """bfloat16 autocast runs natively on ``device_type`` (CPU; CUDA from Ampere on)."""
    if not hasattr(torch, "autocast"):  # PyTorch < 1.10: no bfloat16 autocast
        return False
    if device_type == "cpu":
        return True
    if device_type == "cuda" and hasattr(torch.cuda, "is_bf16_supported"):
        try:  # PyTorch >= 2.5: emulated bfloat16 (before Ampere) does not count
            return torch.cuda.is_bf16_supported(including_emulation=False)
        except TypeError:
            return torch.cuda.is_bf16_supported()
    return False


def metric_precision(device_type: str):
    """The autocast the metric runs under: the caller's, except float16, which becomes
    bfloat16 where the device has it, else float32 (autocast off): the metric's deep
    features can exceed float16's 65504 (~1e8 measured), which made the loss NaN."""
    if autocast_dtype(device_type) != torch.float16:
        return contextlib.nullcontext()
    if has_bfloat16(device_type):
        return torch.autocast(device_type, dtype=torch.bfloat16)
    return full_precision(device_type)


def full_precision(device_type: str):
    """A context that turns autocast off (logits in float32 even under AMP)."""
    if hasattr(torch, "autocast"):  # PyTorch >= 1.10
        return torch.autocast(device_type=device_type, enabled=False)
    if device_type == "cuda" and hasattr(torch.cuda, "amp"):  # PyTorch 1.6 - 1.9
        return torch.cuda.amp.autocast(enabled=False)
    return contextlib.nullcontext()


def wide(x: torch.Tensor) -> torch.Tensor:
    """``x`` in float32, or float64 if it is float64."""
    return x if x.dtype == torch.float64 else x.float()


# ------------------------------------------------------------------------------ regions


def anchor_window(size: int) -> tuple[int, int]:
    """``[start, stop)`` of anchor coordinates on a map side of ``size``: the authors'
    central window of side ``int(size // 2 + 0.45 * size)``, clipped to
    ``[1, size - 1)`` unless ``AUTHORS_WINDOW`` (so that all 8 neighbours lie inside
    the map)."""
    side = int(size // 2 + 0.45 * size)
    start = (size - side) // 2
    stop = start + side
    if not AUTHORS_WINDOW:
        start, stop = max(start, 1), min(stop, size - 1)
    return start, stop


def sample_regions(
    batch_size: int, generator: torch.Generator | None = None
) -> list[tuple]:
    """Draw the regions of the four stages, as ``asccl.ASCCLLoss`` does from the same
    generator state (the same calls, in the same order).

    Returns one ``(anchor, neighbour, negative)`` per stage of CPU long tensors: flat
    indices ``row * side + col``, shapes ``(G, N)``, ``(G, N, 8)`` and ``(G, N, K)`` (or
    ``None``), ``G`` = 1 (one set for the batch) or ``batch_size``
    (``PER_IMAGE_REGIONS``).
    """
    regions = []
    for stage, count in enumerate(NUM_ANCHORS):
        size = IMAGE_SIZE // 2 ** (stage + 1)
        start, stop = anchor_window(size)
        side = stop - start
        coords = torch.arange(start, stop)
        row_of = coords.repeat_interleave(side)  # position p -> start + p // side
        col_of = coords.repeat(side)  # position p -> start + p % side
        if PER_IMAGE_REGIONS:
            noise = torch.rand(batch_size, side * side, generator=generator)
            drawn = noise.argsort(dim=1)[:, :count]
        else:
            drawn = torch.randperm(side * side, generator=generator)[:count][None]
        rows, cols = row_of[drawn], col_of[drawn]  # (G, N)
        offsets = torch.tensor(NEIGHBOUR_OFFSETS, dtype=torch.long)
        neighbour_rows = (rows[..., None] + offsets[:, 0]).remainder(size)
        neighbour_cols = (cols[..., None] + offsets[:, 1]).remainder(size)
        anchor = rows * size + cols
        neighbour = neighbour_rows * size + neighbour_cols
        negative = None
        if NEGATIVES == "random":
            negative = random_negatives(anchor, neighbour, size * size, generator)
        regions.append((anchor, neighbour, negative))
    return regions


def random_negatives(
    anchor: torch.Tensor, neighbour: torch.Tensor, locations: int, generator
) -> torch.Tensor:
    """``(G, N, K)`` locations drawn uniformly with replacement, none equal to the
    anchor or one of its neighbours: the u-th location not excluded, for
    u < locations - 9."""
    excluded = torch.cat([anchor[..., None], neighbour], dim=-1)  # (G, N, 9)
    excluded = excluded.sort(dim=-1)[0]
    shape = (anchor.shape[0], anchor.shape[1], NUM_RANDOM_NEGATIVES)
    u = torch.randint(0, locations - 9, shape, generator=generator)
    for m in range(excluded.shape[-1]):
        u = u + (u >= excluded[..., m : m + 1]).long()
    return u


def disparities(features: torch.Tensor, anchor: torch.Tensor, other: torch.Tensor):
    """``(B, N, M, C)`` visual disparities ``f[i] - f[j]`` of anchors ``i`` (``(G, N)``)
    and regions ``j`` (``(G, N, M)``) of ``(B, C, H, W)`` features."""
    b, c = features.shape[:2]
    n, m = other.shape[1], other.shape[2]
    index = torch.cat([anchor[..., None], other], dim=-1)  # (G, N, 1 + M)
    flat = features.flatten(2)  # (B, C, H*W)
    if index.shape[0] == 1:
        picked = flat.index_select(2, index.reshape(-1))
    else:
        picked = flat.gather(2, index.reshape(b, 1, -1).expand(b, c, -1))
    picked = picked.view(b, c, n, 1 + m)
    return (picked[..., :1] - picked[..., 1:]).permute(0, 2, 3, 1).contiguous()


# --------------------------------------------------------------------------------- loss


def pair_weights(d: torch.Tensor) -> torch.Tensor:
    """Adaptive weights of disparities: ``t = sigmoid(|d|)``, ``2 t^2`` where
    ``t > ADAPTIVE_THRESHOLD``, else 1."""
    t = torch.sigmoid(wide(d.abs()))
    return torch.where(t > ADAPTIVE_THRESHOLD, 2 * t * t, torch.ones_like(t))


class Metric(nn.Module):
    """The frozen metric: backbone and projection heads (the ``.npz``'s names)."""

    def __init__(self) -> None:
        super().__init__()
        self.backbone = IResNetStages(STAGE_DEPTHS)
        self.heads = nn.ModuleList(
            nn.Sequential(nn.Linear(c, c), nn.ReLU(), nn.Linear(c, c // HEAD_REDUCTION))
            for c in STAGE_CHANNELS
        )


class ASCCLLoss(nn.Module):
    """Spatial coherent correlation loss between generated frames and their sources.

    Args:
        weights: the ``.npz`` exported with this file (default: ``WEIGHTS_FILE``
            beside it).
        input_range: ``(low, high)`` of the input values: ``(-1, 1)`` or ``(0, 1)``.
        channel_order: ``"rgb"`` or ``"bgr"``, the inputs' order (flipped to the
            metric's ``CHANNEL_ORDER`` when they differ).
        reduction: ``"mean"`` over the batch, ``"sum"``, or ``"none"`` (``(B,)``).

    The metric is frozen (no parameter requires grad) and always in ``eval()`` mode. It
    is held outside the module tree (``self.metric``): a generator that holds the loss
    has none of its tensors in ``parameters()`` or ``state_dict()``, so
    ``G.requires_grad_(True)`` and ``Adam(G.parameters())`` cannot train it and
    generator checkpoints do not carry it; ``.to()``, ``.cuda()`` ... still move it. A
    checkpoint with ``<prefix>metric.*``, ``<prefix>backbone.*`` or ``<prefix>heads.*``
    keys (saved with an earlier version of this file) still loads: those keys are
    dropped with one warning. Inputs are cast to the metric's dtype. float16 is never
    used for the metric (its features can exceed 65504): under a float16 autocast it
    runs under a bfloat16 autocast where the device has bfloat16, else in float32;
    ``.half()`` keeps it in float32.
    """

    def __init__(
        self,
        weights: str | None = None,
        input_range: tuple[float, float] = (-1.0, 1.0),
        channel_order: str = "rgb",
        reduction: str = "mean",
    ) -> None:
        super().__init__()
        if channel_order not in ("rgb", "bgr"):
            raise ValueError(
                f"channel_order must be 'rgb' or 'bgr', got {channel_order!r}"
            )
        if reduction not in ("mean", "sum", "none"):
            raise ValueError(f"reduction must be mean, sum or none, got {reduction!r}")
        self.input_range = (float(input_range[0]), float(input_range[1]))
        if not self.input_range[0] < self.input_range[1]:
            raise ValueError("input_range must be (low, high) with low < high")
        self.channel_order = channel_order
        self.reduction = reduction
        if weights is None:
            weights = os.path.join(
                os.path.dirname(os.path.abspath(__file__)), WEIGHTS_FILE
            )
        metric = Metric()
        metric.load_state_dict(read_weights(weights))
        # outside the module tree: __dict__, not _modules (see the class docstring)
        object.__setattr__(self, "metric", metric.requires_grad_(False).eval())
        self.weights = weights
        self._resize = {}  # (in size, dtype, device) -> resize taps
        super().train(False)

    def __setattr__(self, name, value) -> None:
        if name == "metric":
            raise AttributeError("ASCCLLoss.metric is fixed at construction")
        super().__setattr__(name, value)

    def extra_repr(self) -> str:
        return f"metric from {self.weights} ({SOURCE}, {IMAGE_SIZE}px)"

    def metric_dtype(self):
        """The dtype of the metric's weights (inputs are cast to it)."""
        return self.metric.backbone.conv1.weight.dtype

    def _apply(self, fn, *args, **kwargs):
        """``.to()``, ``.cuda()``, ``.half()`` ... reach the metric; a float16 metric is
        turned back to float32 (float16 features overflow)."""
        self.metric._apply(fn, *args, **kwargs)
        if self.metric_dtype() == torch.float16:
            self.metric.float()
            warnings.warn(
                "ASCCLLoss keeps its metric in float32: float16 features overflow "
                "(> 65504) and give a NaN loss",
                stacklevel=2,
            )
        return super()._apply(fn, *args, **kwargs)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs) -> None:
        """Drop the metric's tensors that checkpoints saved with an earlier version of
        this file carry (the loss keeps its own), with one warning."""
        stored = [
            key
            for key in state_dict
            if key.startswith(
                tuple(prefix + name for name in ("metric.", "backbone.", "heads."))
            )
        ]
        for key in stored:
            del state_dict[key]
        if stored:
            warnings.warn(
                f"{prefix}*: {len(stored)} stored metric tensors ignored; the loss "
                f"uses {self.weights}",
                stacklevel=2,
            )
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def train(self, mode: bool = True) -> ASCCLLoss:
        """No-op: the metric always stays in eval mode (BatchNorm never drifts)."""
        return super().train(False)

    def preprocess(self, images: torch.Tensor) -> torch.Tensor:
        """``(B, 3, H, W)`` in ``input_range`` (or uint8 0..255) -> ``(B, 3, S, S)``
        in [-1, 1], ``CHANNEL_ORDER`` (``S = IMAGE_SIZE``): resize (bilinear,
        antialiased), range, channel order, in that order."""
        if images.dim() != 4 or images.shape[1] != 3:
            raise ValueError(f"expected (B, 3, H, W) images, got {tuple(images.shape)}")
        from_uint8 = images.dtype == torch.uint8
        low, high = self.input_range
        if from_uint8:
            if (low, high) != (0.0, 255.0):
                raise ValueError(
                    "uint8 images hold 0..255; build with input_range=(0, 255)"
                )
            images = images.float()
        elif not images.is_floating_point():
            raise TypeError(f"expected float or uint8 images, got {images.dtype}")
        if images.dtype != self.metric_dtype():
            images = images.to(self.metric_dtype())
        height, width = images.shape[-2:]
        if (height, width) != (IMAGE_SIZE, IMAGE_SIZE):  # width first, as PyTorch
            images = resize_last_axis(images, *self.taps(width, images))
            images = images.transpose(2, 3)
            images = resize_last_axis(images, *self.taps(height, images))
            images = images.transpose(2, 3)
        if (low, high) != (-1.0, 1.0):
            images = (images - low) / ((high - low) / 2) - 1.0
        if self.channel_order != CHANNEL_ORDER:
            images = images.flip(1)
        if from_uint8:
            images = images.clamp(-1.0, 1.0)
        return images

    def taps(self, size: int, like: torch.Tensor):
        """:func:`resize_taps` from ``size`` to ``IMAGE_SIZE`` as tensors, cached."""
        key = (int(size), like.dtype, like.device)
        if key not in self._resize:
            wide_dtype = np.float64 if like.dtype == torch.float64 else np.float32
            index, weight = resize_taps(int(size), IMAGE_SIZE, wide_dtype)
            self._resize[key] = (
                torch.from_numpy(index).to(like.device),
                torch.from_numpy(weight).to(dtype=like.dtype, device=like.device),
            )
        return self._resize[key]

    def sample_regions(self, batch_size: int, generator: torch.Generator | None = None):
        """The regions of one call (see the module's :func:`sample_regions`)."""
        return sample_regions(batch_size, generator)

    def forward(
        self,
        generated: torch.Tensor,
        source: torch.Tensor,
        *,
        regions: list | None = None,
        generator: torch.Generator | None = None,
        per_stage: bool = False,
    ) -> torch.Tensor:
        """Loss between ``generated`` (receives gradients) and ``source`` (constant).

        Args:
            generated: ``(B, 3, H, W)`` generator output, values in ``input_range``.
            source: ``(B, 3, H, W)`` the frame it was made from.
            regions: from :meth:`sample_regions`; drawn afresh when ``None``.
            generator: CPU ``torch.Generator`` for that draw (``None``: the global RNG);
                seeded alike, it draws the regions ``asccl.ASCCLLoss`` draws.
            per_stage: keep the four stages apart (a trailing dimension of 4).

        Returns:
            ``"mean"``/``"sum"``: a scalar (``(4,)`` with ``per_stage``); ``"none"``:
            ``(B,)`` (``(B, 4)``).
        """
        if generated.shape != source.shape:
            raise ValueError(
                "generated and source must have the same shape, got "
                f"{tuple(generated.shape)} and {tuple(source.shape)}"
            )
        if regions is None:
            regions = sample_regions(generated.shape[0], generator)
        device = generated.device
        regions = [
            tuple(None if t is None else t.to(device) for t in stage)
            for stage in regions
        ]
        with metric_precision(device.type):
            with torch.no_grad():
                key = self.metric.backbone(self.preprocess(source))
            query = self.metric.backbone(self.preprocess(generated))
            stages = torch.stack(
                [self.stage_loss(s, query[s], key[s], regions[s]) for s in range(4)],
                dim=-1,
            )  # (B, 4)
        values = LOSS_SCALE * (stages if per_stage else stages.sum(-1))  # (B, 4) / (B,)
        if self.reduction == "none":
            return values
        return values.mean(0) if self.reduction == "mean" else values.sum(0)

    def embed(self, stage: int, d: torch.Tensor) -> torch.Tensor:
        """Head of ``stage``: ``(..., C)`` disparities -> ``(..., C //
        HEAD_REDUCTION)``, divided by their L2 norm + 1e-7."""
        x = self.metric.heads[stage](d)
        return x / (x.norm(dim=-1, keepdim=True) + 1e-7)

    def stage_loss(self, stage: int, fq: torch.Tensor, fk: torch.Tensor, region: tuple):
        """``(B,)`` InfoNCE of one stage, reduced with the adaptive weights."""
        anchor, neighbour, negative = region
        dq = disparities(fq, anchor, neighbour)  # (B, N, 8, C)
        dk = disparities(fk.detach(), anchor, neighbour)
        q = self.embed(stage, dq)  # (B, N, 8, D)
        k = self.embed(stage, dk)
        if NEGATIVES == "patch":  # the other pairs of the same image are the negatives
            with full_precision(q.device.type):
                cosine = torch.bmm(
                    wide(q.flatten(1, 2)), wide(k.flatten(1, 2)).transpose(1, 2)
                )
            logits = cosine / TEMPERATURE  # (B, S, S)
            pairs = torch.logsumexp(logits, dim=-1) - logits.diagonal(dim1=1, dim2=2)
        else:  # K random regions per anchor are the negatives
            kn = self.embed(
                stage, disparities(fk.detach(), anchor, negative)
            )  # (B, N, K, D)
            q = wide(q)
            pos = (q * wide(k)).sum(-1)  # (B, N, 8)
            with full_precision(q.device.type):
                neg = torch.matmul(q, wide(kn).transpose(-1, -2))  # (B, N, 8, K)
            logits = torch.cat([pos[..., None], neg], dim=-1) / TEMPERATURE
            pairs = (torch.logsumexp(logits, dim=-1) - pos / TEMPERATURE).flatten(1)
        if ADAPTIVE == "off":
            return pairs.mean(-1)
        w = pair_weights(dq.flatten(1, 2))  # (B, S, C)
        if ADAPTIVE == "pair":  # per-pair weights, detached
            return (w.mean(-1).detach() * pairs).mean(-1)
        return (
            pairs.mean(-1) * w.mean()
        )  # "authors": one scale for the batch, not detached


def read_weights(path: str) -> dict:
    """The state dict in the ``.npz`` at ``path`` (checked against ``WEIGHTS_SHA256``),
    read without unpickling anything."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"ASCCL weights not found: {path}")
    if WEIGHTS_SHA256:
        digest = hashlib.sha256()
        with open(path, "rb") as file:
            for block in iter(lambda: file.read(1 << 20), b""):
                digest.update(block)
        if digest.hexdigest() != WEIGHTS_SHA256:
            raise ValueError(
                f"{path} is not the weights this file was exported with (SHA-256 "
                f"{digest.hexdigest()}, expected {WEIGHTS_SHA256})"
            )
    with np.load(path, allow_pickle=False) as arrays:
        return {name: torch.from_numpy(np.array(arrays[name])) for name in arrays.files}
