"""Video tracking: :class:`FaceTracker` runs a backend's detector every K frames and fits
the landmarks inside the previous frame's face in between; the checks that say the track
is lost (:func:`track_lost`, :func:`patch_similarity` of :func:`face_patch` grey patches)
and whether a detected face is the tracked one (:func:`continues_track`).
"""

from __future__ import annotations

import numpy as np

from asccl.data.landmarks.base import (
    FaceLandmarker,
    box_from_relative,
    box_relative_to,
    check_frame,
    landmark_extent,
)
from asccl.data.opencv import cv2


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


def continues_track(box: np.ndarray, last_box: np.ndarray, max_shift: float = 0.5) -> bool:
    """Whether detector ``box`` can be the face last seen in ``last_box`` (both ``(4,)``).

    True when the centres are at most ``max_shift`` x the last box's size (geometric mean of
    width and height) apart. At the default 0.5 the new centre lies about inside the last
    box: two people's faces do not overlap, so their centres are about a face width apart
    or more (they fail), while one face moves at most ``FaceTracker``'s ``max_shift``
    (0.25 of its size) per tracked frame.
    """
    box, last_box = np.asarray(box, np.float64), np.asarray(last_box, np.float64)
    size = float(np.sqrt(np.prod(np.maximum(last_box[2:] - last_box[:2], 1e-6))))
    shift = float(np.linalg.norm((box[:2] + box[2:]) / 2 - (last_box[:2] + last_box[2:]) / 2))
    return shift <= max_shift * size


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

    Re-detection keeps the person: while a track is held (its face was seen within the
    last ``hold`` frames), a detected face is taken only if it continues the track
    (:func:`continues_track` against the last face's detector box); when the searches find
    only another face, the frame counts as missed and the next frames look for the tracked
    face again (around its last box, with the backend's ``near`` search and, for backends
    that ignore ``near``, on a window of the frame twice the face's size). With no track
    held (first frame, or ``hold`` frames in a row without the face), the largest face is
    taken; if it does not continue the last face (or there was none) it starts a new track
    and :attr:`track` counts up. ``hold=0`` takes the largest face at every re-detection
    (the behaviour before tracks were held). One-person videos never meet another face, so
    their landmarks do not depend on ``hold``. Default 10 frames (1/3 s at MEAD's 30 fps):
    it bridges a hidden face or a few missed detections; a face gone longer is re-acquired
    as a new track.

    Call :meth:`reset` before the frames of another video. :attr:`stats` counts frames by
    outcome: ``detected`` (detector ran and found a face), ``tracked``, ``lost`` (tracking
    rejected, detector re-ran), ``missed`` (detector found no face, or only another face).
    :attr:`track` is the current track's number (-1 before the first face of a video): the
    frames of one track show one person.
    """

    def __init__(
        self,
        landmarker: FaceLandmarker,
        *,
        detect_every: int = 10,
        max_shift: float = 0.25,
        max_scale_change: float = 0.25,
        min_similarity: float = 0.5,
        hold: int = 10,
    ) -> None:
        if detect_every < 1:
            raise ValueError(f"detect_every must be >= 1, got {detect_every}")
        if hold < 0:
            raise ValueError(f"hold must be >= 0 frames, got {hold}")
        self.landmarker = landmarker
        self.detect_every = detect_every
        self.max_shift = max_shift
        self.max_scale_change = max_scale_change
        self.min_similarity = min_similarity
        self.hold = hold
        self.stats = {"detected": 0, "tracked": 0, "lost": 0, "missed": 0}
        self.reset()

    def reset(self) -> None:
        """Forget the face: the next frame runs the detector and starts track 0."""
        self._since_detect = 0
        self._previous: np.ndarray | None = None  # the previous frame's landmarks
        self._last: np.ndarray | None = None  # the last landmarks found (kept over misses)
        self._missed = 0  # frames in a row without the face since _last
        self._relative_box: np.ndarray | None = None
        self._template: np.ndarray | None = None
        self.track = -1

    def detect(self, frame: np.ndarray) -> np.ndarray | None:
        check_frame(frame)
        if self._previous is not None and self._since_detect < self.detect_every:
            tracked = self._track(frame)
            if tracked is not None:
                self._since_detect += 1
                self._previous = tracked
                self._last = tracked
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
        held = self._last is not None and self._missed < self.hold
        last = None  # the held track's last detector box
        if self._last is not None:
            last = box_from_relative(self._relative_box, landmark_extent(self._last))
        box = None
        other = False  # a search found a face that is not the held track's
        if self._previous is not None:  # look where the face was first, then everywhere
            box = self.landmarker.face_box(frame, near=last)
            if box is not None and held and not continues_track(box, last):
                box, other = None, True
        if box is None:
            box = self.landmarker.face_box(frame)
            if box is not None and held and not continues_track(box, last):
                box, other = None, True
        if box is None and other and self._previous is None:  # the held face, after a miss
            box = self.landmarker.face_box(frame, near=last)
            if box is not None and not continues_track(box, last):
                box = None
        if box is None and other:  # backends that ignore `near`: search a window around it
            box = self._window_face_box(frame, last)
            if box is not None and not continues_track(box, last):
                box = None
        if box is None:
            self._previous = None
            self._missed += 1
            self.stats["missed"] += 1
            return None
        if last is None or not continues_track(box, last):  # a jump (only when not held)
            self.track += 1
        landmarks = self.landmarker.fit(frame, box)
        self._relative_box = box_relative_to(box, landmark_extent(landmarks))
        self._template = face_patch(frame, landmarks)
        self._previous = self._last = landmarks
        self._missed = 0
        self.stats["detected"] += 1
        return landmarks

    def _window_face_box(self, frame: np.ndarray, near: np.ndarray) -> np.ndarray | None:
        """The backend's whole-frame ``face_box`` on a window twice ``near``'s size about it."""
        h, w = frame.shape[:2]
        centre, side = (near[:2] + near[2:]) / 2, float(np.sqrt(np.prod(near[2:] - near[:2])))
        x0, y0 = (max(0, int(v)) for v in centre - side)
        x1, y1 = min(w, int(centre[0] + side) + 1), min(h, int(centre[1] + side) + 1)
        if x1 - x0 < 16 or y1 - y0 < 16:
            return None
        box = self.landmarker.face_box(np.ascontiguousarray(frame[y0:y1, x0:x1]))
        return None if box is None else box + np.array([x0, y0, x0, y0], np.float64)
