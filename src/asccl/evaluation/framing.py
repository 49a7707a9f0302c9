"""Face framing: what each evaluation network sees of a clip's frames.

Per metric, ``framing`` is one of :data:`~asccl.evaluation.config.FRAMINGS`:

* ``"track"``: the face found by the data stage's landmark tracker
  (:class:`~asccl.data.landmarks.FaceTracker`, dlib by default, FAN with local weights),
  framed the way the reference tool frames it:

  - **SyncNet** (LSE-D/LSE-C), as syncnet_python's ``run_pipeline.py`` (``crop_video``):
    per 25 fps frame the face box's half size ``s = max(w, h) / 2`` and centre ``(x, y)``,
    each smoothed over the track by ``scipy.signal.medfilt(kernel_size=13)`` (zero padded at
    the track's ends, as there); the frame padded by ``bsi = int(s * (1 + 2 cs))`` pixels of
    value 110 on every side; the crop ``[int(my - s) : int(my + s (1 + 2 cs)),
    int(mx - s (1 + cs)) : int(mx + s (1 + cs))]`` (``mx, my``: the centre in the padded
    frame; a square of side ``2 s (1 + cs)`` whose centre is ``cs s`` below the face's);
    ``cv2.resize`` to 224x224 (bilinear); ``cs = crop_scale``, 0.4 as their
    ``--crop_scale``. Their box is S3FD's: with ``landmark_backend = "fan"`` it is S3FD's
    here too (the box the tracker fitted the landmarks in); with dlib it is dlib's HOG box,
    tighter around the brows and chin (a documented difference). syncnet_python scores each
    face track; here the longest track is scored, built as their ``track_shot`` builds one:
    25 fps images with a face, a gap of up to ``--num_failed_det`` (25) images without one
    bridged, the boxes of the bridged images linearly interpolated (their ``interp1d``)
    before the median filter; the audio from the track's start (their ``audiostart``); images
    without a face are counted (``no_face``, bridged ones included). Not applied: their IOU
    test between consecutive detections (one face per clip here) and ``--min_face_size``.
    With ``lse_codecs`` (on by default, any framing) the frames and crops go through the
    reference's lossy steps first: the full frames as its ``video.avi`` (MPEG-4, q 2) and
    ``%06d.jpg`` files (q 2), the crops as OpenCV's XVID ``crop.avi`` and the JPEG files its
    ``evaluate`` reads back (:mod:`~asccl.evaluation.syncnet_video`).
  - **25 fps**: which source frame each 25 fps image shows is what ``run_pipeline``'s
    ``ffmpeg -r 25`` into AVI and ``-f image2`` out of it give
    (:func:`~asccl.evaluation.syncnet_timing.avi_frame_sources`, checked against the images
    the ffmpeg CLI wrote): frame-rate sync on the frames' timestamps, the MP3 priming shift
    when the clip has audio, repeats where the AVI has gaps. On 30 fps input it keeps frames
    0-9 and then drops every sixth (up to two source frames older than the frame nearest
    each image's time).
  - **ArcFace** (CSIM, FAD), as insightface's ``face_align.norm_crop``: 5 points from the
    68 landmarks (eye centres: means of points 36-41 and 42-47; nose tip 30; mouth corners
    48 and 54), the least-squares similarity (Umeyama, what ``skimage``'s
    ``SimilarityTransform.estimate`` computes) onto :data:`ARCFACE_DST` (insightface's
    ``arcface_dst``, 112x112), ``cv2.warpAffine(frame, M, (112, 112), borderValue=0)``.

* ``"center"``: the centre square of each frame, resized (the pre-framing behaviour).
* ``"none"``: frames are already aligned crops: resized to the network's input only.

Frames without a face are not scored (SyncNet's bridged gaps excepted, as above):
:class:`FramingResult` lists them (``no_face``) and keeps the frame number of every row it
scores (``index``).

FID has no face framing: by default the whole frame goes to Inception as pytorch-fid
feeds it (:func:`inception_input`, ``fid_preprocess = "pytorch-fid"``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from asccl.data.landmarks import (
    NUM_LANDMARKS,
    FaceLandmarker,
    FaceTracker,
    box_from_relative,
    landmark_extent,
)
from asccl.data.opencv import cv2
from asccl.evaluation.config import FID_PREPROCESS

ARCFACE_SIZE = 112
SYNCNET_SIZE = 224
INCEPTION_SIZE = 299
SYNCNET_FPS = 25
#: insightface ``face_align.py``'s ``arcface_dst``: the 5 points of a 112x112 aligned face
#: (image-left eye, image-right eye, nose tip, image-left and image-right mouth corners).
ARCFACE_DST = np.array(
    [
        [38.2946, 51.6963],
        [73.5318, 51.5014],
        [56.0252, 71.7366],
        [41.5493, 92.3655],
        [70.7299, 92.2041],
    ]
)
#: syncnet_python's ``crop_video``: median filter length and the padding's grey value.
SYNCNET_MEDIAN_KERNEL = 13
SYNCNET_PAD_VALUE = 110


# --------------------------------------------------------------------------------- results


@dataclass(frozen=True)
class FaceTrack:
    """A clip's faces: ``landmarks`` ``(N, 68, 2)`` float32 frame pixels and ``boxes``
    ``(N, 4)`` float64 ``(x0, y0, x1, y1)`` detector-style boxes; NaN where no face."""

    landmarks: np.ndarray
    boxes: np.ndarray

    @property
    def found(self) -> np.ndarray:
        """``(N,)`` bool: a face in that frame."""
        return ~np.isnan(self.boxes[:, 0])

    @property
    def no_face(self) -> list[int]:
        """Frame numbers without a face."""
        return np.flatnonzero(~self.found).tolist()


@dataclass(frozen=True)
class FramingResult:
    """What one network sees of a clip.

    Attributes:
        frames: ``(M, S, S, 3)`` uint8 RGB network inputs.
        index: ``(M,)`` int64, the frame each row is (for SyncNet: of the 25 fps sequence).
        no_face: frames (same numbering) where no face was found: not in ``frames``.
        fps: frame rate of the numbering.
    """

    frames: np.ndarray
    index: np.ndarray
    no_face: list[int] = field(default_factory=list)
    fps: float = 0.0


# ------------------------------------------------------------------------------- tracking


class BoxTracker(FaceTracker):
    """:class:`~asccl.data.landmarks.FaceTracker` that also answers the detector-style box
    its landmarks are fitted in (the detector's box on a detection frame, carried relative
    to the landmarks' extent on tracked frames)."""

    def detect_with_box(self, frame: np.ndarray) -> tuple[np.ndarray | None, np.ndarray | None]:
        """``(H, W, 3)`` uint8 RGB -> ``((68, 2) landmarks, (4,) box)`` or ``(None, None)``."""
        landmarks = self.detect(frame)
        if landmarks is None:
            return None, None
        return landmarks, box_from_relative(self._relative_box, landmark_extent(landmarks))


def track_faces(frames: np.ndarray, tracker: BoxTracker, landmark_every: int = 1) -> FaceTrack:
    """Landmarks and boxes of ``(N, H, W, 3)`` uint8 RGB frames, in order.

    The tracker runs on every ``landmark_every``-th frame and the last; frames between two
    such frames that both have a face get landmarks and boxes interpolated linearly, the
    others are tracked one by one (so a face that comes or goes is not guessed).
    """
    if landmark_every < 1:
        raise ValueError(f"landmark_every must be >= 1, got {landmark_every}")
    n = len(frames)
    landmarks = np.full((n, NUM_LANDMARKS, 2), np.nan, np.float32)
    boxes = np.full((n, 4), np.nan)
    tracker.reset()

    def run(t: int) -> bool:
        found, box = tracker.detect_with_box(frames[t])
        if found is not None:
            landmarks[t], boxes[t] = found, box
        return found is not None

    keys = sorted(set(range(0, n, landmark_every)) | {n - 1})
    previous, had_face = None, False
    for t in keys:
        has_face = run(t)
        if previous is not None and t - previous > 1:
            if had_face and has_face:
                w = (np.arange(previous + 1, t) - previous) / (t - previous)
                landmarks[previous + 1 : t] = (1 - w[:, None, None]) * landmarks[previous] + w[
                    :, None, None
                ] * landmarks[t]
                boxes[previous + 1 : t] = (1 - w[:, None]) * boxes[previous] + w[:, None] * boxes[t]
            else:
                tracker.reset()
                for u in range(previous + 1, t):
                    run(u)
                tracker.reset()  # the next key frame detects afresh
        previous, had_face = t, has_face
    return FaceTrack(landmarks, boxes)


def make_tracker(landmarker: FaceLandmarker, detect_every: int) -> BoxTracker:
    """A :class:`BoxTracker` on a built landmark backend, with the data stage's tracker rule
    (:data:`~asccl.data.config.TRACKER_RULE`: recorded in the face-track cache)."""
    from asccl.data.config import TRACKER_RULE

    return BoxTracker(landmarker, detect_every=detect_every, hold=TRACKER_RULE["hold"])


# ------------------------------------------------------------------------------- ArcFace


def five_points(landmarks: np.ndarray) -> np.ndarray:
    """``(..., 68, 2)`` iBUG landmarks -> ``(..., 5, 2)`` float64: image-left eye centre
    (mean of 36-41), image-right eye centre (42-47), nose tip (30), mouth corners 48, 54."""
    pts = np.asarray(landmarks, dtype=np.float64)
    return np.stack(
        [
            pts[..., 36:42, :].mean(-2),
            pts[..., 42:48, :].mean(-2),
            pts[..., 30, :],
            pts[..., 48, :],
            pts[..., 54, :],
        ],
        axis=-2,
    )


def similarity_transform(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """The ``(2, 3)`` similarity (rotation, uniform scale, translation) taking ``(K, 2)``
    ``src`` nearest to ``dst`` in least squares: Umeyama (1991), eq. 40-42, reflections
    excluded (``skimage.transform.SimilarityTransform.estimate``'s maths)."""
    src, dst = np.asarray(src, np.float64), np.asarray(dst, np.float64)
    mu_s, mu_d = src.mean(0), dst.mean(0)
    s, d = src - mu_s, dst - mu_d
    cov = d.T @ s / len(src)  # (2, 2)
    u, sigma, vt = np.linalg.svd(cov)
    sign = np.ones(2)
    if np.linalg.det(cov) < 0:
        sign[-1] = -1
    rot = u @ np.diag(sign) @ vt
    scale = (sigma * sign).sum() / s.var(0).sum()
    matrix = np.empty((2, 3))
    matrix[:, :2] = scale * rot
    matrix[:, 2] = mu_d - scale * rot @ mu_s
    return matrix


def align_face(frame: np.ndarray, landmarks: np.ndarray, size: int = ARCFACE_SIZE) -> np.ndarray:
    """``(H, W, 3)`` uint8 frame, its ``(68, 2)`` landmarks -> ``(size, size, 3)`` uint8
    aligned face (insightface's ``norm_crop``: template scaled by ``size / 112``)."""
    matrix = similarity_transform(five_points(landmarks), ARCFACE_DST * (size / ARCFACE_SIZE))
    return cv2.warpAffine(frame, matrix, (size, size), borderValue=0.0)


# ------------------------------------------------------------------------------- SyncNet


def syncnet_boxes(boxes: np.ndarray) -> np.ndarray:
    """``(T, 4)`` boxes of one track -> ``(T, 3)`` ``(x, y, s)``: centre and half size
    ``max(w, h) / 2``, each median-filtered over the track (kernel 13, zero padded)."""
    import warnings

    from scipy.signal import medfilt

    boxes = np.asarray(boxes, np.float64)
    s = np.maximum(boxes[:, 3] - boxes[:, 1], boxes[:, 2] - boxes[:, 0]) / 2
    y = (boxes[:, 1] + boxes[:, 3]) / 2
    x = (boxes[:, 0] + boxes[:, 2]) / 2
    with warnings.catch_warnings():  # tracks under 13 frames: zero padded, as there
        warnings.simplefilter("ignore", UserWarning)
        return np.stack([medfilt(v, kernel_size=SYNCNET_MEDIAN_KERNEL) for v in (x, y, s)], 1)


def syncnet_crop(
    frame: np.ndarray, x: float, y: float, s: float, crop_scale: float = 0.4
) -> np.ndarray:
    """syncnet_python's crop of ``(H, W, 3)`` uint8 ``frame`` around centre ``(x, y)`` with
    half size ``s``, as ``(224, 224, 3)`` uint8 (see the module docstring). The padding is
    not materialised: only the crop's window is filled, with the same pixels."""
    h, w = frame.shape[:2]
    cs = crop_scale
    pad = int(s * (1 + 2 * cs))
    my, mx = y + pad, x + pad
    r0, r1 = int(my - s), int(my + s * (1 + 2 * cs))
    c0, c1 = int(mx - s * (1 + cs)), int(mx + s * (1 + cs))
    # numpy slicing of the padded (h + 2 pad, w + 2 pad) frame clips the window to it
    r0, r1 = max(r0, 0), min(r1, h + 2 * pad)
    c0, c1 = max(c0, 0), min(c1, w + 2 * pad)
    if r1 <= r0 or c1 <= c0:
        return np.full((SYNCNET_SIZE, SYNCNET_SIZE, 3), SYNCNET_PAD_VALUE, np.uint8)
    window = np.full((r1 - r0, c1 - c0, 3), SYNCNET_PAD_VALUE, np.uint8)
    fr0, fr1 = max(r0 - pad, 0), min(r1 - pad, h)  # the window's part inside the frame
    fc0, fc1 = max(c0 - pad, 0), min(c1 - pad, w)
    if fr1 > fr0 and fc1 > fc0:
        window[fr0 + pad - r0 : fr1 + pad - r0, fc0 + pad - c0 : fc1 + pad - c0] = frame[
            fr0:fr1, fc0:fc1
        ]
    return cv2.resize(window, (SYNCNET_SIZE, SYNCNET_SIZE))


#: syncnet_python's ``run_pipeline --num_failed_det``: a face track goes on across up to this
#: many images without a detection (the next detection at most this many images later)
NUM_FAILED_DET = 25


def track_span(found: np.ndarray, max_gap: int = NUM_FAILED_DET) -> tuple[int, int]:
    """``(start, stop)`` of the longest face track in ``(T,)`` bool ``found``: from a
    detection to the last one reached by steps of at most ``max_gap`` images (``track_shot``:
    ``face['frame'] - track[-1]['frame'] <= num_failed_det``); the first if tied, ``(0, 0)``
    when there is no detection."""
    hits = np.flatnonzero(found)
    if len(hits) == 0:
        return 0, 0
    cuts = np.flatnonzero(np.diff(hits) > max_gap)
    starts = np.concatenate([hits[:1], hits[cuts + 1]])
    stops = np.concatenate([hits[cuts], hits[-1:]]) + 1
    best = int(np.argmax(stops - starts))
    return int(starts[best]), int(stops[best])


def bridge_boxes(boxes: np.ndarray) -> np.ndarray:
    """``(T, 4)`` boxes of one track, NaN rows (no detection) filled by linear interpolation
    between the detections around them, per coordinate (``scipy``'s ``interp1d`` over the
    detection frames, as ``track_shot`` does). The first and last rows must be detections."""
    found = ~np.isnan(boxes[:, 0])
    if found.all():
        return boxes
    frames, known = np.arange(len(boxes)), np.flatnonzero(found)
    return np.stack([np.interp(frames, known, boxes[known, c]) for c in range(4)], axis=1)


def syncnet_input(
    frames: np.ndarray,
    sources: np.ndarray,
    framing: str,
    track: FaceTrack | None = None,
    crop_scale: float = 0.4,
) -> FramingResult:
    """``(N, H, W, 3)`` uint8 RGB frames -> 224x224 SyncNet inputs at 25 fps.

    ``sources``: ``(M,)`` the source frame each 25 fps image shows
    (:func:`~asccl.evaluation.syncnet_timing.avi_frame_sources`; ``np.arange(N)`` for 25 fps
    frames taken as they are). ``"track"`` keeps the longest face track (:func:`track_span`:
    gaps of up to :data:`NUM_FAILED_DET` images bridged, their boxes interpolated; ``index``:
    its 25 fps image numbers, consecutive) and lists the images without a face in
    ``no_face``; the other framings keep every frame."""
    picks = np.asarray(sources, np.int64)
    if picks.ndim != 1 or (len(picks) and not 0 <= picks.min() <= picks.max() < len(frames)):
        raise ValueError(f"sources must be indices into the {len(frames)} frames")
    if framing != "track":
        resized = resize_frames(frames[picks], SYNCNET_SIZE, crop=framing == "center")
        return FramingResult(resized, np.arange(len(picks)), [], SYNCNET_FPS)
    if track is None:
        raise ValueError('framing "track" needs the clip\'s FaceTrack')
    found = track.found[picks]
    start, stop = track_span(found)
    out = np.zeros((stop - start, SYNCNET_SIZE, SYNCNET_SIZE, 3), np.uint8)
    if stop > start:
        smooth = syncnet_boxes(bridge_boxes(track.boxes[picks[start:stop]]))
        for j, (x, y, s) in enumerate(smooth):
            out[j] = syncnet_crop(frames[picks[start + j]], x, y, s, crop_scale)
    no_face = np.flatnonzero(~found).tolist()
    return FramingResult(out, np.arange(start, stop), no_face, SYNCNET_FPS)


# -------------------------------------------------------------------- ArcFace, Inception


def resize_frames(frames: np.ndarray, size: int, crop: bool) -> np.ndarray:
    """``(N, H, W, 3)`` uint8 -> ``(N, size, size, 3)`` uint8: the centre square when
    ``crop`` (else the whole frame, stretched), bilinear, antialiased when shrinking
    (``"center"``/``"none"`` framings; rounded to uint8 like any stored crop)."""
    x = square_resize(frames, size) if crop else _stretch(frames, size)
    return x.round().to(torch.uint8).permute(0, 2, 3, 1).numpy()


def _stretch(frames: np.ndarray, size: int) -> torch.Tensor:
    x = torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).float()
    if tuple(x.shape[-2:]) == (size, size):
        return x
    shrink = min(x.shape[-2:]) > size
    x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=shrink)
    return x.clamp(0, 255)


