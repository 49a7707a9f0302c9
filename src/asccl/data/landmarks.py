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
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np

try:
    import cv2
except ImportError as err:  # pragma: no cover - depends on the environment
    raise ImportError(
        "asccl.data.landmarks needs OpenCV: pip install 'opencv-python-headless<5'"
    ) from err

__all__ = [
    "LANDMARK_BACKENDS",
    "DlibLandmarks",
    "FaceLandmarker",
    "FaceTracker",
    "FanLandmarks",
    "LandmarkDetector",
    "default_dlib_predictor",
    "largest_box",
    "make_landmarker",
    "patch_similarity",
    "track_lost",
]

NUM_LANDMARKS = 68
DLIB_PREDICTOR_FILE = "shape_predictor_68_face_landmarks.dat"
FAN_WEIGHTS_ENV = "ASCCL_FAN_WEIGHTS"


@runtime_checkable
class LandmarkDetector(Protocol):
    """Anything that finds the largest face's 68 landmarks in an RGB frame."""

    def detect(self, frame: np.ndarray) -> np.ndarray | None:
        """``(H, W, 3)`` uint8 RGB -> ``(68, 2)`` float32 ``(x, y)`` pixels, or ``None``."""
        ...


class FaceLandmarker(LandmarkDetector, Protocol):
    """A backend: a detector whose two steps are exposed for :class:`FaceTracker`."""

    def face_box(self, frame: np.ndarray, near: np.ndarray | None = None) -> np.ndarray | None:
        """The largest face's detector box ``(4,)`` float64 ``(x0, y0, x1, y1)``, or ``None``.

        ``near``, a box where the face was a moment ago: the backend may search only around
        it (and answer ``None`` if the face is not there).
        """
        ...

    def fit(self, frame: np.ndarray, box: np.ndarray) -> np.ndarray:
        """``(68, 2)`` float32 landmarks fitted to the face inside detector-style ``box``."""
        ...


def check_frame(frame: np.ndarray) -> np.ndarray:
    """Return ``frame`` if it is an ``(H, W, 3)`` uint8 array, else raise naming what it is."""
    if not isinstance(frame, np.ndarray) or frame.dtype != np.uint8:
        kind = getattr(frame, "dtype", type(frame).__name__)
        raise ValueError(f"frame must be a uint8 numpy array (H, W, 3) RGB, got {kind}")
    if frame.ndim != 3 or frame.shape[2] != 3:
        raise ValueError(f"frame must be (H, W, 3) RGB, got shape {frame.shape}")
    return frame


def largest_box(boxes: np.ndarray, scores: np.ndarray | None = None) -> np.ndarray | None:
    """The row of ``boxes`` ``(K, >=4)`` ``(x0, y0, x1, y1, ...)`` with the largest area.

    With detector ``scores`` ``(K,)``, boxes scoring under half the best score are dropped
    first: dlib's HOG reports weak extra "faces" (score ~0.1 against ~1.5 for a real face,
    on skimage's astronaut) that can be larger than the real one.
    """
    if len(boxes) == 0:
        return None
    boxes = np.asarray(boxes, dtype=np.float64)
    if scores is not None:
        boxes = boxes[scores >= scores.max() / 2]
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    return boxes[int(np.argmax(area)), :4].copy()


# --- dlib -----------------------------------------------------------------------------------


def default_dlib_predictor() -> Path | None:
    """``shape_predictor_68_face_landmarks.dat`` from the ``face-recognition-models`` wheel.

    Located through ``importlib.util.find_spec`` because importing that package fails
    (it needs ``pkg_resources``). ``None`` when the package or the file is missing.
    """
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        return None
    for folder in spec.submodule_search_locations:
        candidate = Path(folder) / "models" / DLIB_PREDICTOR_FILE
        if candidate.is_file():
            return candidate
    return None


