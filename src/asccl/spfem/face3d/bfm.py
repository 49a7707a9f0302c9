"""The Basel Face Model as Deep3DFaceRecon_pytorch uses it: identity/expression -> vertices.

``BFM_model_front.mat`` (made by Deep3DFaceRecon's ``util/load_mats.py: transferBFM09`` from
BFM 2009 plus the expression basis of Guo et al.) holds, for ``N`` vertices (35709):
``meanshape`` ``(1, 3N)``, ``idBase`` ``(3N, 80)``, ``exBase`` ``(3N, 64)``, ``meantex``,
``texBase``, ``tri`` ``(F, 3)`` 1-based, ``point_buf``, ``keypoints``; units are decimetres
(``models/bfm.py: ParametricFaceModel``). The shape is
``mean + idBase @ id + exBase @ exp``, reshaped vertex-major to ``(N, 3)``, re-centred on the
vertex mean (``recenter=True``, their default), then posed with Euler angles and a translation.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

import numpy as np
import torch
from torch import Tensor, nn

from asccl.optional import require
from asccl.spfem.face3d.errors import BFM_SOURCE, Face3DModelError, require_model_file

#: Arrays a BFM file must provide (``.mat`` names).
BFM_KEYS = ("meanshape", "idBase", "exBase", "tri")


def euler_rotation(angles: Tensor) -> Tensor:
    """``(B, 3)`` Euler angles (radians, about x, y, z) -> ``(B, 3, 3)`` ``R = Rz Ry Rx``.

    Deep3DFaceRecon's ``compute_rotation`` returns ``R^T`` and applies ``points @ R^T``, i.e.
    ``R @ point``: the same rotation.
    """
    x, y, z = angles.unbind(-1)
    one, zero = torch.ones_like(x), torch.zeros_like(x)
    rot_x = torch.stack([one, zero, zero, zero, x.cos(), -x.sin(), zero, x.sin(), x.cos()], -1)
    rot_y = torch.stack([y.cos(), zero, y.sin(), zero, one, zero, -y.sin(), zero, y.cos()], -1)
    rot_z = torch.stack([z.cos(), -z.sin(), zero, z.sin(), z.cos(), zero, zero, zero, one], -1)
    shape = (*angles.shape[:-1], 3, 3)
    return rot_z.reshape(shape) @ rot_y.reshape(shape) @ rot_x.reshape(shape)


class BFM(nn.Module):
    """Basel Face Model shape: ``(B, 80)`` identity, ``(B, 64)`` expression -> ``(B, N, 3)``.

    Args:
        arrays: ``meanshape`` (``3N`` values, vertex-major), ``idBase`` ``(3N, I)``,
            ``exBase`` ``(3N, E)``, ``tri`` ``(F, 3)`` **1-based** (as in the ``.mat``).
        recenter: subtract the mean vertex from ``meanshape`` (Deep3DFaceRecon's default).
    """

    def __init__(self, arrays: Mapping[str, np.ndarray], *, recenter: bool = True) -> None:
        super().__init__()
        mean = np.asarray(arrays["meanshape"], dtype=np.float64).reshape(-1, 3)
        if recenter:
            mean = mean - mean.mean(0, keepdims=True)
        self.register_buffer("mean_shape", torch.as_tensor(mean, dtype=torch.float32))
        self.register_buffer("id_base", torch.as_tensor(arrays["idBase"], dtype=torch.float32))
        self.register_buffer("exp_base", torch.as_tensor(arrays["exBase"], dtype=torch.float32))
        faces = np.asarray(arrays["tri"]).astype(np.int64) - 1
        self.register_buffer("faces", torch.as_tensor(faces))
        self.n_id, self.n_exp = self.id_base.shape[1], self.exp_base.shape[1]

    def forward(
        self,
        identity: Tensor | None = None,
        expression: Tensor | None = None,
        *,
        angles: Tensor | None = None,
        translation: Tensor | None = None,
    ) -> Tensor:
        """Vertices ``(B, N, 3)`` (decimetres; y up, the face looking along +z).

        Args:
            identity: ``(B, n_id)`` (``None``: zeros).
            expression: ``(B, n_exp)`` (``None``: zeros).
            angles: ``(B, 3)`` Euler angles in radians (``None``: no rotation).
            translation: ``(B, 3)`` (``None``: none).
        """
        given = [t for t in (identity, expression, angles, translation) if t is not None]
        batch = given[0].shape[0] if given else 1
        dtype = given[0].dtype if given else self.mean_shape.dtype
        mean = self.mean_shape.to(dtype)
        offset = mean.new_zeros(batch, mean.numel())
        if identity is not None:
            offset = offset + identity @ self.id_base.to(dtype).T
        if expression is not None:
            offset = offset + expression @ self.exp_base.to(dtype).T
        vertices = mean + offset.unflatten(-1, (-1, 3))  # (B, N, 3)
        if angles is not None:
            vertices = vertices @ euler_rotation(angles).transpose(1, 2)
        if translation is not None:
            vertices = vertices + translation[:, None, :]
        return vertices


def load_bfm(path: str | os.PathLike, *, recenter: bool = True) -> BFM:
    """A :class:`BFM` from Deep3DFaceRecon's ``BFM_model_front.mat`` or a BFM 2017 ``.h5``.

    ``.mat`` files are read with :func:`scipy.io.loadmat`. ``.h5`` files (BFM 2017 layout:
    ``shape/model/{mean,pcaBasis,pcaVariance}``, ``expression/model/...``,
    ``shape/representer/cells``; millimetres) need h5py, an optional dependency; their bases
    are scaled by the standard deviations and converted to decimetres. The ``.h5`` reader
    follows the published layout but has not been run on the real file here.

    Raises:
        Face3DModelError: missing file, unreadable file, missing arrays or bad shapes.
        ImportError: a ``.h5`` file without h5py installed.
    """
    file = require_model_file(path, BFM_SOURCE)
    if file.suffix.lower() in (".h5", ".hdf5"):
        arrays = _read_bfm2017_h5(file)
    else:
        from scipy.io import loadmat
        from scipy.io.matlab import MatReadError

        try:
            content = loadmat(file)
        except (OSError, ValueError, TypeError, NotImplementedError, MatReadError) as exc:
            raise Face3DModelError(file, f"not a readable .mat file ({exc})", BFM_SOURCE) from exc
        missing = [key for key in BFM_KEYS if key not in content]
        if missing:
            keys = sorted(k for k in content if not k.startswith("__"))
            raise Face3DModelError(file, f"lacks {missing}; it holds {keys}", BFM_SOURCE)
        arrays = {key: np.asarray(content[key]) for key in BFM_KEYS}
    problem = _bfm_shape_problem(arrays)
    if problem:
        raise Face3DModelError(file, problem, BFM_SOURCE)
    return BFM(arrays, recenter=recenter)


def _bfm_shape_problem(arrays: Mapping[str, np.ndarray]) -> str | None:
    size = np.asarray(arrays["meanshape"]).size
    if size == 0 or size % 3:
        return f"meanshape has {size} values, expected 3 per vertex"
    for key in ("idBase", "exBase"):
        shape = np.shape(arrays[key])
        if len(shape) != 2 or shape[0] != size:
            return f"{key} has shape {shape}, expected ({size}, K)"
    tri = np.asarray(arrays["tri"])
    if tri.ndim != 2 or tri.shape[1] != 3:
        return f"tri has shape {tri.shape}, expected (F, 3)"
    if tri.size and (tri.min() < 1 or tri.max() > size // 3):
        return f"tri indexes vertices {tri.min()}..{tri.max()}, expected 1..{size // 3} (1-based)"
    return None


def _read_bfm2017_h5(file: os.PathLike) -> dict[str, np.ndarray]:
    h5py = require("h5py", f"{file}: reading a BFM .h5 file needs h5py",
                   hint="or use Deep3DFaceRecon's BFM_model_front.mat")  # fmt: skip
    try:
        with h5py.File(file, "r") as h5:
            out = {}
            for key, group in (("idBase", "shape"), ("exBase", "expression")):
                basis = np.asarray(h5[f"{group}/model/pcaBasis"], dtype=np.float64)
                std = np.sqrt(np.asarray(h5[f"{group}/model/pcaVariance"], dtype=np.float64))
                out[key] = basis * std[None, :] / 100.0  # mm -> dm
            mean = np.asarray(h5["shape/model/mean"], dtype=np.float64)
            mean = mean + np.asarray(h5["expression/model/mean"], dtype=np.float64)
            out["meanshape"] = mean / 100.0
            out["tri"] = np.asarray(h5["shape/representer/cells"]).T + 1
    except KeyError as exc:
        raise Face3DModelError(file, f"not in BFM 2017's .h5 layout ({exc})", BFM_SOURCE) from exc
    except OSError as exc:
        raise Face3DModelError(file, f"not a readable .h5 file ({exc})", BFM_SOURCE) from exc
    return out