def square_resize(frames: np.ndarray, size: int) -> torch.Tensor:
    """``(N, H, W, 3)`` uint8 -> ``(N, 3, size, size)`` float in 0..255: centre square
    crop, bilinear resize (antialiased when shrinking): the ``"center"`` framing and the
    ``"center-crop"`` FID preprocessing (not pytorch-fid's)."""
    x = torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).float()
    h, w = x.shape[-2:]
    side = min(h, w)
    top, left = (h - side) // 2, (w - side) // 2
    x = x[..., top : top + side, left : left + side]
    if side != size:
        x = F.interpolate(
            x, size=(size, size), mode="bilinear", align_corners=False, antialias=side > size
        )
    return x.clamp(0, 255)


def arcface_input(
    frames: np.ndarray, framing: str, track: FaceTrack | None = None
) -> FramingResult:
    """``(N, H, W, 3)`` uint8 RGB -> 112x112 ArcFace inputs: 5-point aligned faces of the
    frames with one (``"track"``), else every frame centre-cropped or resized."""
    if framing != "track":
        resized = resize_frames(frames, ARCFACE_SIZE, crop=framing == "center")
        return FramingResult(resized, np.arange(len(frames)), [], 0.0)
    if track is None:
        raise ValueError('framing "track" needs the clip\'s FaceTrack')
    index = np.flatnonzero(track.found)
    out = np.zeros((len(index), ARCFACE_SIZE, ARCFACE_SIZE, 3), np.uint8)
    for j, t in enumerate(index):
        out[j] = align_face(frames[t], track.landmarks[t])
    return FramingResult(out, index.astype(np.int64), track.no_face, 0.0)