class DlibLandmarks:
    """dlib's HOG face detector and 68-point shape predictor.

    Licence: the 68-point model (``shape_predictor_68_face_landmarks.dat``) was trained on
    the iBUG 300-W dataset, whose licence excludes commercial use; so does this backend's
    output. dlib itself is Boost-licensed.

    Detection keeps the largest face among the confident ones (:func:`largest_box`).

    Speed: HOG costs ~17 ms on a 640x360 image (in proportion to the pixel count), the
    predictor ~1 ms whatever the frame size. A full-frame detection therefore runs on a
    copy of the frame downscaled so its longest side is at most ``detect_size`` (HOG's
    window is 80 px: at the default 640, a 1920x1080 frame's faces must be >= ~240 px high;
    MEAD's are ~300-400 px) and, when no face is found there, once more at 2x (dlib's
    upsampling: down to ~40 px at that scale). A detection ``near`` a known face searches
    only a window twice its size, shrunk by the integer factor that brings the face nearest
    to ``near_face_px`` (~4 ms for 1080p MEAD-like frames). Use :class:`FaceTracker` on
    videos to detect only every K frames.

    Args:
        predictor_path: the ``.dat`` file; default: the copy in the ``face-recognition-models``
            package (``pip install dlib-bin face-recognition-models``).
        detect_size: longest side, in pixels, of the image a full-frame detection runs on.
        near_face_px: the known face's rough size in the shrunk window of a ``near``
            detection (faces must stay above HOG's 80 px).
        upsample_on_miss: retry a full frame with no face at 2x before answering ``None``.
    """

    def __init__(
        self,
        predictor_path: str | os.PathLike | None = None,
        *,
        detect_size: int = 640,
        near_face_px: int = 120,
        upsample_on_miss: bool = True,
    ) -> None:
        try:
            import dlib
        except ImportError as err:
            raise ImportError(
                "the 'dlib' landmark backend needs dlib: pip install dlib-bin "
                "face-recognition-models"
            ) from err
        if predictor_path is None:
            predictor_path = default_dlib_predictor()
            if predictor_path is None:
                raise FileNotFoundError(
                    f"dlib's {DLIB_PREDICTOR_FILE} not found: pip install face-recognition-models "
                    "(ships it), or pass predictor_path= to a copy (dlib.net/files, "
                    "non-commercial iBUG 300-W licence)"
                )
        predictor_path = Path(predictor_path)
        if not predictor_path.is_file():
            raise FileNotFoundError(f"{predictor_path}: no such dlib shape predictor file")
        if detect_size < 32:
            raise ValueError(f"detect_size must be >= 32 pixels, got {detect_size}")
        self._dlib = dlib
        self.predictor_path = predictor_path
        self.detect_size = detect_size
        self.near_face_px = near_face_px
        self.upsample_on_miss = upsample_on_miss
        self._detector = dlib.get_frontal_face_detector()
        self._predictor = dlib.shape_predictor(str(predictor_path))

    def face_box(self, frame: np.ndarray, near: np.ndarray | None = None) -> np.ndarray | None:
        h, w = check_frame(frame).shape[:2]
        if near is None:
            x0, y0, x1, y1 = 0, 0, w, h
            scale = min(1.0, self.detect_size / max(h, w))
        else:  # a window twice the face's size around it, the face scaled to near_face_px
            centre, side = (near[:2] + near[2:]) / 2, float(np.sqrt(np.prod(near[2:] - near[:2])))
            x0, y0 = (max(0, int(v)) for v in centre - side)
            x1, y1 = min(w, int(centre[0] + side) + 1), min(h, int(centre[1] + side) + 1)
            if x1 - x0 < 16 or y1 - y0 < 16:
                return None
            scale = 1.0 / max(1, round(side / self.near_face_px))  # 1/n: cv2's fast path
        region = frame[y0:y1, x0:x1]
        if scale < 1.0:
            size = (max(1, round((x1 - x0) * scale)), max(1, round((y1 - y0) * scale)))
            region = cv2.resize(region, size, interpolation=cv2.INTER_AREA)
        gray = cv2.cvtColor(region, cv2.COLOR_RGB2GRAY)
        rects, scores, _ = self._detector.run(gray, 0, 0.0)
        if len(rects) == 0 and self.upsample_on_miss and near is None:
            rects, scores, _ = self._detector.run(gray, 1, 0.0)
        boxes = np.array([[r.left(), r.top(), r.right(), r.bottom()] for r in rects], float)
        box = largest_box(boxes.reshape(-1, 4), np.asarray(scores))
        if box is None:
            return None
        # dlib's right/bottom are inclusive pixel indices: the box spans to their far edges.
        return (box + np.array([0, 0, 1, 1])) / scale + np.array([x0, y0, x0, y0])

    def fit(self, frame: np.ndarray, box: np.ndarray) -> np.ndarray:
        frame = np.ascontiguousarray(check_frame(frame))
        x0, y0, x1, y1 = (round(float(v)) for v in box)
        rect = self._dlib.rectangle(x0, y0, max(x0, x1 - 1), max(y0, y1 - 1))
        shape = self._predictor(frame, rect)
        return np.array([(p.x, p.y) for p in shape.parts()], dtype=np.float32)

    def detect(self, frame: np.ndarray) -> np.ndarray | None:
        box = self.face_box(frame)
        return None if box is None else self.fit(frame, box)


