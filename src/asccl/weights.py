"""Locating pretrained weight files on local disk. Nothing here downloads.

Every pretrained model asccl uses is loaded from a path the user gives (argument, config
key or environment variable). When it is missing the error names the file to get, where
its authors publish it, and how to point asccl at it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class WeightsSpec:
    """What a pretrained weights file is and where users get it."""

    what: str  #: human name, e.g. "ArcFace IResNet backbone"
    filename: str  #: the file name its authors publish
    source: str  #: where to get it
    env_var: str  #: environment variable that may hold its path
    flag: str  #: CLI flag / config key that takes its path


ARCFACE_WEIGHTS = WeightsSpec(
    what="ArcFace IResNet backbone (insightface arcface_torch)",
    filename="backbone.pth",
    source="the insightface model zoo (recognition/arcface_torch, e.g. ms1mv3_arcface_r50_fp16)",
    env_var="ASCCL_ARCFACE_WEIGHTS",
    flag="--arcface-weights",
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
    if not file.is_file():
        raise MissingWeightsError(
            f"{file}: no such file. {spec.what} weights ({spec.filename}) come from "
            f"{spec.source}; {how}."
        )
    return file
