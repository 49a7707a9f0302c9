"""``MeshRenderer``: shaded meshes to ``(B, 3, H, W)`` RGB in [0, 1] plus a coverage mask."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor, nn

from asccl.optional import MissingDependencyError
from asccl.spfem.face3d.camera import to_pixels
from asccl.spfem.face3d.rasterize import soft_rasterize
from asccl.spfem.face3d.shading import SHADING_MODES, ShadingMode, shade, vertex_normals

Backend = Literal["torch", "nvdiffrast", "auto"]


@dataclass(frozen=True)
class Render:
    """A batch of renders.

    Attributes:
        image: ``(B, 3, H, W)`` RGB in [0, 1]: the shaded surface over ``background``.
        mask: ``(B, 1, H, W)`` coverage in [0, 1] (soft at the silhouette).
    """

    image: Tensor
    mask: Tensor


class MeshRenderer(nn.Module):
    """Differentiable renderer for morphable-model meshes; no parameters, deterministic.

    Quick start::

        renderer = MeshRenderer(image_size=224, mode="shaded")
        screen = orthographic_project(vertices, cam)      # (B, V, 3), see camera.py
        render = renderer(vertices, faces, screen)        # render.image (B, 3, 224, 224)

    Args:
        image_size: ``S`` or ``(H, W)``.
        mode: ``"shaded"`` (grey, one directional light + ambient) or ``"normals"``
            (normal-map colouring): both show the local geometry the metric compares.
        sigma: silhouette and edge softness in pixels (smaller: sharper, sparser gradients).
        depth_tolerance: occlusion tolerance, a fraction of each mesh's depth extent.
        background: grey level behind the mesh, in [0, 1].
        light_direction, ambient, diffuse: the ``"shaded"`` light (see :func:`shade`).
        tile, max_elements: memory bounds of the rasteriser (see :func:`soft_rasterize`).
        backend: ``"torch"`` (default; pure PyTorch soft rasteriser), ``"nvdiffrast"`` (hard
            rasterisation + antialiasing through nvdiffrast's CUDA kernels; needs nvdiffrast
            installed and CUDA tensors) or ``"auto"`` (nvdiffrast when importable and the
            inputs are on CUDA, else torch). The nvdiffrast path is untested in asccl's CI.
    """

    def __init__(
        self,
        image_size: int | tuple[int, int] = 224,
        *,
        mode: ShadingMode = "shaded",
        sigma: float = 0.5,
        depth_tolerance: float = 0.02,
        background: float = 0.0,
        light_direction: tuple[float, float, float] = (0.0, 0.4, 1.0),
        ambient: float = 0.3,
        diffuse: float = 0.7,
        tile: int = 4,
        max_elements: int = 1 << 21,
        backend: Backend = "torch",
    ) -> None:
        super().__init__()
        if mode not in SHADING_MODES:
            raise ValueError(f"unknown mode {mode!r}; valid: {SHADING_MODES}")
        if backend not in ("torch", "nvdiffrast", "auto"):
            raise ValueError(f"backend must be 'torch', 'nvdiffrast' or 'auto', got {backend!r}")
        if sigma <= 0:
            raise ValueError(f"sigma must be > 0, got {sigma}")
        if not 0.0 <= background <= 1.0:
            raise ValueError(f"background must be in [0, 1] (a grey level), got {background}")
        height, width = (image_size, image_size) if isinstance(image_size, int) else image_size
        self.height, self.width = int(height), int(width)
        self.mode = mode
        self.sigma = float(sigma)
        self.depth_tolerance = float(depth_tolerance)
        self.background = float(background)
        self.light_direction = tuple(float(c) for c in light_direction)
        self.ambient, self.diffuse = float(ambient), float(diffuse)
        self.tile, self.max_elements = int(tile), int(max_elements)
        self.backend = backend

    def forward(self, vertices: Tensor, faces: Tensor, screen: Tensor) -> Render:
        """Render ``B`` meshes sharing ``faces``.

        Args:
            vertices: ``(B, V, 3)`` in the camera-aligned world frame (x right, y up, z towards
                the camera): normals and lighting are computed here.
            faces: ``(F, 3)`` long, counter-clockwise seen from outside.
            screen: ``(B, V, 3)`` projected vertices from a camera of
                :mod:`asccl.spfem.face3d.camera` (normalised x, y; depth).

        Returns:
            :class:`Render` with ``image`` ``(B, 3, H, W)`` in [0, 1] and ``mask``
            ``(B, 1, H, W)``.
        """
        if vertices.shape != screen.shape or vertices.ndim != 3 or vertices.shape[-1] != 3:
            raise ValueError(
                f"vertices {tuple(vertices.shape)} and screen {tuple(screen.shape)} must both "
                "be (B, V, 3)"
            )
        faces = faces.to(device=vertices.device, dtype=torch.long)
        normals = vertex_normals(vertices, faces)
        colors = shade(
            normals,
            self.mode,
            light_direction=self.light_direction,
            ambient=self.ambient,
            diffuse=self.diffuse,
        )
        pixels = to_pixels(screen, self.height, self.width)
        if self._use_nvdiffrast(vertices):
            from asccl.spfem.face3d.nvdiffrast_backend import nvdiffrast_rasterize

            surface, alpha = nvdiffrast_rasterize(screen, faces, colors, self.height, self.width)
        else:
            surface, alpha = soft_rasterize(
                pixels,
                faces,
                colors,
                self.height,
                self.width,
                sigma=self.sigma,
                depth_tolerance=self.depth_tolerance,
                tile=self.tile,
                max_elements=self.max_elements,
            )
        image = alpha * surface + (1 - alpha) * self.background
        return Render(image=image, mask=alpha)

    def _use_nvdiffrast(self, vertices: Tensor) -> bool:
        if self.backend == "torch":
            return False
        try:
            import nvdiffrast.torch  # noqa: F401
        except ImportError as exc:
            if self.backend == "nvdiffrast":
                needs = "backend='nvdiffrast' needs nvdiffrast"
                raise MissingDependencyError(
                    "nvdiffrast", needs, exc, hint="it also needs a CUDA GPU"
                ) from exc
            return False
        if not vertices.is_cuda:
            if self.backend == "nvdiffrast":
                raise ValueError("backend='nvdiffrast' needs CUDA tensors")
            return False
        return True

    def extra_repr(self) -> str:
        return (
            f"size=({self.height}, {self.width}), mode={self.mode!r}, sigma={self.sigma}, "
            f"backend={self.backend!r}"
        )
