"""Animation: a :class:`~asccl.data.synth.faces.Face` moved by its landmarks, frame by frame.

Each frame's 68 landmarks are the face's rest pose plus the emotion's expression (with a
slow wobble), the mouth's opening and width, blinks, and a head pose (roll, scale, shift);
a thin-plate spline through the landmarks (and a ring of fixed anchors) warps the still
image, and the inside of the open mouth (cavity, upper teeth) is painted over the warp.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from asccl.data.opencv import cv2
from asccl.data.synth.expressions import (
    EXPRESSIONS,
    LEVEL_SCALE,
    LID_BELOW_UP,
    LID_UP,
    MOUTH,
    MOUTH_OPEN,
    MOUTH_ROUND,
    MOUTH_SPREAD,
    action_offsets,
)
from asccl.data.synth.faces import Face


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


def map_nodes(g: int, size: int) -> tuple[np.ndarray, np.ndarray]:
    """The output pixels (y, x), each (g, g), where the coarse backward map is evaluated:
    node k at pixel k * (size - 1) / (g - 1), the first and last nodes on the frame's
    first and last pixel centres (what :func:`upsample_map` reads)."""
    gy, gx = np.mgrid[0:g, 0:g] * ((size - 1) / (g - 1))
    return gy, gx


def _bilinear_weights(size: int, g: int) -> np.ndarray:
    """(size, g): pixel j's linear weights on the nodes of :func:`map_nodes` (j sits at node
    coordinate j * (g - 1) / (size - 1), between nodes floor and floor + 1)."""
    u = np.arange(size) * ((g - 1) / (size - 1))
    k = np.minimum(np.floor(u).astype(int), g - 2)
    w = np.zeros((size, g))
    w[np.arange(size), k] = k + 1 - u
    w[np.arange(size), k + 1] = u - k
    return w


def upsample_map(coarse: np.ndarray, size: int) -> np.ndarray:
    """A (g, g) map sampled at :func:`map_nodes` -> (size, size) float32, bilinear between
    the nodes. Every pixel lies inside the nodes (no extrapolation, no clamped border band),
    and a map linear in the pixel coordinates comes back exact: cv2.resize, whose pixel
    centres sit half a node inside the grid's edges, would shift and stretch this map."""
    w = _bilinear_weights(size, coarse.shape[0])
    return (w @ np.asarray(coarse, np.float64) @ w.T).astype(np.float32)


@dataclass
class Pose:
    """Per-frame head pose: roll (radians), scale, shift (output pixels)."""

    roll: np.ndarray
    scale: np.ndarray
    shift: np.ndarray  #: (n, 2)


def head_motion(
    n: int,
    opening: np.ndarray,
    emotion: str,
    rng: np.random.Generator,
    fps: float = 30,
    size: int = 256,
) -> Pose:
    """Slow random sways (roll +-2 deg, shift +-3 px, scale +-1.2 %), a nod with the speech
    and a per-emotion posture (sad: head down; surprised: up; angry: closer); pixel
    amounts are those of a 256-pixel frame, scaled to ``size``."""
    t = np.arange(n) / fps
    f = rng.uniform(0.15, 0.45, 4)
    ph = rng.uniform(0, 2 * np.pi, 4)
    roll = np.deg2rad(2.0 * np.sin(2 * np.pi * f[0] * t + ph[0]))
    scale = 1 + 0.012 * np.sin(2 * np.pi * f[1] * t + ph[1])
    dx = 3.0 * np.sin(2 * np.pi * f[2] * t + ph[2])
    dy = 2.0 * np.sin(2 * np.pi * f[3] * t + ph[3]) + 2.0 * opening
    dy += {"sad": 4.0, "surprised": -3.0, "angry": 1.0}.get(emotion, 0.0)
    scale *= {"angry": 1.02, "sad": 0.99}.get(emotion, 1.0)
    shift = np.stack([dx, dy], 1)
    return Pose(roll, scale, shift if size == 256 else shift * (size / 256))


def blinks(n: int, rng: np.random.Generator, fps: float = 30) -> np.ndarray:
    """Eye closure in [0, 1] per frame: a blink (five frames) every ~2.5 s."""
    out = np.zeros(n)
    profile = np.array([0.4, 0.9, 1.0, 0.6, 0.2])
    rate = fps / 30
    i = round(int(rng.integers(6, 40)) * rate)
    while i + len(profile) < n:
        out[i : i + len(profile)] = profile
        i += round(int(rng.integers(45, 110)) * rate)
    return out


