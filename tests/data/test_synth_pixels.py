"""The synthetic data's landmarks sit on their pixels: OpenCV's pixel-centre convention
(pixel i covers [i - 0.5, i + 0.5]) through the drawing canvas, the mouth painter, the
resize of a still image and the warp's upsampled backward map (recipe synth-2).

Each check draws a feature whose centre is known (a Gaussian dot, a disc, a symmetric
polygon) through one path and compares its intensity-weighted centroid with the landmark
that path records. On the synth-1 code each failed by 0.25-0.375 px (a half-pixel
convention slip) or by a 1.5 % stretch about the frame centre (the backward map)."""

from __future__ import annotations

import numpy as np
import pytest

from asccl.data.opencv import cv2
from asccl.data.synth.faces import Face, _Canvas, scaled_face
from asccl.data.synth.render import map_nodes, paint_mouth, render_clip, upsample_map

BLACK = (0, 0, 0)


def _centroid(img: np.ndarray) -> np.ndarray:
    """Intensity-weighted centroid (x, y) of a 2-D image, pixel i at coordinate i."""
    yy, xx = np.mgrid[0 : img.shape[0], 0 : img.shape[1]]
    w = img.astype(np.float64)
    return np.array([(w * xx).sum(), (w * yy).sum()]) / w.sum()


def _window(img: np.ndarray, c: np.ndarray, r: int) -> tuple[np.ndarray, np.ndarray]:
    """The (2r+1)^2 window of ``img`` around round(c) and its pixels' (x, y) offsets."""
    x0, y0 = np.round(c).astype(int)
    win = img[y0 - r : y0 + r + 1, x0 - r : x0 + r + 1].astype(np.float64)
    yy, xx = np.mgrid[y0 - r : y0 + r + 1, x0 - r : x0 + r + 1]
    return win, np.stack([xx, yy], -1).astype(np.float64)


def _dots(shape: tuple[int, int], pts: np.ndarray, sigma: float, peak: float = 200.0):
    """A float32 RGB image, black but for Gaussian dots (std ``sigma``) centred on ``pts``."""
    yy, xx = np.mgrid[0 : shape[0], 0 : shape[1]]
    img = sum(np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / (2 * sigma**2)) for x, y in pts)
    return np.repeat((peak * img)[..., None], 3, -1).astype(np.float32)


def _uint8_centroid(img: np.ndarray, c: np.ndarray, r: int) -> tuple[np.ndarray, np.ndarray]:
    """Centroid of a uint8 dot near ``c`` and its bound from the frames' truncation to uint8
    (``astype``: each pixel loses [0, 1) grey levels). Adding 0.5 back leaves an error of at
    most 1/2 per pixel, which moves the centroid by at most sum(|x - c|) / 2 / sum(w) per
    axis over the window."""
    win, pos = _window(img, c, r)
    w = win + 0.5 * (win > 0)  # the background is exactly 0: no truncation there
    got = (w[..., None] * pos).sum((0, 1)) / w.sum()
    bound = 0.5 * (np.abs(pos - c) * (win > 0)[..., None]).sum((0, 1)) / w.sum()
    return got, bound


# ------------------------------------------------------------------------- the canvas


def test_canvas_grid_and_drawing_use_the_output_pixel_centres():
    """Area downsampling by ss = 4 averages supersampled pixels 4j..4j+3, whose grid values
    (i + 0.5) / 4 - 0.5 average to exactly j: the canvas' own grid comes back as the pixel
    indices (float32 rounding only).

    Shapes: cv2 anti-aliases only 8-bit images, so these float masks are filled by whole
    supersampled pixels, each edge placed to within half of one: 1/8 output px. Blurred
    (std 1 px, symmetric), a disc and a square centred on a supersampled pixel centre
    ((i + 0.5) / 4 - 0.5) are symmetric on the canvas grid and smooth, which the area
    downsampling (a box filter, then sampling: aliasing ~exp(-2 pi^2) ~ 3e-9) keeps
    centred; 1e-3 allows the disc's polygon vertices, rounded to 1/16 canvas px. Centred
    anywhere else they come back within the rasteriser's 1/8 px. The synth-1 canvas put
    them 0.375 px up-left (over 1/4 px off beyond the rounding: both checks fail on it)."""
    cv = _Canvas(24, 4, BLACK, BLACK)
    cv.paint(np.ones_like(cv.xx), np.stack([cv.xx, cv.yy, np.zeros_like(cv.xx)], -1))
    out = cv.result()
    jy, jx = np.mgrid[0:24, 0:24]
    assert np.abs(out[..., 0] - jx).max() < 1e-4 and np.abs(out[..., 1] - jy).max() < 1e-4

    square = np.array([[-3, -3], [3, -3], [3, 3], [-3, 3]])
    on_grid = (np.array([47, 38]) + 0.5) / 4 - 0.5  # (11.375, 9.125)
    cases = [(on_grid, 1e-3), (on_grid + 0.5, 1e-3), (np.array([11.3, 9.6]), 1 / 8),
             (np.array([12.45, 10.2]), 1 / 8)]  # fmt: skip
    for centre, tol in cases:
        for disc in (True, False):
            cv = _Canvas(24, 4, BLACK, BLACK)
            shape = (
                cv.ellipse(centre, (3, 3), blur=1) if disc else cv.polygon(centre + square, blur=1)
            )
            cv.paint(shape, 1.0)
            err = _centroid(cv.result()[..., 0]) - centre
            assert np.abs(err).max() <= tol, (disc, centre, err)