# --- FAN (face_alignment) -------------------------------------------------------------------


class FanLandmarks:
    """The ``face_alignment`` package (S3FD detector + 2DFAN-4), the authors' landmarks.

    Thin adapter, imported lazily. It never downloads: ``weights_dir`` (or the
    ``ASCCL_FAN_WEIGHTS`` environment variable) must be a folder holding the two files
    face_alignment would otherwise fetch from https://www.adrianbulat.com/downloads/python-fan/
    (``2DFAN4-cd938726ad.zip`` or the name face_alignment picks for your torch version,
    and ``s3fd-619a316812.pth``). Licence: face_alignment is BSD-3; its 2D-FAN weights were
    trained on 300W-LP, derived from iBUG 300-W: check those terms before commercial use.
    """

    def __init__(
        self, weights_dir: str | os.PathLike | None = None, *, device: str = "cpu"
    ) -> None:
        try:
            import face_alignment
            import face_alignment.api as fa_api
        except ImportError as err:
            raise ImportError(
                "the 'fan' landmark backend needs face_alignment: pip install face-alignment; "
                f"then put its weight files in a folder named by {FAN_WEIGHTS_ENV} or "
                "weights_dir= (nothing is downloaded)"
            ) from err
        fan_name, sfd_name = fan_weight_files(fa_api)
        if weights_dir is None:
            weights_dir = os.environ.get(FAN_WEIGHTS_ENV)
        if not weights_dir:
            raise FileNotFoundError(
                f"the 'fan' landmark backend needs local weights: set {FAN_WEIGHTS_ENV} or "
                f"weights_dir= to a folder holding {fan_name} and {sfd_name} (from "
                "https://www.adrianbulat.com/downloads/python-fan/)"
            )
        weights_dir = Path(weights_dir)
        missing = [n for n in (fan_name, sfd_name) if not (weights_dir / n).is_file()]
        if missing:
            raise FileNotFoundError(
                f"{weights_dir}: missing {', '.join(missing)} for the 'fan' landmark backend "
                "(from https://www.adrianbulat.com/downloads/python-fan/; nothing is downloaded)"
            )
        with _torch_hub_dir(weights_dir):  # face_alignment finds the FAN file in hub/checkpoints
            self._fa = face_alignment.FaceAlignment(
                face_alignment.LandmarksType.TWO_D,
                device=device,
                face_detector="sfd",
                face_detector_kwargs={"path_to_detector": str(weights_dir / sfd_name)},
            )

    def face_box(self, frame: np.ndarray, near: np.ndarray | None = None) -> np.ndarray | None:
        """S3FD on the whole frame (``near`` is not used)."""
        found = self._fa.face_detector.detect_from_image(check_frame(frame).copy())
        if len(found) == 0:
            return None
        return largest_box(np.asarray(found, dtype=np.float64).reshape(len(found), -1))

    def fit(self, frame: np.ndarray, box: np.ndarray) -> np.ndarray:
        found = self._fa.get_landmarks_from_image(check_frame(frame), detected_faces=[box])
        return np.asarray(found[0][:, :2], dtype=np.float32)

    def detect(self, frame: np.ndarray) -> np.ndarray | None:
        box = self.face_box(frame)
        return None if box is None else self.fit(frame, box)


def fan_weight_files(fa_api: object) -> tuple[str, str]:
    """File names of the 2DFAN-4 and S3FD weights that this face_alignment version loads."""
    import torch

    major_minor = ".".join(torch.__version__.split("+")[0].split(".")[:2])
    by_version = getattr(fa_api, "models_urls", {})
    urls = by_version.get(major_minor, getattr(fa_api, "default_model_urls", None))
    if not urls or "2DFAN-4" not in urls:
        raise ImportError("unsupported face_alignment version: cannot tell its FAN weight file")
    return urls["2DFAN-4"].rsplit("/", 1)[-1], "s3fd-619a316812.pth"


