"""Optional nvdiffrast path (CUDA): hard rasterisation, attribute interpolation, antialiasing.

UNTESTED in asccl (no GPU with nvdiffrast in CI). Gradients reach vertices through
``dr.interpolate`` (attributes) and ``dr.antialias`` (silhouette edges), as in
Deep3DFaceRecon_pytorch's ``util/nvdiffrast.py``. Use ``backend="torch"`` to compare.
"""

from __future__ import annotations

import torch
from torch import Tensor

_CONTEXTS: dict[int, object] = {}


def nvdiffrast_rasterize(
    screen: Tensor, faces: Tensor, attributes: Tensor, height: int, width: int
) -> tuple[Tensor, Tensor]:
    """Same contract as :func:`~asccl.spfem.face3d.rasterize.soft_rasterize`, from screen
    coordinates ``(B, V, 3)`` (x right, y down in [-1, 1], depth away from the camera)."""
    import nvdiffrast.torch as dr

    device = screen.device
    key = device.index or 0
    if key not in _CONTEXTS:
        _CONTEXTS[key] = dr.RasterizeCudaContext(device=device)
    ctx = _CONTEXTS[key]
    depth = screen[..., 2]
    lo, hi = depth.detach().amin(1, keepdim=True), depth.detach().amax(1, keepdim=True)
    z_ndc = 2 * (depth - lo) / (hi - lo).clamp_min(1e-9) * 0.98 - 0.98  # nearer -> smaller
    # nvdiffrast puts image row 0 at clip y = -1, which is our top edge: no flip needed
    clip = torch.stack([screen[..., 0], screen[..., 1], z_ndc, torch.ones_like(z_ndc)], -1)
    tri = faces.to(torch.int32).contiguous()
    raster, _ = dr.rasterize(ctx, clip.contiguous(), tri, resolution=[height, width])
    color, _ = dr.interpolate(attributes.contiguous(), raster, tri)
    coverage = (raster[..., 3:] > 0).to(color.dtype)
    color = dr.antialias(color * coverage, raster, clip, tri)
    alpha = dr.antialias(coverage, raster, clip, tri)
    surface = color / alpha.clamp_min(1e-8)
    return surface.permute(0, 3, 1, 2), alpha.permute(0, 3, 1, 2).clamp(0, 1)
