"""OpenCV (``cv2``), imported in one place with a one-line error that says what to install.

OpenCV is an optional dependency (the ``data`` and ``eval`` extras). Every module that uses
it takes it from here: ``from asccl.data.opencv import cv2`` (at the top of
:mod:`asccl.data.landmarks`, :mod:`asccl.data.crops`, :mod:`asccl.data.crop_store`,
:mod:`asccl.data.frame_pack`, :mod:`asccl.data.synth`, :mod:`asccl.evaluation.framing`;
inside the functions of :mod:`asccl.spfem` that need it). Without it, importing this
module raises :class:`~asccl.optional.MissingDependencyError`.
"""

from __future__ import annotations

from asccl.optional import OPTIONAL, MissingDependencyError

__all__ = ["OPENCV_REQUIREMENT", "cv2"]

#: the pip requirement, as pinned in pyproject.toml's ``data`` and ``eval`` extras
OPENCV_REQUIREMENT = OPTIONAL["cv2"].requirement

try:
    import cv2
except ImportError as err:
    raise MissingDependencyError(
        "cv2", "asccl's landmarks, face crops and framing need OpenCV", err
    ) from err
