"""68-point facial landmarks: pluggable detectors and a tracker for video.

Every detector answers one call, ``detect(frame) -> (68, 2) float32 | None``: ``frame`` is
an ``(H, W, 3)`` uint8 RGB image; the answer is the iBUG 68-point layout, ``(x, y)`` in
pixels of ``frame`` (pixel centres at integers), for the largest face, or ``None`` when
there is no face. Backends, by name in :data:`LANDMARK_BACKENDS`:

* ``"dlib"``: :class:`DlibLandmarks`, HOG face detector + dlib's 68-point shape predictor.
  Offline, CPU, about 1 ms per landmark fit. Default.
* ``"fan"``: :class:`FanLandmarks`, the ``face_alignment`` package (S3FD + 2DFAN-4), the
  authors' choice; only with weight files the user supplies (nothing downloads).

Backends also expose the two steps of ``detect`` (``face_box`` and ``fit``) so that
:class:`FaceTracker` can run the expensive detector only every K frames of a video and fit
the landmarks inside the previous frame's face in between.

Modules: ``base`` (the backend contract, the frame check, box helpers), ``dlib_backend``,
``fan_backend``, ``tracker``; this file names the backends and re-exports every public name.
Importing the package loads numpy and OpenCV only: dlib, face_alignment and torch load
when a backend is built.
"""

from __future__ import annotations

from asccl.data import opencv  # noqa: F401  (checked here once: dlib_backend and tracker use it)
from asccl.data.landmarks.base import (
    NUM_LANDMARKS,
    FaceLandmarker,
    LandmarkDetector,
    box_from_relative,
    box_relative_to,
    check_frame,
    landmark_extent,
    largest_box,
)
from asccl.data.landmarks.dlib_backend import (
    DLIB_PREDICTOR_FILE,
    DlibLandmarks,
    default_dlib_predictor,
)
from asccl.data.landmarks.fan_backend import FAN_WEIGHTS_ENV, FanLandmarks, fan_weight_files
from asccl.data.landmarks.tracker import FaceTracker, face_patch, patch_similarity, track_lost

__all__ = [
    "DLIB_PREDICTOR_FILE",
    "FAN_WEIGHTS_ENV",
    "LANDMARK_BACKENDS",
    "NUM_LANDMARKS",
    "DlibLandmarks",
    "FaceLandmarker",
    "FaceTracker",
    "FanLandmarks",
    "LandmarkDetector",
    "box_from_relative",
    "box_relative_to",
    "check_frame",
    "default_dlib_predictor",
    "face_patch",
    "fan_weight_files",
    "landmark_extent",
    "largest_box",
    "make_landmarker",
    "patch_similarity",
    "track_lost",
]

#: Backends by name. Each class takes its own keyword arguments (see its docstring).
LANDMARK_BACKENDS: dict[str, type] = {"dlib": DlibLandmarks, "fan": FanLandmarks}


def make_landmarker(name: str = "dlib", **kwargs: object) -> FaceLandmarker:
    """Build the backend ``name`` (a key of :data:`LANDMARK_BACKENDS`) with ``kwargs``."""
    if name not in LANDMARK_BACKENDS:
        raise ValueError(
            f"unknown landmark backend {name!r}; valid: {', '.join(sorted(LANDMARK_BACKENDS))}"
        )
    return LANDMARK_BACKENDS[name](**kwargs)
