"""OpenCV (``cv2``), imported in one place with a one-line error that says what to install.

OpenCV is an optional dependency (the ``data`` extra). The modules that use it
(:mod:`asccl.data.landmarks`, :mod:`asccl.data.crops`, :mod:`asccl.data.crop_store`,
:mod:`asccl.evaluation.framing`) take it from here: ``from asccl.data.opencv import cv2``.
"""

from __future__ import annotations

__all__ = ["OPENCV_REQUIREMENT", "cv2"]

#: the pip requirement, as pinned in pyproject.toml's ``data`` extra
OPENCV_REQUIREMENT = "opencv-python-headless>=4.8,<5"

try:
    import cv2
except ImportError as err:
    raise ImportError(
        f"asccl's landmarks, face crops and framing need OpenCV ({err}): "
        f"pip install '{OPENCV_REQUIREMENT}' (or the data extra: pip install 'asccl[data]')"
    ) from err