def test_mouth_cavity_is_painted_inside_its_lip_landmarks():
    """paint_mouth fills the inner-lip polygon (60-67) at 4x and area-downsamples it: a
    black cavity (teeth black too) painted into a white frame darkens the pixels by
    255 * mask, whose centroid is the polygon's (a regular octagon, symmetric; the blur
    is symmetric), within the uint8 truncation bound plus 1/8 px (the float mask is filled
    by whole 4x pixels, as the canvas'). The synth-1 painter drew it 0.375 px up-left."""
    centre = np.array([20.3, 21.6])
    ang = np.arange(8) * np.pi / 4 + np.pi / 8
    pts = np.zeros((68, 2))
    pts[60:68] = centre + np.stack([4.0 * np.cos(ang), 3.0 * np.sin(ang)], 1)
    face = Face(np.zeros((8, 8, 3), np.float32), pts, pts, 10.0, centre, 40.0, BLACK, BLACK)
    frame = np.full((40, 40, 3), 255.0, np.float32)
    out = paint_mouth(frame, pts, face, zoom=1.0, size=40)
    dark = 255 - out[..., 0].astype(np.float64)
    got, bound = _uint8_centroid(dark, centre, 7)
    assert (np.abs(got - centre) <= bound + 1 / 8).all(), (got - centre, bound)


# -------------------------------------------------------------------- the still image


@pytest.mark.parametrize("factor", [0.5, 0.3])
def test_scaled_face_moves_landmarks_with_its_pixels(factor):
    """cv2's area resize averages each output pixel's footprint, a box centred on input
    (j + 0.5) / factor - 0.5: a box filter keeps a dot's centroid, and sampling the
    filtered dot (std >= 1.5 output px: aliasing ~exp(-2 pi^2 1.5^2) ~ 1e-19) keeps it
    too, so the dot lands on (p + 0.5) * factor - 0.5, where the scaled landmarks must be
    (synth-1's p * factor is 0.25 px off at 1/2, 0.35 px at 0.3). Float images: 1e-3."""
    pts = np.array([[60.3, 50.7], [130.2, 55.1], [95.5, 140.4]])
    image = _dots((200, 200), pts[:1], 1.5 / factor)
    face = Face(image, pts, pts + 1.0, 40.0, np.array([99.5, 99.5]), 160.0)
    small = scaled_face(face, factor)
    got = _centroid(small.image[..., 0])
    assert np.abs(got - small.src_pts[0]).max() < 1e-3, (got, small.src_pts[0])
    # the rest pose and the crop centre move alike; lengths only scale
    s = np.array([small.image.shape[1] / 200, small.image.shape[0] / 200])
    assert np.allclose(small.rest_pts, (pts + 1.5) * s - 0.5)
    assert np.allclose(small.centre, 100 * s - 0.5)
    assert small.unit == pytest.approx(40.0 * s[0]) and small.crop == pytest.approx(160.0 * s[0])


# ------------------------------------------------------------------ the warp and frame


def test_upsampled_backward_map_is_exact_on_linear_maps():
    """upsample_map reads the coarse map bilinearly at each pixel's node coordinate, so a
    map linear in the pixel coordinates comes back exact at every pixel, borders included
    (float32: 1e-4 on values < 100); a curved one within the bilinear bound h^2 / 8 *
    max|f''| per axis (h = 63/32 px between nodes). cv2.resize of the same nodes (the
    synth-1 upsampling) is off by ~0.5 px at the frame's edges."""
    size, g = 64, 33
    gy, gx = map_nodes(g, size)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    linear = lambda x, y: 3.0 + 0.9 * x - 0.2 * y  # noqa: E731
    assert np.abs(upsample_map(linear(gx, gy), size) - linear(xx, yy)).max() < 1e-4
    curved = lambda x, y: (x - 30) ** 2 / 200 + (y - 20) ** 2 / 100  # noqa: E731
    h = (size - 1) / (g - 1)
    bound = h**2 / 8 * (2 / 200 + 2 / 100) + 1e-4
    assert np.abs(upsample_map(curved(gx, gy), size) - curved(xx, yy)).max() <= bound
    old = cv2.resize(linear(gx, gy).astype(np.float32), (size, size))
    assert np.abs(old - linear(xx, yy)).max() > 0.3


