"""``ASCCLLoss``: the frozen ASCCL metric as a training loss for any SPFEM generator."""

from __future__ import annotations

import contextlib
import copy
import itertools
import os
import warnings
from collections.abc import Callable
from typing import Any, Literal

import torch
from torch import Tensor, nn

from asccl.metric.checkpoint import load_metric
from asccl.metric.model import ASCCLMetric
from asccl.metric.preprocess import check_input_range, to_metric_input
from asccl.metric.sampler import Regions

Reduction = Literal["mean", "sum", "none"]
RegionMode = Literal["random", "fixed"]


class ASCCLLoss(nn.Module):
    """Spatial coherent correlation loss between a generated frame and its source frame.

    Quick start::

        loss_fn = ASCCLLoss(checkpoint="asccl.safetensors")
        loss = loss_fn(generated, source)  # (B, 3, H, W) in [-1, 1] -> scalar

    The metric is frozen: no parameter requires grad, it is kept in ``eval()`` mode
    (``.train()`` cannot switch it back, so BatchNorm statistics never drift), and
    gradients flow only into ``generated``. It is held outside the module tree: a model
    that holds the loss (``self.asccl = ASCCLLoss(...)``) has none of the metric's tensors
    in its ``parameters()`` (so ``model.requires_grad_(True)`` and an optimizer over them
    cannot reach it), ``state_dict()`` (no metric weights in generator checkpoints),
    ``modules()`` (``model.apply(init)`` leaves it alone) or DDP's broadcast;
    ``.to()``, ``.cuda()``, ``.float()`` ... still move it. Checkpoints of models saved by
    earlier asccl versions (with ``<prefix>metric.*`` keys) still load strictly: those keys
    are dropped with one warning (the loss keeps the metric it was built with).

    ``source`` is the key side: its features are computed without gradients, as in the
    authors' NED renderer (query = generated frame, key = the real frame it was made from).

    The loss is not weighted: scale it where it joins the generator's other losses
    (:class:`asccl.spfem.ASCCLSupervision` holds that weight and its schedule).

    Regions (anchors and their neighbours), two modes:

    - ``regions="random"`` (default, for training): each call draws new regions, from
      ``generator=`` if given, else from the loss's own generator seeded with ``seed``
      (two losses built with the same seed draw the same sequence), else from torch's
      global RNG. Two calls on the same images then differ, by design: over training the
      loss covers the whole face.
    - ``regions="fixed"`` (a deterministic score): the regions are drawn once from ``seed``
      (0 if ``None``) and reused by every call, so the same images always give the same
      value. The draw does not depend on the images; with the metric's default shared
      regions it does not depend on the batch size either (with ``per_image_regions`` it
      is drawn once per batch size).

    ``regions=`` given to a call overrides both.

    Identical images (``loss_fn(x, x)``) do not give 0. With ``q = k``, pair ``s``'s InfoNCE
    term is ``log(1 + sum_{t != s} exp((c_st - 1) / T))``, where ``c_st`` is the cosine
    between the embeddings of disparities ``s`` and ``t`` of the same image and
    ``T = 0.07``: positive whenever the ``S - 1`` other pairs (the negatives) are not far
    from pair ``s`` in the metric's embedding space. The value is therefore
    ``loss_scale * sum_l mean_s(w_s * log(1 + sum_t exp((c_st - 1) / T)))`` over the four
    stages ``l``: between 0 (every other disparity's embedding far away) and
    ``loss_scale * 2 * sum_l log(S_l)`` (all alike; adaptive weights ``w_s < 2``; ``S_l`` =
    8 x the stage's anchors, 256, 128, 64, 32 by default). It depends on the metric and
    on the regions, and it is below the value for an unrelated image on the same regions;
    what the loss measures is the difference from that floor, not a distance to 0.

    Args:
        checkpoint: an asccl ``.safetensors`` metric or the authors' ``.pth``. A bad file
            (missing, truncated, malformed, a bad config in its header, another network,
            wrong shapes, NaN/Inf weights) raises :class:`~asccl.io.CheckpointError`, one
            line naming the file.
        metric: an in-memory :class:`ASCCLMetric` instead of ``checkpoint`` (copied, then
            frozen; the original is left untouched).
        input_range: ``(low, high)`` of the inputs: ``(-1, 1)`` (default) or ``(0, 1)``.
        channel_order: channel order of the inputs; converted to the metric's own order
            (stored in the checkpoint) when they differ.
        reduction: ``"mean"`` (default) over the batch, ``"sum"``, or ``"none"``: one value
            per sample, ``(B,)``, whose mean is exactly the ``"mean"`` value.
        regions: ``"random"`` (default): new regions each call; ``"fixed"``: regions drawn
            once from ``seed`` and reused (a deterministic score). See above.
        seed: seed of the region draws: the one draw of ``"fixed"`` (default 0), the
            loss's own generator in ``"random"`` mode (default ``None``: global RNG).
        **metric_changes: metric settings to change at load time, e.g.
            ``num_anchors=(64, 32, 16, 8)``; architecture fields are rejected.

    Inputs ``(B, 3, H, W)`` of any size go through
    :func:`~asccl.metric.preprocess.to_metric_input` (resized to the metric's
    ``image_size``, 224, with antialiasing, and cast to the metric's dtype: float16,
    bfloat16 or float64 inputs work with a float32 metric, gradients reach ``generated``
    in its own dtype). The first call checks the value range once (one host sync, never
    again): values beyond one range width outside ``input_range`` (below
    ``low - (high - low)`` or above ``high + (high - low)``: [-3, 3] for (-1, 1)) raise a
    ValueError naming the argument, e.g. a 0..255 frame given with (-1, 1).

    Precision: under ``torch.autocast`` with bfloat16 the metric runs in bfloat16 (logits
    in float32). float16 is never used for the metric: its features reach ~1e8 (a metric
    trained with frozen BatchNorm from a random init measured 9e7 at stage 4), beyond
    float16's 65504, which made the loss NaN. Under a float16 autocast the metric runs
    under a bfloat16 autocast instead where the device has bfloat16 (CPU, CUDA with
    bfloat16 support: float32's exponent range, so no overflow), else in float32.
    ``.half()`` keeps the metric in float32 (with one warning) for the same reason; the
    rest of a model that holds the loss is halved as asked.
    """

    def __init__(
        self,
        checkpoint: str | os.PathLike | None = None,
        *,
        metric: ASCCLMetric | None = None,
        input_range: tuple[float, float] = (-1.0, 1.0),
        channel_order: Literal["rgb", "bgr"] = "rgb",
        reduction: Reduction = "mean",
        regions: RegionMode = "random",
        seed: int | None = None,
        **metric_changes: Any,
    ) -> None:
        super().__init__()
        if (checkpoint is None) == (metric is None):
            raise ValueError("give exactly one of checkpoint= or metric=")
        if channel_order not in ("rgb", "bgr"):
            raise ValueError(f"channel_order must be 'rgb' or 'bgr', got {channel_order!r}")
        if reduction not in ("mean", "sum", "none"):
            raise ValueError(f"reduction must be 'mean', 'sum' or 'none', got {reduction!r}")
        if regions not in ("random", "fixed"):
            raise ValueError(f"regions must be 'random' or 'fixed', got {regions!r}")
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
            raise ValueError(f"seed must be an integer or None, got {seed!r}")
        if "weight" in metric_changes:
            raise TypeError(
                "ASCCLLoss takes no weight: scale the loss it returns, or give the weight to "
                "asccl.spfem.ASCCLSupervision(weight=...)"
            )
        if metric is None:
            metric = load_metric(checkpoint, **metric_changes)
        else:
            metric = copy.deepcopy(metric)
            if metric_changes:
                changed = metric.config.replace(**metric_changes)
                if (changed.backbone, changed.head_reduction) != (
                    metric.config.backbone,
                    metric.config.head_reduction,
                ):
                    raise ValueError("backbone and head_reduction are fixed by the metric")
                metric.config = changed
        # outside the module tree (see the class docstring): __dict__, not _modules
        object.__setattr__(self, "metric", metric.requires_grad_(False).eval())
        self.source = os.fspath(checkpoint) if checkpoint is not None else None
        self.input_range = (float(input_range[0]), float(input_range[1]))
        self.channel_order = channel_order
        self.reduction = reduction
        self.region_mode: RegionMode = regions
        self.seed = seed
        # "random" with a seed: the loss's own generator, advancing with every draw
        self._generator = (
            torch.Generator().manual_seed(seed)
            if regions == "random" and seed is not None
            else None
        )
        self._fixed: dict[tuple[int, str], list[Regions]] = {}  # (batch, device) -> regions
        self._range_checked = False  # the one value-range check of the first call
        low, high = self.input_range
        if not low < high:
            raise ValueError(f"input_range must be (low, high) with low < high, got {input_range}")
        if self.metric_dtype == torch.float16:
            self._keep_metric_float32()
        super().train(False)

    def __setattr__(self, name: str, value: Any) -> None:
        if name == "metric":
            raise AttributeError("ASCCLLoss.metric is fixed at construction: build a new loss")
        super().__setattr__(name, value)

    def extra_repr(self) -> str:
        config = self.metric.config
        source = self.source if self.source is not None else "in-memory metric"
        return (
            f"metric={config.backbone} {config.image_size}px from {source}, "
            f"input_range={self.input_range}, channel_order={self.channel_order!r}, "
            f"reduction={self.reduction!r}, regions={self.region_mode!r}"
        )

    @property
    def metric_dtype(self) -> torch.dtype:
        """The dtype of the metric's weights (inputs are cast to it)."""
        return next(self.metric.parameters()).dtype

    def _apply(self, fn: Callable[[Tensor], Tensor], *args: Any, **kwargs: Any) -> ASCCLLoss:
        """``.to()``, ``.cuda()``, ``.half()`` ... reach the metric held outside the tree;
        a float16 metric is turned back to float32 (see the class docstring). A function
        that does not keep values (``to_empty``: a model built on the meta device, then
        given storage) only moves the metric, its weights kept: they are in no state dict a
        model loads afterwards, so emptied weights would stay garbage."""
        if _keeps_values(fn):
            self.metric._apply(fn, *args, **kwargs)
        else:
            probe = fn(torch.zeros(1, dtype=self.metric_dtype))
            self.metric.to(device=probe.device)
        if self.metric_dtype == torch.float16:
            self._keep_metric_float32()
        return super()._apply(fn, *args, **kwargs)

    def _keep_metric_float32(self) -> None:
        self.metric.float()
        warnings.warn(
            "ASCCLLoss keeps its metric in float32: float16 features overflow (> 65504) and "
            "give a NaN loss; use torch.autocast(dtype=torch.bfloat16) for speed",
            stacklevel=3,
        )

    def _load_from_state_dict(
        self,
        state_dict: dict[str, Any],
        prefix: str,
        local_metadata: dict[str, Any],
        strict: bool,
        missing_keys: list[str],
        unexpected_keys: list[str],
        error_msgs: list[str],
    ) -> None:
        """Drop ``<prefix>metric.*`` (the metric's weights, which models saved by earlier
        asccl versions carry), with one warning: the loss keeps its own metric."""
        stored = [key for key in state_dict if key.startswith(prefix + "metric.")]
        for key in stored:
            del state_dict[key]
        if stored:
            source = self.source if self.source is not None else "an in-memory metric"
            warnings.warn(
                f"{prefix}metric.*: {len(stored)} stored metric tensors ignored (a checkpoint "
                f"of an earlier asccl); the loss uses {source}",
                stacklevel=2,
            )
        super()._load_from_state_dict(
            state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs
        )

    def train(self, mode: bool = True) -> ASCCLLoss:
        """No-op: the metric always stays in eval mode."""
        return super().train(False)

    def preprocess(self, images: Tensor) -> Tensor:
        """``(B, 3, H, W)`` in ``input_range`` -> metric input ``(B, 3, 224, 224)`` in [-1, 1]."""
        return to_metric_input(
            images,
            input_range=self.input_range,
            flip_channels=self.channel_order != self.metric.config.channel_order,
            size=self.metric.config.image_size,
            dtype=self.metric_dtype,
        )

    def draw_regions(
        self,
        batch_size: int,
        device: torch.device | str = "cpu",
        generator: torch.Generator | None = None,
    ) -> list[Regions]:
        """The regions a call without ``regions=`` uses: the fixed draw (made on first use
        for this batch size and device, from ``seed``), or a new random draw."""
        if self.region_mode == "fixed":
            if generator is not None:
                raise ValueError(
                    "generator= draws new regions, but this loss was built with "
                    "regions='fixed': give regions= or build it with regions='random'"
                )
            key = (batch_size, str(device))
            if key not in self._fixed:
                seeded = torch.Generator().manual_seed(0 if self.seed is None else self.seed)
                self._fixed[key] = self.metric.sample_regions(
                    batch_size, generator=seeded, device=device
                )
            return self._fixed[key]
        return self.metric.sample_regions(
            batch_size, generator=generator or self._generator, device=device
        )

    def forward(
        self,
        generated: Tensor,
        source: Tensor,
        *,
        regions: list[Regions] | None = None,
        generator: torch.Generator | None = None,
        per_stage: bool = False,
    ) -> Tensor:
        """Loss between ``generated`` (receives gradients) and ``source`` (constant).

        Args:
            generated: ``(B, 3, H, W)`` generator output, values in ``input_range``.
            source: ``(B, 3, H, W)`` the frame it must stay coherent with: the frame the
                generator manipulated (its input, or the real frame it re-renders).
            regions: regions to evaluate on, drawn for the metric's ``image_size`` (see
                :meth:`ASCCLMetric.sample_regions`); when ``None``, the loss's own
                (``regions="fixed"``: the one draw; ``"random"``: a new draw).
            generator: CPU ``torch.Generator`` for a ``"random"`` draw (``None``: the
                loss's seeded generator, else the global RNG); refused with ``"fixed"``.
            per_stage: keep the four stages apart: a trailing dimension of 4, whose sum
                is the value without it (up to float rounding), like lpips' per-layer output.

        Returns:
            float32 (float64 for a float64 metric), by ``reduction``: ``"mean"`` a scalar,
            ``"sum"`` a scalar, ``"none"`` ``(B,)``; with ``per_stage`` ``(4,)``, ``(4,)``
            and ``(B, 4)``.
        """
        if generated.shape != source.shape:
            raise ValueError(
                f"generated and source must have the same shape, got "
                f"{tuple(generated.shape)} and {tuple(source.shape)}"
            )
        if generated.ndim >= 1 and generated.shape[0] == 0:
            raise ValueError("generated and source hold no images (batch size 0)")
        device = next(self.metric.parameters()).device
        if generated.device != device or source.device != device:
            raise ValueError(
                f"generated is on {generated.device} and source on {source.device}, but the "
                f"metric on {device}: move the loss with .to(device) (nn.DataParallel over "
                "several GPUs shares one metric: use DistributedDataParallel)"
            )
        if not self._range_checked:
            check_input_range(
                {"generated": generated, "source": source}, self.input_range
            )  # one host sync, on the first call only
            self._range_checked = True
        if regions is None:  # drawn first: the index copies overlap with the backbone
            regions = self.draw_regions(generated.shape[0], generated.device, generator)
        with metric_precision(generated.device.type):
            with torch.no_grad():
                key = self.metric.features(self.preprocess(source))
            query = self.metric.features(self.preprocess(generated))
            output = self.metric.contrast(query, key, regions)
        if per_stage:
            values = self.metric.config.loss_scale * output.per_stage  # (B, 4)
        elif self.reduction == "mean":
            return output.loss  # output.per_sample.mean()
        else:
            values = output.per_sample  # (B,)
        if self.reduction == "none":
            return values
        return values.mean(0) if self.reduction == "mean" else values.sum(0)


