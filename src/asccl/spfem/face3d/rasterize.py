"""Soft rasterisation of triangle meshes in pure PyTorch, with bounded memory.

Per pixel ``p`` and triangle ``j`` (all in pixel units):

* ``d_j(p)``: signed distance to the triangle's boundary, positive inside (the distance to the
  nearest edge line), negative outside (minus the distance to the nearest edge segment);
  coverage ``D_j = clamp((sigmoid(d_j / sigma) - c) / (1 - 2 c), 0, 1)`` with
  ``c = sigmoid(-5)``: the logistic edge rescaled to reach exactly 0 at ``-5 sigma`` and 1 at
  ``+5 sigma`` (continuous there, so the tile a pixel is binned with never matters, and
  ``D(d) + D(-d) = 1``);
* barycentric coordinates ``w_j(p)``, clamped at 0 and renormalised outside the triangle; they
  interpolate depth and the per-vertex attributes ``a_j(p)``;
* triangles facing away from the camera are skipped (``cull_backfaces``);
* a hard depth test with tolerance: ``z_front(p)`` is the depth of the nearest triangle that
  contains ``p``; triangles deeper than ``z_front + tolerance`` are occluded and left out
  (no gradient flows through this choice, as through any z-buffer);
* the alpha is ``min(1, sum D_j)`` over all front-facing triangles, occluded ones included
  (so it depends on the projected triangles only, never on the depth test);
  adjacent triangles of one surface have coverages summing to 1 along their shared edge, so
  interiors (also along internal occlusion edges, where the nearer surface's coverage is < 1)
  get alpha 1 and no seams, while the outer silhouette fades over about ``4 sigma`` pixels;
* the surface attribute is ``(sum_vis D_j a_j + r a_occ) / (sum_vis D_j + r)``: the
  coverage-weighted visible triangles, plus the part of the alpha they leave,
  ``r = max(0, alpha - sum_vis D_j)``, in the colour ``a_occ`` of the nearest occluded layer
  (the excluded triangles within the tolerance of the nearest excluded one containing ``p``,
  or else touching it, coverage-weighted), so an occlusion edge is antialiased between the
  two surfaces instead of darkened towards the background. Where nothing is occluded
  ``r = 0`` exactly and the output is the visible triangles' alone.

Gradients reach the vertices through ``d_j`` (silhouettes and occlusion edges) and through the
attributes (shading). Memory: the image is cut into ``tile x tile`` tiles (4 x 4 by default),
each tile sees only the triangles whose box (grown by the coverage margin ``5 sigma``) overlaps
it, and tiles are
processed in chunks of at most ``max_elements`` pixel-triangle pairs under activation
checkpointing, so peak memory does not grow with the mesh or the image. Deterministic on CPU;
on CUDA the backward of the gathers uses atomic adds (enable
``torch.use_deterministic_algorithms`` for bit-identical gradients).
"""

from __future__ import annotations

import bisect
import math

import torch
from torch import Tensor
from torch.utils.checkpoint import checkpoint

#: Coverage reaches exactly 0 at ``-MARGIN_SIGMAS`` sigmas outside a triangle (and 1 as far
#: inside): the logistic edge rescaled by its value there, ``sigmoid(-5) ~ 6.7e-3``.
MARGIN_SIGMAS = 5.0
_EDGE_FLOOR = 1.0 / (1.0 + math.exp(MARGIN_SIGMAS))  # sigmoid(-MARGIN_SIGMAS)


def coverage(dist: Tensor, sigma: float) -> Tensor:
    """Coverage of a pixel at signed distance ``dist`` (pixels, positive inside) from a
    triangle's boundary: ``clamp((sigmoid(dist / sigma) - c) / (1 - 2 c), 0, 1)``,
    ``c = sigmoid(-MARGIN_SIGMAS)``; exactly 0 from ``-MARGIN_SIGMAS * sigma`` outwards,
    exactly 1 from as far inwards, continuous, and ``coverage(d) + coverage(-d) == 1``."""
    return ((torch.sigmoid(dist / sigma) - _EDGE_FLOOR) / (1 - 2 * _EDGE_FLOOR)).clamp(0, 1)