def inception_input(frames: np.ndarray, preprocess: str = "pytorch-fid") -> torch.Tensor:
    """``(N, H, W, 3)`` uint8 RGB -> ``(N, 3, 299, 299)`` float32 in [0, 1].

    ``"pytorch-fid"``: pytorch-fid's exact input: the whole frame as ``ToTensor`` makes it
    (``uint8 / 255`` in float32), ``F.interpolate(size=(299, 299), mode="bilinear",
    align_corners=False)`` without antialiasing (its ``InceptionV3.forward``; done here one
    frame at a time, which is the same per-image operation, so 1080p clips fit in memory;
    the network's own resize is then the identity). ``"center-crop"``: the centre square,
    antialiased resize (asccl before pytorch-fid's procedure became the default)."""
    if preprocess == "center-crop":
        return square_resize(frames, INCEPTION_SIZE) / 255.0
    if preprocess != "pytorch-fid":
        raise ValueError(f"fid_preprocess must be one of {FID_PREPROCESS}, got {preprocess!r}")
    out = torch.empty((len(frames), 3, INCEPTION_SIZE, INCEPTION_SIZE))
    for i, frame in enumerate(frames):
        x = torch.from_numpy(np.ascontiguousarray(frame)).permute(2, 0, 1)[None].float() / 255
        out[i] = F.interpolate(
            x, size=(INCEPTION_SIZE, INCEPTION_SIZE), mode="bilinear", align_corners=False
        )[0]
    return out


