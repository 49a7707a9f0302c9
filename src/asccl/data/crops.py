"""Face crops for the metric: the authors' box rule, temporal smoothing, cropping a clip.

Coordinates: ``(x, y)`` pixels with pixel centres at integers (the landmark detectors'
convention). A box is ``(x0, y0, x1, y1)`` float. An *integer* box (:func:`round_box`)
selects ``frame[y0:y1, x0:x1]`` (end exclusive), which is resized to ``size x size``; a
point maps into the crop as ``(p - x0 + 0.5) * size / (x1 - x0) - 0.5`` (likewise for y),
the pixel-centre convention of ``cv2.resize`` (:func:`to_crop_coords`).

The authors' rule (spec, stage 1): the 68 landmarks' bounding box grown by 10% of its
width/height on each side, cropped and resized without keeping the aspect ratio
(``square=False``). Deviation, on by default: the boxes are smoothed over time
(``smooth_window=5``; ``1`` is the authors' per-frame rule), which removes crop jitter from
per-frame landmark noise.
"""

from __future__ import annotations

import logging
import os
from collections import deque
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from asccl.data.landmarks import NUM_LANDMARKS, FaceTracker, make_landmarker
from asccl.data.opencv import cv2
from asccl.data.video import iter_frames, probe_video

__all__ = [
    "ClipCrops",
    "crop_clip",
    "crop_frame",
    "landmark_box",
    "round_box",
    "smooth_boxes",
    "to_crop_coords",
]

log = logging.getLogger(__name__)

PAD_MODES = ("zeros", "edge")

#: A frame whose landmarks reach further than this fraction of the crop side outside its
#: (smoothed) crop is dropped (``valid`` false). The authors' box leaves each side a margin
#: of 10/120 of the side (~8%); smoothing within one track moves the box by a fraction of
#: the face's per-frame motion (18 demo clips: landmarks >= 5.3 px inside a 112 px crop).
#: 10% outside means the face is off-centre by ~1/5 of its extent: a crop showing part of
#: a face, not a face pair for training.
MAX_OUTSIDE = 0.1


def landmark_box(landmarks: np.ndarray, grow: float = 0.10, square: bool = False) -> np.ndarray:
    """The authors' crop box: the landmarks' bounding box grown by ``grow`` on each side.

    Args:
        landmarks: ``(..., K, 2)`` points ``(x, y)``.
        grow: fraction of the bounding box's width (height) added left and right (top and
            bottom): the grown box is ``1 + 2 * grow`` times as wide (high).
        square: if true, then extend the shorter side about the centre to the longer one
            (not the authors' rule: they resize the grown box to a square, stretching it).

    Returns:
        ``(..., 4)`` float64 ``(x0, y0, x1, y1)``.
    """
    pts = np.asarray(landmarks, dtype=np.float64)
    if pts.ndim < 2 or pts.shape[-1] != 2:
        raise ValueError(f"landmarks must be (..., K, 2), got shape {pts.shape}")
    lo, hi = pts.min(axis=-2), pts.max(axis=-2)
    margin = grow * (hi - lo)
    lo, hi = lo - margin, hi + margin
    if square:
        centre, half = (lo + hi) / 2, (hi - lo).max(axis=-1, keepdims=True) / 2
        lo, hi = centre - half, centre + half
    return np.concatenate([lo, hi], axis=-1)