def _autocast_state(device_type: str) -> tuple[bool, torch.dtype]:
    """Whether autocast is on for ``device_type``, and its dtype (torch >= 2.3)."""
    if hasattr(torch, "get_autocast_dtype"):  # torch >= 2.4
        return torch.is_autocast_enabled(device_type), torch.get_autocast_dtype(device_type)
    if device_type == "cuda":
        return torch.is_autocast_enabled(), torch.get_autocast_gpu_dtype()
    if device_type == "cpu":
        return torch.is_autocast_cpu_enabled(), torch.get_autocast_cpu_dtype()
    return False, torch.float32


def _has_bfloat16(device_type: str) -> bool:
    """bfloat16 autocast runs natively on ``device_type`` (CPU; CUDA from Ampere on)."""
    if device_type == "cpu":
        return True
    if device_type == "cuda":
        try:  # torch >= 2.5: emulated bf16 (pre-Ampere) does not count
            return torch.cuda.is_bf16_supported(including_emulation=False)
        except TypeError:
            return torch.cuda.is_bf16_supported()
    return False


def metric_precision(device_type: str) -> contextlib.AbstractContextManager:
    """The autocast the metric runs under: the caller's, except float16, which becomes
    bfloat16 where the device has it, else float32 (autocast off). float16 overflows on
    the metric's features (see :class:`ASCCLLoss`)."""
    enabled, dtype = _autocast_state(device_type)
    if not enabled or dtype != torch.float16:
        return contextlib.nullcontext()
    if _has_bfloat16(device_type):
        return torch.autocast(device_type, dtype=torch.bfloat16)
    return torch.autocast(device_type, enabled=False)


_PROBES = itertools.count()


def _keeps_values(fn: Callable[[Tensor], Tensor]) -> bool:
    """Whether ``Module._apply``'s ``fn`` keeps tensor values (``.to``, ``.half``,
    ``memory_format`` ...), tried on a probe of two values exact in every float dtype;
    ``to_empty``'s ``empty_like`` does not. The values change from call to call, so memory
    a caching allocator hands back with an earlier probe's values in it is no match."""
    k = next(_PROBES) % 60
    probe = torch.tensor([[[[k + 1.5, -(k + 2.25)]]]])  # 8 significant bits: exact in bf16
    try:
        moved = fn(probe.clone())
        return bool(torch.equal(moved.detach().to("cpu", torch.float32), probe))
    except (RuntimeError, TypeError, NotImplementedError):  # e.g. a meta tensor's values
        return False
