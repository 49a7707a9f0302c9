"""``"dlib"`` backend: HOG face detector + dlib's 68-point shape predictor (the default)."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import numpy as np

from asccl.data.landmarks.base import check_frame, largest_box
from asccl.data.opencv import cv2
from asccl.optional import require

DLIB_PREDICTOR_FILE = "shape_predictor_68_face_landmarks.dat"


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
        dlib = require("dlib", "the 'dlib' landmark backend needs dlib")
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
