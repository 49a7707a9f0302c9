"""Metric checkpoints: safetensors tensors with the config as JSON in the file's header.

One file holds both, so a checkpoint cannot be separated from the settings it was trained
with. The header metadata is ``{"format": "asccl-metric", "format_version": "1",
"asccl_version": ..., "config": <MetricConfig JSON>}`` and, for a metric written by ``asccl
train-metric``, ``"speakers": {"train": [...], "validation": [...]}`` (JSON: the speakers it
trained and validated on; :func:`read_metric_speakers`, ``None`` for files without it),
written in a fixed order, so the same metric always gives the same bytes; any safetensors
reader shows it (``asccl metric info FILE`` prints it). Reading goes through
:mod:`asccl.io`: every problem with a file is one :class:`CheckpointError` line naming it.

The authors' released checkpoints (``torch.save(model.state_dict())`` of their
``Temporal_Context_Loss``: ``resnet50.*`` and ``mlp.{0,2,3,5,6,8,9,11}.*``) load through an
explicit key mapping, read with ``torch.load(weights_only=True)``: nothing is unpickled.
They store no settings; they load with the authors' own (:func:`authors_config`: BGR and
:data:`~asccl.metric.config.AUTHORS_ARITHMETIC`), so they give the authors' loss, and a
file converted from one keeps those settings in its header (``authors_compat=False`` /
``asccl metric convert --no-authors-compat`` opts out: asccl's arithmetic, still BGR).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from torch import Tensor, nn

from asccl._version import __version__
from asccl.io import (
    CheckpointError,
    load_state_dict_strict,
    read_safetensors_metadata,
    read_weights,
    save_safetensors,
    unwrap_state_dict,
)
from asccl.metric.config import AUTHORS_ARITHMETIC, MetricConfig
from asccl.metric.model import ASCCLMetric

__all__ = [
    "CheckpointError",
    "authors_config",
    "authors_state_dict",
    "describe_metric",
    "load_metric",
    "read_metric_config",
    "read_metric_metadata",
    "read_metric_speakers",
    "save_metric",
]

FORMAT = "asccl-metric"
FORMAT_VERSION = "1"
#: the roles of the speakers record (``"speakers"`` in the header)
SPEAKER_ROLES = ("train", "validation")

#: Index of each stage's first and second Linear in the authors' ``mlp`` ModuleList.
_AUTHORS_MLP = {stage: (3 * stage, 3 * stage + 2) for stage in range(4)}


def save_metric(
    metric: ASCCLMetric,
    path: str | os.PathLike,
    *,
    speakers: Mapping[str, Sequence[str]] | None = None,
) -> Path:
    """Write ``metric`` to ``path`` (``.safetensors``) atomically: a temporary file in the
    same folder, then a rename, so a crash never leaves a half-written checkpoint.

    ``speakers``: ``{"train": [...], "validation": [...]}``, the speakers the metric was
    trained and validated on, recorded in the header (``asccl experiment`` refuses a metric
    trained on its test speakers); ``None``: not recorded.

    The same metric gives the same bytes: the header's metadata is written in a fixed
    order, its config JSON with sorted keys, and nothing time-dependent is stored.
    """
    path = Path(path)
    if path.suffix != ".safetensors":
        raise CheckpointError(path, "metric checkpoints are .safetensors files")
    tensors = {k: v.detach().contiguous().cpu() for k, v in metric.state_dict().items()}
    metadata = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "asccl_version": __version__,
        "config": json.dumps(metric.config.to_dict(), sort_keys=True),
    }
    if speakers is not None:
        if set(speakers) != set(SPEAKER_ROLES):
            raise ValueError(
                f"speakers must have the keys {list(SPEAKER_ROLES)}, got {list(speakers)}"
            )
        record = {role: sorted(str(s) for s in speakers[role]) for role in SPEAKER_ROLES}
        metadata["speakers"] = json.dumps(record, sort_keys=True)
    return save_safetensors(tensors, path, metadata)


def read_metric_speakers(path: str | os.PathLike) -> dict[str, tuple[str, ...]] | None:
    """``{"train": (...), "validation": (...)}``: the speakers an asccl metric checkpoint
    was trained and validated on, as ``asccl train-metric`` recorded them; ``None`` for a
    file that records none (written before the record existed, by :func:`save_metric`
    without ``speakers``, or the authors' ``.pth``).

    Raises:
        CheckpointError: not a metric checkpoint, or a malformed record (named).
    """
    path = Path(path)
    if path.suffix != ".safetensors":  # the authors' layout stores no settings
        return None
    text = read_metric_metadata(path).get("speakers")
    if text is None:
        return None
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        data = None
    if not (
        isinstance(data, dict)
        and set(data) == set(SPEAKER_ROLES)
        and all(isinstance(v, list) and all(isinstance(s, str) for s in v) for v in data.values())
    ):
        raise CheckpointError(path, f"bad speakers record in its header: {text[:80]} (expected "
                              '{"train": [names], "validation": [names]})')  # fmt: skip
    return {role: tuple(data[role]) for role in SPEAKER_ROLES}


def read_metric_metadata(path: str | os.PathLike) -> dict[str, str]:
    """The header metadata of an asccl metric checkpoint (format, versions, config JSON),
    checked to be one (the tensors are not read)."""
    path = Path(path)
    metadata = read_safetensors_metadata(path)
    if metadata.get("format") != FORMAT or "config" not in metadata:
        raise CheckpointError(
            path,
            f"a safetensors file without an asccl metric header (format={FORMAT!r} "
            "and config); was it written by asccl.save_metric?",
        )
    if metadata.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(
            path,
            f"checkpoint format version {metadata.get('format_version')!r}, "
            f"this asccl reads {FORMAT_VERSION!r}",
        )
    return metadata


def read_metric_config(path: str | os.PathLike) -> MetricConfig:
    """The :class:`MetricConfig` stored in an asccl checkpoint's header.

    Raises:
        CheckpointError: not an asccl checkpoint, or a config with unknown keys, values of
            the wrong type or out of range (named).
    """
    path = Path(path)
    text = read_metric_metadata(path)["config"]
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        raise CheckpointError(path, "the config in its header is not valid JSON") from None
    return _config_from_header(path, data)


def _config_from_header(path: Path, data: Any) -> MetricConfig:
    """A :class:`MetricConfig` from a header's JSON, every field type-checked first (a
    string where a number belongs must not reach the config's arithmetic)."""
    bad = "bad config in its header"
    if not isinstance(data, dict):
        raise CheckpointError(path, f"{bad}: a JSON {type(data).__name__}, not an object")
    fields = {f.name for f in dataclasses.fields(MetricConfig)}
    unknown = sorted(set(data) - fields)
    if unknown:
        raise CheckpointError(path, f"{bad}: unknown keys {unknown}")
    defaults = MetricConfig()
    for name, value in data.items():
        problem = _field_problem(value, getattr(defaults, name))
        if problem:
            raise CheckpointError(path, f"{bad}: {name} = {json.dumps(value)[:60]} {problem}")
    try:
        return MetricConfig.from_dict(data)
    except (ValueError, TypeError) as exc:
        raise CheckpointError(path, f"{bad}: {exc}") from None


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _field_problem(value: Any, default: Any) -> str | None:
    """Why ``value`` cannot stand where ``default`` does (None: it can)."""
    if isinstance(default, bool):
        return None if isinstance(value, bool) else "is not true/false"
    if isinstance(default, int):
        if not _is_int(value):
            return "is not an integer"
        return None if value >= 1 else "must be >= 1"
    if isinstance(default, float):
        if not (_is_int(value) or isinstance(value, float)):
            return "is not a number"
        return None if math.isfinite(value) else "is not finite"
    if isinstance(default, str):
        return None if isinstance(value, str) else "is not a string"
    if isinstance(default, tuple):
        ok = isinstance(value, list) and all(_is_int(v) for v in value)
        return None if ok else "is not a list of integers"
    if isinstance(default, dict):
        return None if isinstance(value, dict) else "is not an object"
    return None


def authors_config() -> MetricConfig:
    """The settings of the authors' released checkpoints, which store none: IResNet-50 at
    224, BGR (they trained on OpenCV frames) and their loss arithmetic
    (:data:`~asccl.metric.config.AUTHORS_ARITHMETIC`)."""
    return MetricConfig(
        backbone="iresnet50",
        image_size=224,
        channel_order="bgr",
        **AUTHORS_ARITHMETIC,
        extra={"source": "authors' checkpoint"},
    )


def load_metric(
    path: str | os.PathLike, *, authors_compat: bool | None = None, **changes: Any
) -> ASCCLMetric:
    """Load a metric checkpoint: an asccl ``.safetensors`` file, or the authors' ``.pth``.

    Args:
        path: the checkpoint file.
        authors_compat: ``None`` (default): the file's own settings (the authors' ``.pth``:
            theirs, :func:`authors_config`). ``True``: the authors' loss arithmetic
            (:data:`~asccl.metric.config.AUTHORS_ARITHMETIC`) whatever the file holds;
            ``False``: asccl's defaults where they depart from the authors' (anchor window
            inside the map, per-pair adaptive weights). The channel order stays the file's.
        **changes: :class:`MetricConfig` fields to change after loading (applied after
            ``authors_compat``), e.g. ``num_anchors=(64, 32, 16, 8)``. Fields that change
            the architecture are rejected.

    Raises:
        CheckpointError: one line naming the file: missing, empty, truncated or malformed,
            a bad config in its header, another network's keys, wrong shapes, NaN/Inf.
    """
    path = Path(path)
    if path.suffix == ".safetensors":
        config = read_metric_config(path)
        filter_fn = None
    else:
        config = authors_config()
        filter_fn = _authors_filter
    state = read_weights(path)
    if authors_compat:
        changes = {**AUTHORS_ARITHMETIC, **changes}
    elif authors_compat is not None:  # asccl's own where its defaults depart from theirs
        changes = {**MetricConfig().authors_differences(), **changes}
    if changes:
        changed = config.replace(**changes)
        for name in ("backbone", "head_reduction"):
            if getattr(changed, name) != getattr(config, name):
                raise CheckpointError(path, f"{name} is fixed by the checkpoint's weights")
        config = changed
    try:
        metric = ASCCLMetric(config)
    except (ValueError, TypeError, ZeroDivisionError, RuntimeError) as exc:
        raise CheckpointError(path, f"its config builds no metric ({exc})") from None
    what = f"an ASCCL metric ({config.backbone}, head_reduction {config.head_reduction})"
    load_state_dict_strict(metric, state, path, filter_fn, what=what)
    return metric


def describe_metric(path: str | os.PathLike) -> str:
    """Every setting of a metric checkpoint, as ``asccl metric info`` prints it: format and
    the asccl version that wrote it, tensor count, the input the metric expects (size,
    range [-1, 1], channel order), whether its arithmetic is the authors', and the whole
    :class:`MetricConfig` as JSON. The file is fully loaded (every check runs)."""
    path = Path(path)
    if path.suffix == ".safetensors":
        metadata = read_metric_metadata(path)
        kind = (
            f"asccl metric checkpoint (format {metadata['format']} "
            f"v{metadata['format_version']}), written by asccl "
            f"{metadata.get('asccl_version', '?')}"
        )
    else:
        kind = "the authors' checkpoint layout (resnet50.* / mlp.*; no settings stored)"
    metric = load_metric(path)
    config = metric.config
    count = len(metric.state_dict())
    params = sum(p.numel() for p in metric.parameters())
    side = config.image_size
    departs = config.authors_differences()
    if departs:
        detail = ", ".join(f"{k} = {json.dumps(v)}" for k, v in departs.items())
        arithmetic = f"asccl's, not the authors' ({detail})"
    else:
        arithmetic = "the authors' (" + ", ".join(
            f"{k} = {json.dumps(v)}" for k, v in AUTHORS_ARITHMETIC.items()
        )
        arithmetic += ")"
    lines = [
        f"{path}: {kind}",
        f"tensors: {count} ({params} parameters), read by asccl {__version__}",
        f"input: (B, 3, {side}, {side}) float, values in [-1, 1], channel order "
        f"{config.channel_order} (asccl.ASCCLLoss converts from its input_range and "
        "channel_order)",
        f"loss arithmetic: {arithmetic}",
        f"speakers: {_describe_speakers(read_metric_speakers(path))}",
        "config: " + json.dumps(config.to_dict(), indent=2, sort_keys=True),
    ]
    return "\n".join(lines)


def _describe_speakers(speakers: dict[str, tuple[str, ...]] | None) -> str:
    if speakers is None:
        return "not recorded (the file does not say which speakers the metric trained on)"
    names = {role: ", ".join(names) or "none" for role, names in speakers.items()}
    return f"trained on {names['train']}; validated on {names['validation']}"


def _authors_filter(state: Mapping[str, Any], model: nn.Module | None = None) -> dict:
    return authors_state_dict(unwrap_state_dict(state))


def authors_state_dict(
    state: Mapping[str, Tensor], model: nn.Module | None = None
) -> dict[str, Tensor]:
    """Map the authors' keys (``resnet50.*``, ``mlp.N.*``) to :class:`ASCCLMetric`'s.

    A ``filter_fn`` of :func:`asccl.io.load_state_dict_strict`; raises ``ValueError`` for a
    key of neither kind.
    """
    mapped: dict[str, Tensor] = {}
    for key, value in state.items():
        if key.startswith("resnet50."):
            mapped["backbone." + key.removeprefix("resnet50.")] = value
        elif key.startswith("mlp."):
            index, _, param = key.removeprefix("mlp.").partition(".")
            for stage, (first, second) in _AUTHORS_MLP.items():
                if index in (str(first), str(second)) and param:
                    layer = 0 if index == str(first) else 2
                    mapped[f"heads.heads.{stage}.{layer}.{param}"] = value
                    break
            else:
                raise ValueError(f"unexpected key {key} (no Linear at that index)")
        else:
            raise ValueError(
                f"key {key!r} is neither resnet50.* nor mlp.*: not an ASCCL metric "
                "checkpoint. (An insightface backbone.pth initialises a metric for "
                "training; it is not a trained metric.)"
            )
    return mapped