# ------------------------------------------------------------------------------ captions


FRAMING_WORDS = {
    "csim": {
        "track": "ArcFace on 5-point aligned 112x112 faces (insightface norm_crop)",
        "center": "ArcFace on the centre square resized to 112 (not aligned)",
        "none": "ArcFace on the frames resized to 112 (given as aligned crops)",
    },
    "lse": {
        "track": "syncnet_python face-track crops (crop_scale {cs}, 224, 25 fps)",
        "center": "SyncNet on the centre square resized to 224, 25 fps (no face track)",
        "none": "SyncNet on the frames resized to 224, 25 fps (given as face crops)",
    },
}
#: appended to the LSE caption with ``lse_codecs`` on
LSE_CODEC_WORDS = (
    "; frames, crops and audio through syncnet_python's run_pipeline codecs (MPEG-4 and JPEG "
    "q 2 frames, OpenCV XVID crop video, MJPEG at FFmpeg's defaults, MP3 audio)"
)
#: appended to the LSE caption with ``lse_codecs`` off
LSE_CLEAN_WORDS = "; clean frames and audio (syncnet_python's codec steps left out)"
FID_WORDS = {
    "pytorch-fid": "pytorch-fid (whole frame, bilinear to 299x299, no antialias)",
    "center-crop": "centre square, antialiased resize to 299 (not pytorch-fid's)",
}


def describe(
    framing_csim: str,
    framing_lse: str,
    fid_preprocess: str,
    crop_scale: float,
    landmark_backend: str,
    lse_codecs: bool = True,
    lse_ffmpeg: str = "4-6",
) -> dict[str, str]:
    """Per metric (``fid``, ``fad``, ``csim``, ``lse``), the words a table caption uses for
    its input procedure (``lse_codecs``: ``EvalConfig``'s, named in LSE's words)."""
    marks = f", {landmark_backend} landmarks"
    csim = FRAMING_WORDS["csim"][framing_csim] + (marks if framing_csim == "track" else "")
    lse = FRAMING_WORDS["lse"][framing_lse].format(cs=crop_scale)
    lse += marks if framing_lse == "track" else ""
    lse += LSE_CODEC_WORDS if lse_codecs else LSE_CLEAN_WORDS
    lse += f"; 25 fps images as ffmpeg {lse_ffmpeg} makes them"
    return {"fid": FID_WORDS[fid_preprocess], "fad": csim, "csim": csim, "lse": lse}