@contextlib.contextmanager
def _torch_hub_dir(weights_dir: Path) -> Iterator[None]:
    """Point ``torch.hub`` at a temporary folder whose ``checkpoints`` is ``weights_dir``."""
    import torch

    previous = torch.hub.get_dir()
    with tempfile.TemporaryDirectory() as hub:
        os.symlink(weights_dir.resolve(), Path(hub) / "checkpoints")
        torch.hub.set_dir(hub)
        try:
            yield
        finally:
            torch.hub.set_dir(previous)


#: Backends by name. Each class takes its own keyword arguments (see its docstring).
LANDMARK_BACKENDS: dict[str, type] = {"dlib": DlibLandmarks, "fan": FanLandmarks}


def make_landmarker(name: str = "dlib", **kwargs: object) -> FaceLandmarker:
    """Build the backend ``name`` (a key of :data:`LANDMARK_BACKENDS`) with ``kwargs``."""
    if name not in LANDMARK_BACKENDS:
        raise ValueError(
            f"unknown landmark backend {name!r}; valid: {', '.join(sorted(LANDMARK_BACKENDS))}"
        )
    return LANDMARK_BACKENDS[name](**kwargs)


# --- tracking -------------------------------------------------------------------------------


def landmark_extent(landmarks: np.ndarray) -> np.ndarray:
    """``(68, 2)`` -> ``(4,)`` float64 ``(x0, y0, x1, y1)``: the points' tight bounding box."""
    pts = np.asarray(landmarks, dtype=np.float64)
    return np.concatenate([pts.min(axis=0), pts.max(axis=0)])


def box_relative_to(box: np.ndarray, extent: np.ndarray) -> np.ndarray:
    """Express ``box`` in the frame of ``extent`` (both ``(x0, y0, x1, y1)``): origin at its
    top-left corner, unit its width/height. Inverse: :func:`box_from_relative`."""
    size = np.maximum(extent[2:] - extent[:2], 1e-6)
    return (np.asarray(box, dtype=np.float64) - np.tile(extent[:2], 2)) / np.tile(size, 2)


def box_from_relative(relative: np.ndarray, extent: np.ndarray) -> np.ndarray:
    """The box that is ``relative`` (from :func:`box_relative_to`) in the frame of ``extent``."""
    size = np.maximum(extent[2:] - extent[:2], 1e-6)
    return np.tile(extent[:2], 2) + relative * np.tile(size, 2)


def track_lost(
    previous: np.ndarray,
    current: np.ndarray,
    frame_size: tuple[int, int],
    *,
    max_shift: float = 0.25,
    max_scale_change: float = 0.25,
    min_size: float = 8.0,
) -> bool:
    """Whether landmarks fitted by tracking look wrong next to the previous frame's.

    Lost when the centre moved more than ``max_shift`` x the previous face size, the size
    (geometric mean of the extent's width and height) changed by more than a factor
    ``1 + max_scale_change``, the points collapsed below ``min_size`` pixels, or the centre
    left the frame. ``frame_size`` is ``(width, height)``.
    """
    prev, cur = landmark_extent(previous), landmark_extent(current)
    prev_size = float(np.sqrt(np.prod(np.maximum(prev[2:] - prev[:2], 1e-6))))
    cur_size = float(np.sqrt(np.prod(np.maximum(cur[2:] - cur[:2], 1e-6))))
    centre = (cur[:2] + cur[2:]) / 2
    shift = float(np.linalg.norm(centre - (prev[:2] + prev[2:]) / 2))
    ratio = cur_size / prev_size
    return bool(
        cur_size < min_size
        or shift > max_shift * prev_size
        or not 1 / (1 + max_scale_change) <= ratio <= 1 + max_scale_change
        or not (0 <= centre[0] < frame_size[0] and 0 <= centre[1] < frame_size[1])
    )


