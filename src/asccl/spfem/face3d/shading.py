"""Per-vertex normals and the two geometry-revealing colourings: shaded grey and normal map."""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

ShadingMode = Literal["shaded", "normals"]
SHADING_MODES: tuple[str, ...] = ("shaded", "normals")


def vertex_faces(faces: Tensor, num_vertices: int) -> Tensor:
    """``(V, D)`` the faces around each vertex, padded with ``F`` (an all-zero extra face).

    A gather table instead of ``index_add``: summing face normals through it is deterministic
    on every device.
    """
    num_faces = faces.shape[0]
    flat = faces.reshape(-1)
    face_id = torch.arange(num_faces, device=faces.device).repeat_interleave(3)
    order = torch.argsort(flat, stable=True)
    flat, face_id = flat[order], face_id[order]
    counts = torch.bincount(flat, minlength=num_vertices)
    starts = torch.cumsum(counts, 0) - counts
    slot = torch.arange(len(flat), device=faces.device) - starts[flat]
    table = torch.full(
        (num_vertices, max(1, int(counts.max()))), num_faces, dtype=torch.long, device=faces.device
    )
    table[flat, slot] = face_id
    return table


def vertex_normals(vertices: Tensor, faces: Tensor, table: Tensor | None = None) -> Tensor:
    """Unit normals ``(B, V, 3)``: area-weighted sums of the face normals around each vertex.

    Faces wind counter-clockwise seen from outside (FLAME, BFM), so normals point outwards.
    ``table`` is :func:`vertex_faces` (computed when ``None``).
    """
    if table is None:
        table = vertex_faces(faces, vertices.shape[1])
    tri = vertices[:, faces]  # (B, F, 3, 3)
    face_normals = torch.cross(tri[:, :, 1] - tri[:, :, 0], tri[:, :, 2] - tri[:, :, 0], dim=-1)
    face_normals = F.pad(face_normals, (0, 0, 0, 1))  # the padding face, all zero
    summed = face_normals[:, table].sum(2)  # (B, V, 3)
    return summed / summed.norm(dim=-1, keepdim=True).clamp_min(1e-12)


def shade(
    normals: Tensor,
    mode: ShadingMode = "shaded",
    *,
    light_direction: tuple[float, float, float] = (0.0, 0.4, 1.0),
    ambient: float = 0.3,
    diffuse: float = 0.7,
) -> Tensor:
    """Per-vertex RGB ``(B, V, 3)`` in [0, 1] from unit normals ``(B, V, 3)``.

    Normals and light are in the camera-aligned frame (x right, y up, z towards the camera).

    * ``"shaded"``: grey Lambertian, ``ambient + diffuse * max(0, n . l)`` (clamped to 1),
      one directional light towards ``light_direction``;
    * ``"normals"``: ``(n + 1) / 2`` (x -> red, y -> green, z -> blue).
    """
    if mode == "normals":
        return (normals + 1) * 0.5
    if mode != "shaded":
        raise ValueError(f"unknown shading mode {mode!r}; valid: {SHADING_MODES}")
    light = torch.tensor(light_direction, dtype=normals.dtype, device=normals.device)
    light = light / light.norm().clamp_min(1e-12)
    grey = (ambient + diffuse * (normals @ light).clamp_min(0)).clamp(max=1.0)
    return grey[..., None].expand(*grey.shape, 3)
