"""The 3DMM route: morphable models, cameras and a differentiable renderer, so that ASCCL can
supervise generators whose outputs are 3DMM coefficients (NED's stage 1, DSM).

Quick start (NED stage 1)::

    flame = load_flame("flame.npz")          # convert_flame("generic_model.pkl", "flame.npz")
    adapter = get_coefficient_adapter("ned_stage1", model=flame, layout="ned")
    asccl = ASCCLSupervision(checkpoint="metric.safetensors", adapter=adapter)
    extra, logs = asccl({"x_real": x_real}, {"x_fake": x_fake}, step)
"""

from asccl.spfem.face3d.adapters import (
    COEFFICIENT_ADAPTERS,
    DSMAdapter,
    NEDStage1Adapter,
    get_coefficient_adapter,
)
from asccl.spfem.face3d.bfm import BFM, load_bfm
from asccl.spfem.face3d.camera import PerspectiveCamera, orthographic_project, to_pixels
from asccl.spfem.face3d.convert import convert_flame, read_flame_pickle
from asccl.spfem.face3d.errors import Face3DModelError
from asccl.spfem.face3d.flame import FLAME, load_flame
from asccl.spfem.face3d.renderer import MeshRenderer, Render
from asccl.spfem.face3d.synthetic import synthetic_flame

__all__ = [
    "BFM",
    "COEFFICIENT_ADAPTERS",
    "FLAME",
    "DSMAdapter",
    "Face3DModelError",
    "MeshRenderer",
    "NEDStage1Adapter",
    "PerspectiveCamera",
    "Render",
    "convert_flame",
    "get_coefficient_adapter",
    "load_bfm",
    "load_flame",
    "orthographic_project",
    "read_flame_pickle",
    "synthetic_flame",
    "to_pixels",
]