def smooth_boxes(
    boxes: np.ndarray,
    valid: np.ndarray,
    window: int = 5,
    max_gap: int = 5,
    track: np.ndarray | None = None,
) -> np.ndarray:
    """Smooth per-frame boxes over time with a centred moving average over valid frames.

    First, runs of at most ``max_gap`` invalid frames between two valid ones of the same
    track are bridged by linear interpolation; longer runs, those at either end and those
    between two tracks stay ``NaN``. Segments are the runs of frames with a box and one
    track: a change of ``track`` splits them too, so no box mixes two people's. Then each
    box becomes the mean over a centred window of ``window`` frames (odd) inside its
    segment; near a segment's end the window shrinks symmetrically (so a face moving at
    constant speed is not dragged).

    Args:
        boxes: ``(T, 4)`` boxes; rows of invalid frames are ignored (may be ``NaN``).
        valid: ``(T,)`` bool, which rows hold a box.
        window: odd number of frames averaged; 1 returns the (bridged) boxes unchanged.
        max_gap: longest run of invalid frames bridged.
        track: ``(T,)`` int, each valid frame's track (:attr:`FaceTracker.track`); values
            of invalid frames are ignored. ``None``: one track.

    Returns:
        ``(T, 4)`` float64: smoothed boxes; bridged invalid frames get an (interpolated,
        smoothed) box too but stay invalid for the caller; other invalid frames are ``NaN``.
    """
    boxes = np.asarray(boxes, dtype=np.float64)
    valid = np.asarray(valid, dtype=bool)
    if boxes.ndim != 2 or boxes.shape[1] != 4 or valid.shape != (len(boxes),):
        raise ValueError(f"need boxes (T, 4) and valid (T,), got {boxes.shape} and {valid.shape}")
    if window < 1 or window % 2 == 0:
        raise ValueError(f"window must be a positive odd number of frames, got {window}")
    track = np.zeros(len(boxes), np.int64) if track is None else np.asarray(track)
    if track.shape != valid.shape:
        raise ValueError(f"need track (T,) like valid, got {track.shape}")
    # each frame's track, invalid ones taking the last valid frame's (so a bridged gap lies
    # in its two ends' track)
    last_valid = np.maximum.accumulate(np.where(valid, np.arange(len(valid)), 0))
    track = track[last_valid]
    filled = _bridge_gaps(boxes, valid, max_gap, track)
    known = ~np.isnan(filled[:, 0])
    # reach[t]: half-width of frame t's window, capped by its distance to its segment's ends
    # (segments: maximal runs of frames with a box and one track); -1 where there is no box.
    t = np.arange(len(filled))
    split = np.concatenate([[True], track[1:] != track[:-1], [True]])
    starts = np.flatnonzero(known & (split[:-1] | ~np.concatenate([[False], known[:-1]])))
    stops = np.flatnonzero(known & (split[1:] | ~np.concatenate([known[1:], [False]]))) + 1
    reach = np.full(len(filled), -1)
    for start, stop in zip(starts, stops, strict=True):
        seg = t[start:stop]
        reach[start:stop] = np.minimum(window // 2, np.minimum(seg - start, stop - 1 - seg))
    # Sum in a fixed order of offsets, so a frame's result does not depend on which slice of
    # the clip it was computed in (crop_clip smooths a sliding slice).
    total, count = np.zeros_like(filled), np.zeros(len(filled))
    for k in range(-(window // 2), window // 2 + 1):
        use = reach >= abs(k)
        total[use] += filled[t[use] + k]
        count[use] += 1
    with np.errstate(invalid="ignore"):
        return total / count[:, None]


def _bridge_gaps(
    boxes: np.ndarray, valid: np.ndarray, max_gap: int, track: np.ndarray
) -> np.ndarray:
    """``boxes`` with short invalid runs between valid frames of one track interpolated,
    others NaN."""
    filled = np.where(valid[:, None], boxes, np.nan)
    idx = np.flatnonzero(valid)
    if len(idx) < 2 or max_gap < 1:
        return filled
    same = track[idx[1:]] == track[idx[:-1]]
    gaps = np.flatnonzero((np.diff(idx) > 1) & (np.diff(idx) - 1 <= max_gap) & same)
    for g in gaps:
        a, b = idx[g], idx[g + 1]
        w = (np.arange(a + 1, b) - a)[:, None] / (b - a)
        filled[a + 1 : b] = (1 - w) * filled[a] + w * filled[b]
    return filled


def round_box(box: np.ndarray) -> np.ndarray:
    """``(4,)`` float box -> ``(4,)`` int64 pixel box ``(x0, y0, x1, y1)``, at least 1x1.

    Edges are rounded half-up; the end is exclusive (``frame[y0:y1, x0:x1]``).
    """
    x0, y0, x1, y1 = np.floor(np.asarray(box, dtype=np.float64) + 0.5).astype(np.int64)
    return np.array([x0, y0, max(x1, x0 + 1), max(y1, y0 + 1)], dtype=np.int64)


def to_crop_coords(points: np.ndarray, box: np.ndarray, size: int) -> np.ndarray:
    """Map ``(..., 2)`` frame points into the ``size x size`` crop of integer ``box``."""
    x0, y0, x1, y1 = np.asarray(box, dtype=np.float64)
    scale = np.array([size / (x1 - x0), size / (y1 - y0)])
    return ((np.asarray(points, np.float64) - [x0, y0] + 0.5) * scale - 0.5).astype(np.float32)


def crop_frame(
    frame: np.ndarray,
    box: np.ndarray,
    size: int = 224,
    pad: str = "zeros",
    out: np.ndarray | None = None,
) -> np.ndarray:
    """Crop ``frame`` to ``box`` and resize to ``(size, size, 3)`` uint8 (aspect not kept).

    Args:
        frame: ``(H, W, 3)`` uint8.
        box: ``(x0, y0, x1, y1)``, rounded by :func:`round_box`.
        size: side of the output, pixels.
        pad: where the box leaves the frame, fill with ``"zeros"`` (black, the default) or
            ``"edge"`` (repeat the nearest frame pixel).
        out: an ``(size, size, 3)`` uint8 C-contiguous array to write the crop into.

    Resizing uses ``cv2.INTER_AREA`` when the box is at least ``size`` wide and high (the
    usual case: no aliasing), ``cv2.INTER_LINEAR`` otherwise.
    """
    if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
        raise ValueError(f"frame must be (H, W, 3) uint8, got {frame.shape} {frame.dtype}")
    if pad not in PAD_MODES:
        raise ValueError(f"unknown pad {pad!r}; valid: {', '.join(PAD_MODES)}")
    h, w = frame.shape[:2]
    x0, y0, x1, y1 = (int(v) for v in round_box(box))
    cx0, cy0, cx1, cy1 = max(x0, 0), max(y0, 0), min(x1, w), min(y1, h)
    if (cx0, cy0, cx1, cy1) == (x0, y0, x1, y1):
        region = frame[y0:y1, x0:x1]
    elif pad == "edge":
        rows, cols = np.clip(np.arange(y0, y1), 0, h - 1), np.clip(np.arange(x0, x1), 0, w - 1)
        region = frame[rows[:, None], cols[None, :]]
    elif cx1 <= cx0 or cy1 <= cy0:
        if out is None:
            return np.zeros((size, size, 3), np.uint8)
        out[:] = 0
        return out
    else:
        region = cv2.copyMakeBorder(
            frame[cy0:cy1, cx0:cx1],
            cy0 - y0, y1 - cy1, cx0 - x0, x1 - cx1,
            cv2.BORDER_CONSTANT, value=(0, 0, 0),
        )  # fmt: skip
    shrink = region.shape[0] >= size and region.shape[1] >= size
    interp = cv2.INTER_AREA if shrink else cv2.INTER_LINEAR
    if out is None:
        return cv2.resize(region, (size, size), interpolation=interp)
    if out.shape != (size, size, 3) or out.dtype != np.uint8 or not out.flags.c_contiguous:
        raise ValueError(f"out must be C-contiguous ({size}, {size}, 3) uint8, got {out.shape}")
    result = cv2.resize(region, (size, size), dst=out, interpolation=interp)
    if not np.shares_memory(result, out):  # OpenCV allocated anew after all
        out[:] = result
    return out


@dataclass
class ClipCrops:
    """A clip's face crops and where they came from.

    Attributes:
        frames: ``(N, S, S, 3)`` uint8 RGB crops; all zeros where ``valid`` is false.
        landmarks: ``(N, 68, 2)`` float32 in crop pixels (what training uses); NaN if invalid.
        source_landmarks: ``(N, 68, 2)`` float32 in source-frame pixels, as detected (kept
            so crops can be re-made with another rule without re-detecting); NaN if invalid.
        boxes: ``(N, 4)`` float32 integer box ``(x0, y0, x1, y1)`` cut from the source frame
            (see the module docstring; can extend past the frame); NaN if invalid.
        valid: ``(N,)`` bool, a face was found.
        fps: the video's frame rate.
        frame_size: source ``(width, height)``.
    """

    frames: np.ndarray
    landmarks: np.ndarray
    source_landmarks: np.ndarray
    boxes: np.ndarray
    valid: np.ndarray
    fps: float
    frame_size: tuple[int, int]

    def __post_init__(self) -> None:
        n = len(self.frames)
        if self.frames.ndim != 4 or self.frames.shape[1:] != (self.size, self.size, 3):
            raise ValueError(f"frames must be (N, S, S, 3), got {self.frames.shape}")
        expected = {
            "landmarks": (n, NUM_LANDMARKS, 2),
            "source_landmarks": (n, NUM_LANDMARKS, 2),
            "boxes": (n, 4),
            "valid": (n,),
        }
        for name, shape in expected.items():
            if getattr(self, name).shape != shape:
                raise ValueError(f"{name} must be {shape}, got {getattr(self, name).shape}")

    def __len__(self) -> int:
        return len(self.frames)

    @property
    def size(self) -> int:
        """Crop side ``S``, pixels."""
        return int(self.frames.shape[1]) if self.frames.ndim == 4 else 0

    @property
    def num_invalid(self) -> int:
        """Frames without a face."""
        return int((~self.valid).sum())


def _grow(array: np.ndarray, length: int) -> np.ndarray:
    """``array`` extended along axis 0 to ``length`` rows of zeros (uint8) or NaN."""
    fill = 0 if array.dtype == np.uint8 else np.nan
    extra = np.full((length - len(array), *array.shape[1:]), fill, array.dtype)
    return np.concatenate([array, extra])


def crop_clip(
    video: str | os.PathLike,
    size: int = 224,
    *,
    backend: str = "dlib",
    detect_every: int = 10,
    tracker: FaceTracker | None = None,
    grow: float = 0.10,
    square: bool = False,
    smooth_window: int = 5,
    max_gap: int = 5,
    pad: str = "zeros",
    **backend_kwargs: object,
) -> ClipCrops:
    """Detect/track the face in every frame of ``video`` and crop it to ``size x size``.

    One decoding pass: landmarks come from a :class:`FaceTracker` (detector every
    ``detect_every`` frames and when tracking is lost, landmark fit only in between);
    each frame is cropped as soon as the boxes it is smoothed with are known, so only a
    few frames are held in memory.

    Frames where no face is found are not cropped: zeros, ``valid`` false, NaN landmarks;
    their count is logged as a warning (not an error: the authors log and go on). So are
    frames whose landmarks fall outside their smoothed crop by more than
    :data:`MAX_OUTSIDE` of its side (logged too). The tracker's :attr:`FaceTracker.track`
    splits the smoothing: no box is an average of two people's.

    Args:
        video: a video file.
        size: crop side in pixels (the metric sees 224; the authors stored 512).
        backend: landmark backend name (``LANDMARK_BACKENDS``), built with ``backend_kwargs``
            (e.g. ``detect_size=480``) unless ``tracker`` is given.
        detect_every: run the face detector at least every this many frames.
        tracker: a ready tracker to reuse across clips (it is reset here); building a
            backend loads its model (~0.7 s for dlib), so pass one when cropping many clips.
        grow, square: the box rule, :func:`landmark_box`.
        smooth_window, max_gap: :func:`smooth_boxes`; ``smooth_window=1`` is the authors'
            per-frame rule.
        pad: :func:`crop_frame`'s fill where a box leaves the frame.

    Raises:
        DataError: the video cannot be read (see :func:`~asccl.data.video.iter_frames`).
    """
    path = Path(video)
    info = probe_video(path)
    if tracker is None:
        tracker = FaceTracker(make_landmarker(backend, **backend_kwargs), detect_every=detect_every)
    tracker.reset()
    half = smooth_window // 2
    # Frame t's smoothed box depends on raw boxes within `lag` frames of t (bridging plus
    # the window, plus the window's shrink near a segment end).
    lag = 2 * half + max_gap + 1 if smooth_window > 1 else 0

    raw_landmarks: list[np.ndarray] = []
    raw_boxes: list[np.ndarray] = []
    valid: list[bool] = []
    tracks: list[int] = []  # the tracker's track per frame: smoothing never mixes two
    nan_landmarks = np.full((NUM_LANDMARKS, 2), np.nan, np.float32)
    # Outputs, preallocated for the listed frame count (crops are resized straight into
    # `frames`); frames without a face keep zeros and NaN.
    frames = np.zeros((info.num_frames, size, size, 3), np.uint8)
    landmarks = np.full((info.num_frames, NUM_LANDMARKS, 2), np.nan, np.float32)
    boxes = np.full((info.num_frames, 4), np.nan, np.float32)
    pending: deque[np.ndarray] = deque()  # decoded frames not cropped yet
    dropped: list[int] = []  # frames whose landmarks fall outside their crop
    bounds = (-0.5 - MAX_OUTSIDE * size, size - 0.5 + MAX_OUTSIDE * size)  # crop: [-0.5, S-0.5]

    def emit(i: int) -> None:
        frame = pending.popleft()
        if not valid[i]:
            return
        lo, hi = max(0, i - lag), min(len(valid), i + lag + 1)
        box = smooth_boxes(np.array(raw_boxes[lo:hi]), np.array(valid[lo:hi]), smooth_window,
                           max_gap, np.array(tracks[lo:hi]))[i - lo]  # fmt: skip
        box = round_box(box)
        points = to_crop_coords(raw_landmarks[i], box, size)
        if points.min() < bounds[0] or points.max() > bounds[1]:
            dropped.append(i)
            return
        crop_frame(frame, box, size, pad, out=frames[i])
        landmarks[i] = points
        boxes[i] = box

    frame_size = (info.width, info.height)
    for t, frame in enumerate(iter_frames(path)):
        if t == len(frames):  # more frames than the container listed
            frames, landmarks, boxes = (_grow(a, len(a) + 64) for a in (frames, landmarks, boxes))
        frame_size = (frame.shape[1], frame.shape[0])
        found = tracker.detect(frame)
        valid.append(found is not None)
        tracks.append(tracker.track)
        raw_landmarks.append(nan_landmarks if found is None else found)
        raw_boxes.append(np.full(4, np.nan) if found is None else landmark_box(found, grow, square))
        pending.append(frame)
        if t - lag >= 0:
            emit(t - lag)
    n = len(valid)
    for i in range(n - len(pending), n):
        emit(i)

    kept = np.array(valid, dtype=bool)
    kept[dropped] = False
    source_landmarks = np.stack(raw_landmarks).astype(np.float32)
    source_landmarks[dropped] = np.nan
    if dropped:
        log.warning("%s: %d frames dropped: landmarks outside their crop", path, len(dropped))
    crops = ClipCrops(
        frames=frames[:n],
        landmarks=landmarks[:n],
        source_landmarks=source_landmarks,
        boxes=boxes[:n],
        valid=kept,
        fps=info.fps,
        frame_size=frame_size,
    )
    if crops.num_invalid > len(dropped):
        missing = crops.num_invalid - len(dropped)
        log.warning("%s: no face in %d of %d frames", path, missing, len(crops))
    return crops
