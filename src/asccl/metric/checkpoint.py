"""Metric checkpoints: safetensors tensors with the config as JSON in the file's header.

One file holds both, so a checkpoint cannot be separated from the settings it was trained
with. The header metadata is ``{"format": "asccl-metric", "format_version": "1",
"asccl_version": ..., "config": <MetricConfig JSON>}``; any safetensors reader shows it
(``asccl metric info FILE`` prints it).

The authors' released checkpoints (``torch.save(model.state_dict())`` of their
``Temporal_Context_Loss``: ``resnet50.*`` and ``mlp.{0,2,3,5,6,8,9,11}.*``) load through an
explicit key mapping, read with ``torch.load(weights_only=True)``: nothing is unpickled.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from asccl import __version__
from asccl.metric.config import MetricConfig
from asccl.metric.iresnet import clean_state_dict
from asccl.metric.model import ASCCLMetric

FORMAT = "asccl-metric"
FORMAT_VERSION = "1"

#: Index of each stage's first and second Linear in the authors' ``mlp`` ModuleList.
_AUTHORS_MLP = {stage: (3 * stage, 3 * stage + 2) for stage in range(4)}


class CheckpointError(ValueError):
    """A checkpoint file is missing, unreadable or not what it claims to be."""


def save_metric(metric: ASCCLMetric, path: str | os.PathLike) -> Path:
    """Write ``metric`` to ``path`` (``.safetensors``) atomically: a temporary file in the
    same folder, then a rename, so a crash never leaves a half-written checkpoint."""
    from safetensors.torch import save_file

    path = Path(path)
    if path.suffix != ".safetensors":
        raise CheckpointError(f"{path}: metric checkpoints are .safetensors files")
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().contiguous().cpu() for k, v in metric.state_dict().items()}
    metadata = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "asccl_version": __version__,
        "config": json.dumps(metric.config.to_dict(), sort_keys=True),
    }
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        save_file(tensors, tmp, metadata=metadata)
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; checkpoints are meant to be shared
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def read_metric_config(path: str | os.PathLike) -> MetricConfig:
    """The :class:`MetricConfig` stored in an asccl checkpoint's header."""
    return MetricConfig.from_dict(_read_header(Path(path)))


def _read_header(path: Path) -> dict[str, Any]:
    from safetensors import safe_open

    _require_file(path)
    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
    except Exception as exc:
        raise CheckpointError(f"{path}: not a readable safetensors file ({exc})") from exc
    if metadata.get("format") != FORMAT or "config" not in metadata:
        raise CheckpointError(
            f"{path}: a safetensors file without an asccl metric header (format={FORMAT!r} "
            "and config); was it written by asccl.save_metric?"
        )
    if metadata.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(
            f"{path}: checkpoint format version {metadata.get('format_version')!r}, "
            f"this asccl reads {FORMAT_VERSION!r}"
        )
    try:
        return json.loads(metadata["config"])
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"{path}: the config in its header is not valid JSON") from exc


def load_metric(path: str | os.PathLike, **overrides: Any) -> ASCCLMetric:
    """Load a metric checkpoint: an asccl ``.safetensors`` file, or the authors' ``.pth``.

    Args:
        path: the checkpoint file.
        **overrides: :class:`MetricConfig` fields to change after loading, e.g.
            ``channel_order="bgr"`` for the authors' checkpoints (they trained on BGR).
            Fields that change the architecture are rejected.

    Raises:
        CheckpointError: missing or malformed file, with the path and what is wrong.
    """
    path = Path(path)
    if path.suffix == ".safetensors":
        config = MetricConfig.from_dict(_read_header(path))
        state = _read_safetensors(path)
    else:
        # The authors trained on OpenCV's BGR frames; everything else uses asccl's defaults.
        config = MetricConfig(
            backbone="iresnet50", channel_order="bgr", extra={"source": "authors' checkpoint"}
        )
        state = authors_state_dict(_read_torch(path), path)
    if overrides:
        changed = config.replace(**overrides)
        for name in ("backbone", "head_reduction"):
            if getattr(changed, name) != getattr(config, name):
                raise CheckpointError(f"{path}: {name} is fixed by the checkpoint's weights")
        config = changed
    metric = ASCCLMetric(config)
    _load_strict(metric, state, path)
    return metric


def authors_state_dict(state: dict[str, Tensor], path: Path) -> dict[str, Tensor]:
    """Map the authors' keys (``resnet50.*``, ``mlp.N.*``) to :class:`ASCCLMetric`'s."""
    mapped: dict[str, Tensor] = {}
    for key, value in state.items():
        if key.startswith("resnet50."):
            mapped["backbone." + key.removeprefix("resnet50.")] = value
        elif key.startswith("mlp."):
            _, index, param = key.split(".", 2)
            for stage, (first, second) in _AUTHORS_MLP.items():
                if int(index) in (first, second):
                    layer = 0 if int(index) == first else 2
                    mapped[f"heads.heads.{stage}.{layer}.{param}"] = value
                    break
            else:
                raise CheckpointError(f"{path}: unexpected key {key} (no Linear at that index)")
        else:
            raise CheckpointError(
                f"{path}: key {key!r} is neither resnet50.* nor mlp.*: not an ASCCL "
                "metric checkpoint. (An insightface backbone.pth initialises a metric for "
                "training; it is not a trained metric.)"
            )
    return mapped


def _require_file(path: Path) -> None:
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    if path.stat().st_size == 0:
        raise CheckpointError(f"{path}: empty file")


def _read_safetensors(path: Path) -> dict[str, Tensor]:
    from safetensors.torch import load_file

    try:
        return load_file(str(path))
    except Exception as exc:
        raise CheckpointError(f"{path}: cannot read tensors ({exc})") from exc


def _read_torch(path: Path) -> dict[str, Tensor]:
    _require_file(path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise CheckpointError(
            f"{path}: not a PyTorch state dict loadable with weights_only=True ({exc})"
        ) from exc
    if not isinstance(state, dict) or not all(isinstance(v, Tensor) for v in state.values()):
        if isinstance(state, dict) and any(k in state for k in ("state_dict", "model")):
            return clean_state_dict(state)
        raise CheckpointError(f"{path}: expected a dict of tensors, found {type(state).__name__}")
    return clean_state_dict(state)


def _load_strict(metric: ASCCLMetric, state: dict[str, Tensor], path: Path) -> None:
    expected = metric.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        raise CheckpointError(
            f"{path}: keys do not match a {metric.config.backbone} metric "
            f"({len(missing)} missing, e.g. {missing[:3]}; {len(unexpected)} unexpected, "
            f"e.g. {unexpected[:3]})"
        )
    for key, value in state.items():
        if value.shape != expected[key].shape:
            raise CheckpointError(
                f"{path}: {key} has shape {tuple(value.shape)}, expected "
                f"{tuple(expected[key].shape)}"
            )
    metric.load_state_dict(state, strict=True)