@pytest.fixture(scope="module")
def drawn_face():
    """Speaker 1's (M902) face for 64-pixel frames: its landmarks and geometry."""
    pytest.importorskip("dlib")
    pytest.importorskip("skimage")
    from asccl.data.synth.dataset import speaker_face

    return speaker_face(1, 64)


#: Landmarks spread over the face (jaw, brows, nose, eye and mouth corners, lips).
SPREAD = [0, 8, 16, 19, 24, 30, 33, 36, 39, 42, 45, 48, 51, 54, 57]


def test_rendered_frames_put_each_landmark_on_its_pixels(drawn_face):
    """A face whose still image is black but for a dot on one landmark is animated
    (neutral, mouth closed; head roll, scale and shift): the dot's centroid in each frame
    is that frame's recorded landmark. With rest = source landmarks the warp is the head
    pose's similarity (a thin-plate spline through similar point sets bends nothing), which
    keeps a dot's centroid; upsample_map is exact on it (test above) and bilinear remap of
    a dot of 1.2 px std keeps its centroid (its weights' centroid is the sample offset);
    what is left is the frames' uint8 truncation (its bound, per dot) plus 0.01 px. The
    synth-1 map stretched the frame 1.5 % about its centre (0.3 px at 20 px from it).

    (Under an expression the warp bends: a dot's centroid then moves off its landmark by
    up to ~0.7 px at 64 px, the dot's own distortion, while the spline still maps each
    landmark onto its source point to 0.002 px: this test keeps the warp straight.)"""
    base, n = drawn_face, 3
    for k in SPREAD:
        image = _dots(base.image.shape[:2], base.src_pts[[k]], 1.2)
        face = Face(image, base.src_pts, base.rest_pts, base.unit, base.centre, base.crop,
                    BLACK, BLACK)  # fmt: skip
        frames, marks = render_clip(face, np.zeros(n), np.zeros(n), "neutral", 1,
                                    np.random.default_rng(k), size=64)  # fmt: skip
        for i in range(n):
            got, bound = _uint8_centroid(frames[i, ..., 0], marks[i, k], 4)
            assert (np.abs(got - marks[i, k]) <= bound + 0.01).all(), (k, i, got - marks[i, k])


def test_astronaut_scaled_then_rendered_keeps_its_landmarks_on_their_pixels(monkeypatch):
    """The astronaut's path at 64 px: scaled_face (area resize by ~0.3), then the warp.
    With its rest pose set to its source landmarks (the warp straight, as above) and the
    mouth painter off (the photo's mouth is open: the painter would cover the dots near
    it; it has its own test), a dot on every landmark of SPREAD comes back on the recorded
    landmark within the uint8 bound plus 0.01 px (synth-1: 0.3-0.5 px, the resize's corner
    convention plus the map's stretch)."""
    pytest.importorskip("dlib")
    pytest.importorskip("skimage")
    import asccl.data.synth.render as render
    from asccl.data.synth.dataset import _astronaut_landmarks
    from asccl.data.synth.faces import astronaut_face

    monkeypatch.setattr(
        render, "paint_mouth", lambda f, *a, **k: np.clip(f, 0, 255).astype(np.uint8)
    )
    raw = astronaut_face(_astronaut_landmarks())
    factor = 64 / raw.crop
    assert factor < 0.8  # speaker_face scales it for 64-pixel frames
    for k in SPREAD:
        image = _dots(raw.image.shape[:2], raw.src_pts[[k]], 1.2 / factor)
        face = Face(image, raw.src_pts, raw.src_pts, raw.unit, raw.centre, raw.crop,
                    BLACK, BLACK)  # fmt: skip
        face = scaled_face(face, factor)
        frames, marks = render.render_clip(face, np.zeros(2), np.zeros(2), "neutral", 1,
                                           np.random.default_rng(k), size=64)  # fmt: skip
        for i in range(2):
            got, bound = _uint8_centroid(frames[i, ..., 0], marks[i, k], 4)
            assert (np.abs(got - marks[i, k]) <= bound + 0.01).all(), (k, i, got - marks[i, k])
