"""Faces: a still image, its 68 landmarks, and how it is drawn.

:class:`Face` is a still image animated by moving its landmarks (see
:mod:`asccl.data.synth.render`). Two kinds: scikit-image's public-domain astronaut photo
(NASA), whose landmarks a detector finds (:func:`astronaut_face`), and faces drawn
procedurally from a 68-point configuration with OpenCV (:func:`procedural_face`), shaped and
coloured by a "look" (:data:`LOOKS` for the demo speakers, :func:`random_look` for more).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy.interpolate import CubicSpline

from asccl.data.opencv import cv2
from asccl.data.synth.expressions import (
    CORNERS,
    JAW,
    LID_LOW,
    MIRROR,
    action_offsets,
    eye_distance,
)

#: The demo's drawn speakers: colours (RGB) and shape factors (1 = the template).
LOOKS: dict[str, dict] = {
    "M902": {
        "skin": (170, 116, 84), "hair": (28, 22, 20), "brow": (34, 26, 22),
        "iris": (70, 45, 30), "lips": (146, 82, 74), "cloth": (40, 62, 96),
        "bg_top": (150, 160, 172), "bg_bottom": (104, 114, 126), "long_hair": False,
        "face_width": 1.07, "jaw_width": 1.06, "jaw_length": 1.04, "eye_size": 0.95,
        "brow_thickness": 1.3, "nose_width": 1.12, "nose_length": 1.04,
        "mouth_width": 1.05, "lip_thickness": 0.9, "seed": 2,
    },
    "W903": {
        "skin": (236, 196, 168), "hair": (120, 64, 34), "brow": (96, 58, 36),
        "iris": (64, 104, 138), "lips": (196, 104, 104), "cloth": (126, 40, 62),
        "bg_top": (176, 182, 164), "bg_bottom": (132, 138, 122), "long_hair": True,
        "face_width": 0.95, "jaw_width": 0.94, "jaw_length": 0.98, "eye_size": 1.1,
        "brow_thickness": 0.85, "nose_width": 0.9, "nose_length": 0.96,
        "mouth_width": 0.97, "lip_thickness": 1.2, "seed": 3,
    },
}  # fmt: skip


def random_look(index: int, female: bool) -> dict:
    """A procedural identity for speaker ``index`` (deterministic in ``index`` alone):
    skin, hair, eye and clothing colours and shape factors drawn around the template."""
    rng = np.random.default_rng([0x5EED, index])
    tone = rng.uniform(0, 1)
    skin = np.array([240, 204, 178]) * (1 - tone) + np.array([120, 78, 56]) * tone
    hair = rng.choice([[28, 22, 20], [70, 46, 30], [120, 64, 34], [190, 150, 90], [90, 90, 96]])
    colour = lambda lo, hi: tuple(int(v) for v in rng.integers(lo, hi, 3))  # noqa: E731
    bg = np.array(colour(100, 200))
    factor = lambda spread: float(np.round(1 + rng.uniform(-spread, spread), 3))  # noqa: E731
    return {
        "skin": tuple(int(v) for v in skin), "hair": tuple(int(v) for v in hair),
        "brow": tuple(int(v * 1.1) for v in hair), "iris": colour(40, 140),
        "lips": tuple(int(v) for v in skin * [0.85, 0.55, 0.55]), "cloth": colour(30, 160),
        "bg_top": tuple(int(v) for v in bg), "bg_bottom": tuple(int(v) for v in bg * 0.75),
        "long_hair": bool(female and rng.uniform() < 0.7),
        "face_width": factor(0.07), "jaw_width": factor(0.07), "jaw_length": factor(0.05),
        "eye_size": factor(0.1), "brow_thickness": factor(0.3) * (1.0 if female else 1.2),
        "nose_width": factor(0.12), "nose_length": factor(0.05), "mouth_width": factor(0.06),
        "lip_thickness": factor(0.2), "seed": 100 + index,
    }  # fmt: skip


def astronaut_image() -> np.ndarray:
    """scikit-image's astronaut photo, (512, 512, 3) uint8 RGB."""
    from skimage import data

    return data.astronaut()


def astronaut_landmarks(image: np.ndarray | None = None) -> np.ndarray:
    """The astronaut's (68, 2) landmarks found by dlib (asccl's ``dlib`` backend)."""
    from asccl.data.landmarks import DlibLandmarks

    image = astronaut_image() if image is None else image
    pts = DlibLandmarks().detect(np.ascontiguousarray(image, np.uint8))
    if pts is None:
        raise RuntimeError("dlib found no face in skimage.data.astronaut()")
    return pts.astype(np.float64)