def render_clip(
    face: Face,
    track: np.ndarray,
    width: np.ndarray,
    emotion: str,
    level: int,
    rng: np.random.Generator,
    *,
    size: int = 256,
    fps: float = 30,
) -> tuple[np.ndarray, np.ndarray]:
    """Animate ``face``: frames (n, size, size, 3) uint8 RGB and their landmarks (n, 68, 2)
    float64 in output pixels.

    ``track``: speech articulation (mouth opening) in [0, 1] per frame, (n,); the emotion
    scales it and adds its jaw drop. ``width``: lip spread (+1) to rounding (-1) per frame,
    (n,). ``emotion``/``level``: the expression and its MEAD intensity. ``rng`` draws the
    head motion, blinks and the expression's wobble (in that order).
    """
    n = len(track)
    gain, jaw_drop = MOUTH[emotion]
    s = LEVEL_SCALE[level]
    gain, jaw_drop = 1 + s * (gain - 1), s * jaw_drop
    opening = np.clip(gain * np.asarray(track) + jaw_drop, 0, 1.3)
    pose = head_motion(n, opening, emotion, rng, fps, size)
    blink = blinks(n, rng, fps)
    rest, unit = face.rest_pts, face.unit
    mid = rest[27:31, 0].mean()
    expr = action_offsets(EXPRESSIONS[emotion], mid, rest, unit) * s
    wobble = 1 + 0.06 * np.sin(2 * np.pi * rng.uniform(0.1, 0.3) * np.arange(n) / fps)
    mouth = action_offsets(MOUTH_OPEN, mid, rest, unit)
    spread = action_offsets(MOUTH_SPREAD, mid, rest, unit)
    rounded = action_offsets(MOUTH_ROUND, mid, rest, unit)
    width = np.asarray(width, np.float64)
    ctrl_src = np.concatenate([face.src_pts, face.anchors]) / unit

    g = 33  # coarse grid of the backward map, upsampled to full resolution (upsample_map)
    gy, gx = map_nodes(g, size)
    grid = np.stack([gx.ravel(), gy.ravel()], 1)
    src = np.ascontiguousarray(face.image)
    frames = np.empty((n, size, size, 3), np.uint8)
    marks = np.empty((n, 68, 2))
    zoom = size / face.crop
    for i in range(n):
        pts = rest + expr * wobble[i] + mouth * opening[i]
        if width[i] != 0:  # zero width: the demo data's loudness-only mouth
            pts = pts + (spread if width[i] > 0 else rounded) * abs(width[i])
        lid = (pts[LID_BELOW_UP, 1] - pts[LID_UP, 1]) * 0.85 * blink[i]  # upper lids down
        pts[LID_UP, 1] += lid
        # source -> output similarity: rotate/scale about the crop centre, then shift
        c, si = np.cos(pose.roll[i]), np.sin(pose.roll[i])
        rot = np.array([[c, -si], [si, c]]) * pose.scale[i] * zoom
        off = size / 2 + pose.shift[i]
        marks[i] = (pts - face.centre) @ rot.T + off
        # backward map: output grid -> animated source coords -> still-image coords
        coef = tps_solve(np.concatenate([pts, face.anchors]) / unit, ctrl_src)
        back = (grid - off) @ np.linalg.inv(rot).T + face.centre
        mapped = tps_apply(coef, np.concatenate([pts, face.anchors]) / unit, back / unit) * unit
        mx = upsample_map(mapped[:, 0].reshape(g, g), size)
        my = upsample_map(mapped[:, 1].reshape(g, g), size)
        frame = cv2.remap(src, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
        frames[i] = paint_mouth(frame, marks[i], face, zoom, size)
    return frames, marks


def paint_mouth(
    frame: np.ndarray, pts: np.ndarray, face: Face, zoom: float, size: int = 256
) -> np.ndarray:
    """Paint the inside of the open mouth (between the inner lips): a dark cavity with the
    upper teeth showing below the upper lip."""
    inner = pts[60:68]
    if np.ptp(inner[:, 1]) < 1.0:
        return np.clip(frame, 0, 255).astype(np.uint8)
    x0, y0 = np.floor(inner.min(0)).astype(int) - 3
    x1, y1 = np.ceil(inner.max(0)).astype(int) + 4
    x0, y0 = max(x0, 0), max(y0, 0)
    x1, y1 = min(x1, size), min(y1, size)
    if x1 <= x0 or y1 <= y0:
        return np.clip(frame, 0, 255).astype(np.uint8)
    sub = frame[y0:y1, x0:x1]
    off = np.array([x0, y0])
    ss = 4  # drawn supersampled, then area-averaged: output pixel j is the mean of
    # supersampled pixels j*ss .. j*ss + ss - 1, so output point p is drawn at (p + 0.5) * ss - 0.5

    def fixed(p: np.ndarray) -> np.ndarray:  # supersampled, cv2's 4 fractional bits
        return np.round(((p - off + 0.5) * ss - 0.5) * 16).astype(np.int32)

    mask = np.zeros(((y1 - y0) * ss, (x1 - x0) * ss), np.float32)
    cv2.fillPoly(mask, [fixed(inner)], 1.0, cv2.LINE_AA, 4)
    teeth = np.zeros_like(mask)
    upper = pts[[60, 61, 62, 63, 64]]
    depth = 0.09 * face.unit * zoom
    band = np.concatenate([upper, (upper + np.array([0.0, depth]))[::-1]])
    cv2.fillPoly(teeth, [fixed(band)], 1.0, cv2.LINE_AA, 4)
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
