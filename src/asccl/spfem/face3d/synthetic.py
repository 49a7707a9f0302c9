"""A synthetic, face-like FLAME-format model: for tests, examples, benchmarks and figures.

Not FLAME: an ellipsoidal head (about FLAME's size, metres, y up, looking along +z) with a nose,
brow, eye sockets and a mouth groove, random smooth shape and expression blend shapes, FLAME's
five joints (global, neck, jaw, eyes) and a jaw that opens the lower face. The arrays have
exactly the keys and layouts of a converted FLAME file (:data:`~asccl.spfem.face3d.convert.
FLAME_KEYS`), so everything that runs on it runs on the real model.
"""

from __future__ import annotations

import numpy as np

from asccl.spfem.face3d.flame import FLAME

#: Grid giving FLAME's size: 70 x 72 -> 5042 vertices, 10080 faces (FLAME: 5023, 9976).
FLAME_SIZED_GRID = (70, 72)


def head_mesh(n_lat: int, n_lon: int) -> tuple[np.ndarray, np.ndarray]:
    """A closed face-like head: ``(V, 3)`` vertices (metres), ``(F, 3)`` outward CCW faces.

    ``V = n_lat * n_lon + 2``, ``F = 2 * n_lon * n_lat``.
    """
    if n_lat < 2 or n_lon < 3:
        raise ValueError(f"need n_lat >= 2 and n_lon >= 3, got {n_lat}, {n_lon}")
    theta = np.linspace(0, np.pi, n_lat + 2)[1:-1]  # polar angle from +y
    phi = np.linspace(-np.pi, np.pi, n_lon, endpoint=False)  # 0 = front (+z)
    t, p = np.meshgrid(theta, phi, indexing="ij")
    unit = np.stack([np.sin(t) * np.sin(p), np.cos(t), np.sin(t) * np.cos(p)], -1).reshape(-1, 3)
    unit = np.concatenate([unit, [[0, 1, 0], [0, -1, 0]]])
    radii = np.array([0.075, 0.1, 0.09])
    verts = unit * radii
    x, y, z = verts.T
    front = 1 / (1 + np.exp(-z / 0.015))

    def bump(cx: float, cy: float, sx: float, sy: float) -> np.ndarray:
        return np.exp(-(((x - cx) / sx) ** 2) - ((y - cy) / sy) ** 2) * front

    relief = (
        0.025 * bump(0, -0.005, 0.012, 0.03)  # nose
        + 0.005 * bump(0, 0.035, 0.035, 0.01)  # brow
        - 0.010 * (bump(-0.03, 0.02, 0.014, 0.01) + bump(0.03, 0.02, 0.014, 0.01))  # eyes
        - 0.006 * bump(0, -0.045, 0.025, 0.004)  # mouth groove
        + 0.006 * bump(0, -0.075, 0.025, 0.012)  # chin
    )
    verts = verts + unit * relief[:, None]
    faces = []
    ring = lambda i, j: i * n_lon + j % n_lon  # noqa: E731
    for i in range(n_lat - 1):
        for j in range(n_lon):
            a, b, c, d = ring(i, j), ring(i, j + 1), ring(i + 1, j), ring(i + 1, j + 1)
            faces += [(a, c, b), (b, c, d)]
    top, bottom = n_lat * n_lon, n_lat * n_lon + 1
    for j in range(n_lon):
        faces.append((top, ring(0, j), ring(0, j + 1)))
        faces.append((bottom, ring(n_lat - 1, j + 1), ring(n_lat - 1, j)))
    faces = np.asarray(faces, dtype=np.int64)
    tri = verts[faces]
    normals = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    if np.sum(normals * tri.mean(1)) < 0:  # make the winding outward, counter-clockwise
        faces = faces[:, [0, 2, 1]]
    return verts, faces


def synthetic_flame_arrays(
    n_lat: int = 24,
    n_lon: int = 24,
    *,
    shape_total: int = 20,
    exp_total: int = 10,
    seed: int = 0,
) -> dict[str, np.ndarray]:
    """FLAME-format arrays (float64; ``f``/``kintree_table`` int64) for a synthetic head.

    ``shapedirs`` is ``(V, 3, shape_total + exp_total)``: smooth random radial fields, the
    expression ones confined to the front of the lower and mid face.
    """
    rng = np.random.default_rng(seed)
    verts, faces = head_mesh(n_lat, n_lon)
    num_verts = len(verts)
    x, y, z = verts.T
    normal = verts / np.linalg.norm(verts, axis=1, keepdims=True)
    front = 1 / (1 + np.exp(-z / 0.015))
    lower = 1 / (1 + np.exp((y - 0.04) / 0.01))  # expressions fade out above the brow

    def smooth_fields(count: int, scale: float) -> np.ndarray:
        k = rng.normal(0, 25, (count, 3))
        phase = rng.uniform(0, 2 * np.pi, count)
        field = np.cos(verts @ k.T + phase) * scale  # (V, count)
        return normal[:, :, None] * field[:, None, :]  # (V, 3, count)

    shapedirs = np.concatenate(
        [
            smooth_fields(shape_total, 0.004),
            smooth_fields(exp_total, 0.003) * (front * lower)[:, None, None],
        ],
        -1,
    )
    posedirs = smooth_fields(36, 0.001)

    def ring_regressor(level: float) -> np.ndarray:
        """Uniform weights on the vertices nearest a height: their centroid is on the axis."""
        near = np.abs(y - level) <= np.sort(np.abs(y - level))[min(num_verts - 1, 2 * n_lon)]
        row = near.astype(np.float64)
        return row / row.sum()

    def patch_regressor(cx: float, cy: float) -> np.ndarray:
        dist = (x - cx) ** 2 + (y - cy) ** 2 + 10 * (z < 0)
        row = np.zeros(num_verts)
        row[np.argsort(dist)[:4]] = 0.25
        return row

    j_regressor = np.stack(
        [
            ring_regressor(-0.09),  # global (root)
            ring_regressor(-0.08),  # neck
            ring_regressor(-0.01),  # jaw
            patch_regressor(-0.03, 0.02),  # left eye
            patch_regressor(0.03, 0.02),  # right eye
        ]
    )
    jaw = 1 / (1 + np.exp((y + 0.045) / 0.006)) * front
    weights = np.zeros((num_verts, 5))
    weights[:, 2] = jaw
    weights[:, 1] = 1 - jaw
    kintree = np.array([[4294967295, 0, 1, 1, 1], [0, 1, 2, 3, 4]], dtype=np.int64)
    return {
        "v_template": verts,
        "shapedirs": shapedirs,
        "posedirs": posedirs,
        "J_regressor": j_regressor,
        "kintree_table": kintree,
        "weights": weights,
        "f": faces,
    }


def synthetic_flame(
    n_lat: int = 24,
    n_lon: int = 24,
    *,
    n_shape: int = 10,
    n_exp: int = 10,
    shape_total: int = 20,
    exp_total: int = 10,
    seed: int = 0,
) -> FLAME:
    """A :class:`FLAME` on :func:`synthetic_flame_arrays` (``FLAME_SIZED_GRID`` for full size)."""
    arrays = synthetic_flame_arrays(
        n_lat, n_lon, shape_total=shape_total, exp_total=exp_total, seed=seed
    )
    return FLAME(arrays, n_shape=n_shape, n_exp=n_exp, shape_total=shape_total)