def face_patch(frame: np.ndarray, landmarks: np.ndarray, size: int = 32) -> np.ndarray:
    """``(size, size)`` float32 grey patch of the landmarks' extent (clipped to the frame)."""
    h, w = frame.shape[:2]
    x0, y0, x1, y1 = landmark_extent(landmarks)
    x0, y0 = max(0, int(x0)), max(0, int(y0))
    x1, y1 = min(w, int(np.ceil(x1)) + 1), min(h, int(np.ceil(y1)) + 1)
    if x1 - x0 < 2 or y1 - y0 < 2:
        return np.zeros((size, size), np.float32)
    step = max(1, min(x1 - x0, y1 - y0) // (2 * size))  # subsample first: ~20x cheaper
    region = frame[y0:y1:step, x0:x1:step]
    patch = cv2.resize(region, (size, size), interpolation=cv2.INTER_AREA)
    return cv2.cvtColor(patch, cv2.COLOR_RGB2GRAY).astype(np.float32)


def patch_similarity(a: np.ndarray, b: np.ndarray) -> float:
    """Normalised cross-correlation of two equally shaped patches, in [-1, 1]; 0 if flat."""
    a = a - a.mean()
    b = b - b.mean()
    norm = float(np.sqrt((a * a).sum() * (b * b).sum()))
    return float((a * b).sum() / norm) if norm > 1e-6 else 0.0


class FaceTracker:
    """A stateful :class:`LandmarkDetector` for the frames of one video, in order.

    Runs the backend's face detector on the first frame, every ``detect_every`` frames, and
    whenever tracking looks lost (near the tracked face first, on the whole frame if it is
    not there: a larger face appearing elsewhere is not noticed while the track holds); on
    the other frames it only fits the landmarks inside a
    box derived from the previous frame's landmarks (the detector box, kept relative to the
    landmarks' extent as measured on the last detection frame). Tracking is lost when
    :func:`track_lost` says so or when the face patch no longer resembles the one at the
    last detection (:func:`patch_similarity` below ``min_similarity``), e.g. the face left.

    Call :meth:`reset` before the frames of another video. :attr:`stats` counts frames by
    outcome: ``detected`` (detector ran and found a face), ``tracked``, ``lost`` (tracking
    rejected, detector re-ran), ``missed`` (detector found no face).
    """

    def __init__(
        self,
        landmarker: FaceLandmarker,
        *,
        detect_every: int = 10,
        max_shift: float = 0.25,
        max_scale_change: float = 0.25,
        min_similarity: float = 0.5,
    ) -> None:
        if detect_every < 1:
            raise ValueError(f"detect_every must be >= 1, got {detect_every}")
        self.landmarker = landmarker
        self.detect_every = detect_every
        self.max_shift = max_shift
        self.max_scale_change = max_scale_change
        self.min_similarity = min_similarity
        self.stats = {"detected": 0, "tracked": 0, "lost": 0, "missed": 0}
        self.reset()

    def reset(self) -> None:
        """Forget the face: the next frame runs the detector."""
        self._since_detect = 0
        self._previous: np.ndarray | None = None
        self._relative_box: np.ndarray | None = None
        self._template: np.ndarray | None = None

    def detect(self, frame: np.ndarray) -> np.ndarray | None:
        check_frame(frame)
        if self._previous is not None and self._since_detect < self.detect_every:
            tracked = self._track(frame)
            if tracked is not None:
                self._since_detect += 1
                self._previous = tracked
                self.stats["tracked"] += 1
                return tracked
            self.stats["lost"] += 1
        return self._detect(frame)

    def _track(self, frame: np.ndarray) -> np.ndarray | None:
        box = box_from_relative(self._relative_box, landmark_extent(self._previous))
        landmarks = self.landmarker.fit(frame, box)
        h, w = frame.shape[:2]
        if track_lost(
            self._previous,
            landmarks,
            (w, h),
            max_shift=self.max_shift,
            max_scale_change=self.max_scale_change,
        ):
            return None
        if patch_similarity(self._template, face_patch(frame, landmarks)) < self.min_similarity:
            return None
        return landmarks

    def _detect(self, frame: np.ndarray) -> np.ndarray | None:
        self._since_detect = 1
        box = None
        if self._previous is not None:  # look where the face was first, then everywhere
            near = box_from_relative(self._relative_box, landmark_extent(self._previous))
            box = self.landmarker.face_box(frame, near=near)
        if box is None:
            box = self.landmarker.face_box(frame)
        if box is None:
            self._previous = None
            self.stats["missed"] += 1
            return None
        landmarks = self.landmarker.fit(frame, box)
        self._relative_box = box_relative_to(box, landmark_extent(landmarks))
        self._template = face_patch(frame, landmarks)
        self._previous = landmarks
        self.stats["detected"] += 1
        return landmarks
