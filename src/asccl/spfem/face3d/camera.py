"""Cameras: 3D vertices -> normalised image coordinates plus depth, as DECA and Deep3DFaceRecon do.

Both return ``(B, V, 3)`` *screen* coordinates ``(x, y, depth)``: ``x`` in [-1, 1] from the
left to the right edge of the image, ``y`` in [-1, 1] from the top to the bottom edge (image
rows grow downwards), ``depth`` growing away from the camera (only its order matters). The
renderer maps them to pixels: ``col = (x + 1) W / 2``, ``row = (y + 1) H / 2``, pixel
``(i, j)`` covering ``[j, j + 1) x [i, i + 1)`` with its centre at ``(j + 0.5, i + 0.5)``.
:func:`to_pixels` does that mapping.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


def orthographic_project(vertices: Tensor, camera: Tensor) -> Tensor:
    """DECA's weak-perspective camera (``decalib/utils/util.py: batch_orth_proj``).

    DECA computes ``s * (X[:, :2] + t)`` (and ``s * Z``), then flips y and z
    (``trans_verts[:, :, 1:] = -trans_verts[:, :, 1:]`` in ``decalib/deca.py``) so that
    ``(x, y)`` are normalised image coordinates in [-1, 1] with y downwards; landmarks in
    pixels are ``x * size / 2 + size / 2``.

    Args:
        vertices: ``(B, V, 3)`` in FLAME's frame (y up, face looking along +z).
        camera: ``(B, 3)`` DECA's ``cam`` code ``[s, tx, ty]``.

    Returns:
        ``(B, V, 3)`` screen coordinates ``(s (X + tx), -s (Y + ty), -s Z)``.
    """
    if camera.ndim != 2 or camera.shape[1] != 3 or camera.shape[0] != vertices.shape[0]:
        raise ValueError(f"camera must be (B, 3) = [s, tx, ty], got {tuple(camera.shape)}")
    scale = camera[:, None, :1]
    x = scale[..., 0] * (vertices[..., 0] + camera[:, None, 1])
    y = -scale[..., 0] * (vertices[..., 1] + camera[:, None, 2])
    depth = -scale[..., 0] * vertices[..., 2]
    return _stack(x, y, depth)


@dataclass(frozen=True)
class PerspectiveCamera:
    """Deep3DFaceRecon_pytorch's pinhole camera (``models/bfm.py``: ``to_camera``, ``to_image``).

    The camera sits at ``z = distance`` looking down -z: camera depth ``d - Z``, image-plane
    coordinates ``u = f X / (d - Z) + c`` and ``v = f Y / (d - Z) + c`` with v upwards ("y
    direction is opposite to v direction"), so the image row is ``2c - v``. The image is
    ``2c`` pixels wide (224 for the defaults).

    Attributes:
        focal: focal length in pixels of the ``2 * center`` image (Deep3DFaceRecon: 1015).
        center: principal point in pixels, both axes (112).
        distance: camera distance from the origin (10, BFM units: decimetres).
    """

    focal: float = 1015.0
    center: float = 112.0
    distance: float = 10.0

    def project(self, vertices: Tensor) -> Tensor:
        """``(B, V, 3)`` world points -> ``(B, V, 3)`` screen ``((u - c)/c, (c - v)/c, d - Z)``."""
        depth = self.distance - vertices[..., 2]
        x = self.focal * vertices[..., 0] / depth / self.center
        y = -self.focal * vertices[..., 1] / depth / self.center
        return _stack(x, y, depth)


def to_pixels(screen: Tensor, height: int, width: int) -> Tensor:
    """Screen ``(..., 3)`` -> ``(..., 3)`` ``(column, row, depth)`` in pixel units."""
    col = (screen[..., 0] + 1) * (width / 2)
    row = (screen[..., 1] + 1) * (height / 2)
    return _stack(col, row, screen[..., 2])


def _stack(x: Tensor, y: Tensor, z: Tensor) -> Tensor:
    return torch.stack([x, y, z], -1)