def soft_rasterize(
    pixels: Tensor,
    faces: Tensor,
    attributes: Tensor,
    height: int,
    width: int,
    *,
    sigma: float = 0.5,
    depth_tolerance: float = 0.02,
    cull_backfaces: bool = True,
    tile: int = 4,
    max_elements: int = 1 << 21,
) -> tuple[Tensor, Tensor]:
    """Rasterise a batch of meshes sharing one topology.

    Args:
        pixels: ``(B, V, 3)`` vertices as ``(column, row, depth)`` in pixel units (see
            :func:`asccl.spfem.face3d.camera.to_pixels`); depth grows away from the camera.
        faces: ``(F, 3)`` long vertex indices.
        attributes: ``(B, V, C)`` per-vertex values to interpolate (e.g. shaded colours).
        height, width: image size.
        sigma: coverage softness in pixels.
        depth_tolerance: occlusion tolerance as a fraction of each mesh's depth extent.
        cull_backfaces: skip triangles facing away from the camera (counter-clockwise seen
            from outside, as FLAME and BFM wind them); halves the work on closed heads.
        tile: tile side in pixels.
        max_elements: pixel-triangle pairs per chunk (bounds memory).

    Returns:
        ``(surface, alpha)``: ``(B, C, H, W)`` interpolated attributes (0 where nothing is
        drawn) and ``(B, 1, H, W)`` coverage in [0, 1].
    """
    if pixels.ndim != 3 or pixels.shape[-1] != 3:
        raise ValueError(f"pixels must be (B, V, 3), got {tuple(pixels.shape)}")
    if faces.ndim != 2 or faces.shape[1] != 3:
        raise ValueError(f"faces must be (F, 3), got {tuple(faces.shape)}")
    if attributes.shape[:2] != pixels.shape[:2]:
        raise ValueError(
            f"attributes {tuple(attributes.shape)} must be (B, V, C) like pixels "
            f"{tuple(pixels.shape)}"
        )
    batch, channels = pixels.shape[0], attributes.shape[-1]
    faces = faces.to(pixels.device)
    tiles_y, tiles_x = math.ceil(height / tile), math.ceil(width / tile)
    tri = pixels[:, faces]  # (B, F, 3 vertices, 3)
    tri_attr = attributes[:, faces]  # (B, F, 3, C)
    with torch.no_grad():
        table, counts = _bin_faces(
            tri.detach(), tiles_y, tiles_x, tile, height, width, sigma, cull_backfaces
        )
        depth = pixels[..., 2].detach()
        tolerance = depth_tolerance * (depth.amax(1) - depth.amin(1)) + 1e-9  # (B,)
        offsets = torch.arange(tile, device=pixels.device, dtype=pixels.dtype) + 0.5
        local = torch.stack(torch.meshgrid(offsets, offsets, indexing="ij"), -1)  # (t, t, 2) yx
        local = local.flip(-1).reshape(-1, 2)  # (P, 2) as (x, y)
    num_tiles = tiles_y * tiles_x
    chunk_ids, chunk_colors, chunk_covers = [], [], []
    order = torch.argsort(counts, stable=True)
    order = order[counts[order] > 0]
    sizes = counts[order].tolist()  # ascending: a chunk's last tile is its largest
    pairs_per_face = tile * tile
    start = 0
    while start < len(order):
        # a chunk is padded to its largest tile: keep sizes within 25% of each other
        limit = min(max_elements // (pairs_per_face * max(1, sizes[start])), len(order) - start)
        end = bisect.bisect_right(sizes, int(sizes[start] * 1.25), start + 1, start + limit)
        while end > start + 1 and (end - start) * sizes[end - 1] * pairs_per_face > max_elements:
            end = start + max(1, (end - start) // 2)
        ids = order[start:end]
        k = sizes[end - 1]  # the largest of the chunk (host-side: no device sync)
        face_ids = table[ids, :k]  # (n, K), -1 padded
        valid = face_ids >= 0
        b = ids // num_tiles
        t = ids % num_tiles
        corner = torch.stack([(t % tiles_x) * tile, (t // tiles_x) * tile], -1).to(pixels.dtype)
        points = corner[:, None, :] + local  # (n, P, 2)
        gather_b = b[:, None].expand_as(face_ids)
        tri_chunk = tri[gather_b, face_ids.clamp_min(0)]  # (n, K, 3, 3)
        attr_chunk = tri_attr[gather_b, face_ids.clamp_min(0)]  # (n, K, 3, C)
        args = (tri_chunk, attr_chunk, valid, points, tolerance[b], sigma)
        if torch.is_grad_enabled() and (tri_chunk.requires_grad or attr_chunk.requires_grad):
            color, cover = checkpoint(_shade_pixels, *args, use_reentrant=False)
        else:
            color, cover = _shade_pixels(*args)
        chunk_ids.append(ids)
        chunk_colors.append(color)
        chunk_covers.append(cover)
        start = end
    surface = pixels.new_zeros(batch * num_tiles, tile * tile, channels)
    alpha = pixels.new_zeros(batch * num_tiles, tile * tile)
    if chunk_ids:
        ids = torch.cat(chunk_ids)
        surface = surface.index_copy(0, ids, torch.cat(chunk_colors))
        alpha = alpha.index_copy(0, ids, torch.cat(chunk_covers))
    surface = _untile(surface, batch, tiles_y, tiles_x, tile)[..., :height, :width]
    alpha = _untile(alpha[..., None], batch, tiles_y, tiles_x, tile)[..., :height, :width]
    return surface, alpha


def _bin_faces(
    tri: Tensor,
    tiles_y: int,
    tiles_x: int,
    tile: int,
    height: int,
    width: int,
    sigma: float,
    cull_backfaces: bool,
) -> tuple[Tensor, Tensor]:
    """Which faces each tile must consider: ``(B * T, K)`` face ids (-1 padded) and counts.

    Each usable face is listed in every tile its box (grown by the coverage margin) overlaps,
    enumerated face by face, so the cost follows the mesh, not ``faces x tiles``.
    """
    batch, num_faces = tri.shape[:2]
    margin = MARGIN_SIGMAS * sigma + 0.5
    lo = tri[..., :2].amin(2) - margin  # (B, F, 2) as (x, y)
    hi = tri[..., :2].amax(2) + margin
    edge1 = tri[:, :, 1, :2] - tri[:, :, 0, :2]
    edge2 = tri[:, :, 2, :2] - tri[:, :, 0, :2]
    area = edge1[..., 0] * edge2[..., 1] - edge1[..., 1] * edge2[..., 0]
    # counter-clockwise-from-outside faces facing the camera have area < 0 (rows grow down)
    usable = area < -1e-10 if cull_backfaces else area.abs() > 1e-10
    usable &= (hi[..., 0] >= 0) & (hi[..., 1] >= 0) & (lo[..., 0] <= width)
    usable &= (lo[..., 1] <= height) & torch.isfinite(tri).all(-1).all(-1)
    x0 = (lo[..., 0] / tile).floor().clamp(0, tiles_x - 1).long()
    x1 = (hi[..., 0] / tile).floor().clamp(0, tiles_x - 1).long()
    y0 = (lo[..., 1] / tile).floor().clamp(0, tiles_y - 1).long()
    y1 = (hi[..., 1] / tile).floor().clamp(0, tiles_y - 1).long()
    span_x = x1 - x0 + 1
    per_face = (span_x * (y1 - y0 + 1) * usable).flatten()  # (B * F,)
    owner = torch.repeat_interleave(torch.arange(len(per_face), device=tri.device), per_face)
    first = torch.cumsum(per_face, 0) - per_face
    local = torch.arange(len(owner), device=tri.device) - first[owner]
    sx, ox, oy = span_x.flatten()[owner], x0.flatten()[owner], y0.flatten()[owner]
    tile_id = (owner // num_faces) * (tiles_y * tiles_x) + (oy + local // sx) * tiles_x
    tile_id = tile_id + ox + local % sx
    order = torch.argsort(tile_id, stable=True)
    tile_id, face = tile_id[order], (owner % num_faces)[order]
    counts = torch.bincount(tile_id, minlength=batch * tiles_y * tiles_x)
    starts = torch.cumsum(counts, 0) - counts
    slot = torch.arange(len(tile_id), device=tri.device) - starts[tile_id]
    width_k = max(1, int(counts.max())) if len(counts) else 1
    table = torch.full((len(counts), width_k), -1, dtype=torch.long, device=tri.device)
    table[tile_id, slot] = face
    return table, counts


def _shade_pixels(
    tri: Tensor, attr: Tensor, valid: Tensor, points: Tensor, tolerance: Tensor, sigma: float
) -> tuple[Tensor, Tensor]:
    """One chunk: ``(n, K, 3, 3)`` triangles, ``(n, K, 3, C)`` attributes, ``(n, K)`` valid,
    ``(n, P, 2)`` pixel centres, ``(n,)`` depth tolerance -> ``(n, P, C)`` colour, ``(n, P)``
    coverage.

    Barycentrics, distances to the edge lines and positions along the edges are affine in the
    pixel position: per face, nine rows ``(gx, gy, c)`` evaluated for all pixels of the tile by
    one batched matmul.
    """
    n, k = valid.shape
    start = tri[..., :2]  # (n, K, 3, 2): edge i runs from vertex i+1 to vertex i+2
    a, b = start.roll(-1, dims=2), start.roll(-2, dims=2)  # edge opposite vertex i
    gx, gy = a[..., 1] - b[..., 1], b[..., 0] - a[..., 0]  # (n, K, 3)
    c = (b[..., 1] - a[..., 1]) * a[..., 0] - (b[..., 0] - a[..., 0]) * a[..., 1]
    area = (gx * start[..., 0] + gy * start[..., 1] + c)[..., :1]  # e_0(v0) = twice the area
    area = torch.where(valid[..., None], area, torch.ones_like(area))
    length = torch.sqrt(gx * gx + gy * gy).clamp_min(1e-12)
    scale = torch.cat([1 / area.expand_as(gx), torch.sign(area) / length], -1)  # (n, K, 6)
    coef = torch.stack([gx, gy, c], -1).repeat(1, 1, 2, 1) * scale[..., None]  # (n, K, 6, 3)
    # position along each edge from its start, in pixels: (p - a) . (b - a) / |b - a|
    along = torch.stack([gy, -gx, -(a[..., 0] * gy - a[..., 1] * gx)], -1) / length[..., None]
    coef = torch.cat([coef, along], 2)  # (n, K, 9, 3)
    homogeneous = torch.cat([points, torch.ones_like(points[..., :1])], -1)  # (n, P, 3)
    # (n, 3, 9 K): rows grouped by quantity so that each slice below is contiguous in K
    values = homogeneous @ coef.permute(0, 3, 2, 1).reshape(n, 3, 9 * k)  # (n, P, 9 K)
    values = values.unflatten(-1, (9, k))
    bary, perp, pos = values[:, :, :3], values[:, :, 3:6], values[:, :, 6:]  # (n, P, 3, K)
    # signed distance: inside, to the nearest edge line (= the boundary); outside, the true
    # distance to the nearest edge segment (edge lines alone would let slivers spike out)
    edge_length = length.transpose(1, 2)[:, None]  # (n, 1, 3, K)
    overshoot = torch.relu(-pos) + torch.relu(pos - edge_length)
    outside = -torch.sqrt(perp**2 + overshoot**2 + 1e-12).amin(2)  # (n, P, K)
    inner = perp.amin(2)
    dist = torch.where(inner >= 0, inner, outside)
    # from the margin outwards coverage is exactly 0 and continuous there: the tile a pixel
    # was binned with (those beyond the margin are not listed) never changes it
    cover = coverage(dist, sigma) * valid[:, None, :]
    clamped = bary.clamp_min(0)
    clamped = clamped / clamped.sum(2, keepdim=True).clamp_min(1e-12)
    with torch.no_grad():
        depth = (clamped * tri[..., 2].transpose(1, 2)[:, None]).sum(2)  # (n, P, K)
        inside = (dist >= 0) & valid[:, None, :]
        far = torch.full_like(depth, math.inf)
        front = torch.where(inside, depth, far).amin(-1, keepdim=True)
        tol = tolerance[:, None, None]
        visible = valid[:, None, :] & (depth <= front + tol)
        # the nearest occluded layer: the nearest excluded triangle containing the pixel, else
        # (only an excluded triangle's margin reaches it) the nearest excluded one touching it
        hidden = valid[:, None, :] & ~visible
        behind = torch.where(hidden & inside, depth, far).amin(-1, keepdim=True)
        touching = torch.where(hidden & (cover > 0), depth, far).amin(-1, keepdim=True)
        behind = torch.where(torch.isfinite(behind), behind, touching)
        layer = hidden & (depth <= behind + tol)
    alpha = cover.sum(-1).clamp(max=1.0)  # (n, P): every front-facing triangle
    seen = cover * visible
    total = seen.sum(-1)  # (n, P)
    # what the visible triangles leave of alpha goes to the occluded layer (exactly 0 where
    # nothing is occluded: then the sums above are identical and the weights are `seen`)
    rest = (alpha - total).clamp_min(0)
    occluded = cover * layer
    share = rest / occluded.sum(-1).clamp_min(1e-12)
    weight = seen + occluded * share[..., None]
    weights = (weight[:, :, None] * clamped).flatten(2)  # (n, P, 3 K)
    color = weights @ attr.transpose(1, 2).flatten(1, 2)  # (n, P, C)
    color = color / (total + rest)[..., None].clamp_min(1e-8)
    return color, alpha


def _untile(values: Tensor, batch: int, tiles_y: int, tiles_x: int, tile: int) -> Tensor:
    """``(B * TY * TX, tile * tile, C)`` -> ``(B, C, TY * tile, TX * tile)``."""
    channels = values.shape[-1]
    values = values.reshape(batch, tiles_y, tiles_x, tile, tile, channels)
    return values.permute(0, 5, 1, 3, 2, 4).reshape(batch, channels, tiles_y * tile, tiles_x * tile)