def scaled_face(face: Face, factor: float) -> Face:
    """``face`` with its image resized by ``factor`` (area-averaged), landmarks, D, centre
    and crop scaled to match: a small output frame then samples an image of its own scale
    instead of aliasing a large one."""
    h, w = face.image.shape[:2]
    size = (max(1, round(w * factor)), max(1, round(h * factor)))
    image = cv2.resize(face.image, size, interpolation=cv2.INTER_AREA)
    sx, sy = size[0] / w, size[1] / h
    scale = np.array([sx, sy])

    def moved(p: np.ndarray) -> np.ndarray:  # cv2.resize's pixel centres: x -> (x + .5) s - .5
        return (p + 0.5) * scale - 0.5

    return Face(image, moved(face.src_pts), moved(face.rest_pts), face.unit * sx,
                moved(face.centre), face.crop * sx, face.teeth, face.cavity)  # fmt: skip


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


def astronaut_face(pts: np.ndarray, image: np.ndarray | None = None) -> Face:
    """scikit-image's astronaut (Eileen Collins, NASA, public domain), smile toned down and
    lips closed for the neutral rest pose. ``pts``: the photo's (68, 2) landmarks (found
    by a detector: :func:`astronaut_landmarks`); ``image``: the photo (default: skimage's)."""
    if image is None:
        image = astronaut_image()
    image = np.asarray(image, np.float32)
    pts = np.asarray(pts, np.float64)
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
    and length is given in final pixels. Masks are optionally blurred; cv2 anti-aliases
    only 8-bit images, so these float masks are filled by whole supersampled pixels (each
    edge to within 1/(2 ss) final px) and the area downsampling is the anti-aliasing.

    Pixel centres as OpenCV's: final pixel j covers [j - 0.5, j + 0.5] and is the mean of
    supersampled pixels j*ss .. j*ss + ss - 1 (area downsampling), so final point p is
    supersampled point (p + 0.5) * ss - 0.5 and supersampled pixel i sits at final
    (i + 0.5) / ss - 0.5 (``xx``, ``yy``); lengths (axes, widths, blur) just scale by ss."""

    def __init__(self, side: int, ss: int, top: tuple, bottom: tuple) -> None:
        self.side, self.ss = side, ss
        n = side * ss
        self.yy, self.xx = (np.mgrid[0:n, 0:n].astype(np.float32) + 0.5) / ss - 0.5
        t = (self.yy / side)[..., None]
        self.img = np.array(top, np.float32) * (1 - t) + np.array(bottom, np.float32) * t

    def _fixed(self, pts) -> np.ndarray:  # a point, supersampled, in cv2's 4 fractional bits
        return np.round(((np.asarray(pts, np.float64) + 0.5) * self.ss - 0.5) * 16).astype(np.int32)

    def _fixed_length(self, length) -> np.ndarray:  # a length: scaled, not shifted
        return np.round(np.asarray(length, np.float64) * self.ss * 16).astype(np.int32)

    def _blur(self, m: np.ndarray, blur: float) -> np.ndarray:
        return cv2.GaussianBlur(m, (0, 0), blur * self.ss) if blur > 0 else m

    def polygon(self, pts, blur: float = 0.0) -> np.ndarray:
        m = np.zeros(self.xx.shape, np.float32)
        cv2.fillPoly(m, [self._fixed(pts).reshape(-1, 1, 2)], 1.0, cv2.LINE_AA, 4)
        return self._blur(m, blur)

    def ellipse(self, centre, axes, blur: float = 0.0) -> np.ndarray:
        m = np.zeros(self.xx.shape, np.float32)
        c, a = self._fixed(centre), self._fixed_length(axes)
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


def procedural_face(look: dict, template: np.ndarray, size: int = 256) -> Face:
    """Draw a shaded face from its landmarks with OpenCV: background, long hair, shoulders,
    neck, ears, skin with radial shading and warm cheeks, hair cap, eye sockets, nose,
    lips, eyes (sclera, iris, pupil, highlight, lids), tapered brows, skin mottling.

    ``look``: colours and shape factors (see :data:`LOOKS`); ``template``: (68, 2) in
    units of D (:func:`template_shape`); ``size``: the output frame side it is drawn for.
    """
    unit = 58.0 * size / 256  # D in source pixels: the face spans about half of the frame
    side = round(1.5 * size)  # a margin around the crop for the head motion
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
    blur = 1.5 * size / 256
    img = cv.result() + (cv2.GaussianBlur(noise, (0, 0), blur) * 6)[..., None]
    img = np.clip(img, 0, 255).astype(np.float32)
    return Face(img, pts, pts.copy(), unit, np.array([side / 2, side / 2]), crop=float(size))
