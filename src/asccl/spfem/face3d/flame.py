"""FLAME: shape and expression blend shapes, pose correctives and linear blend skinning.

The maths follows the FLAME paper (Li et al., SIGGRAPH Asia 2017) as DECA runs it
(``decalib/models/lbs.py``): ``v = LBS(T + S(beta) + E(psi) + P(R(theta)), J(T + S + E), W)``,
with joints ``[global, neck, jaw, left eye, right eye]`` and axis-angle pose parameters.
Everything is batched and differentiable; the pure functions below hold the maths, :class:`FLAME`
only holds the arrays.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

import numpy as np
import torch
from torch import Tensor, nn

from asccl.spfem.face3d.convert import FLAME_KEYS, FLAME_NPZ_FORMAT, flame_shape_problem
from asccl.spfem.face3d.errors import FLAME_SOURCE, Face3DModelError, require_model_file


def rodrigues(rotvec: Tensor) -> Tensor:
    """Axis-angle ``(..., 3)`` -> rotation matrices ``(..., 3, 3)``; smooth at the zero vector.

    ``R = I + sin(t)/t K + (1 - cos(t))/t^2 K^2`` with ``K`` the cross-product matrix of the
    vector and ``t`` its norm; a Taylor series below ``t = 1e-3`` keeps gradients finite at 0.
    """
    theta2 = (rotvec * rotvec).sum(-1, keepdim=True)  # (..., 1)
    theta = theta2.clamp_min(1e-12).sqrt()
    small = theta2 < 1e-6
    a = torch.where(small, 1 - theta2 / 6, torch.sin(theta) / theta)
    b = torch.where(small, 0.5 - theta2 / 24, (1 - torch.cos(theta)) / theta2.clamp_min(1e-12))
    x, y, z = rotvec.unbind(-1)
    zero = torch.zeros_like(x)
    k = torch.stack([zero, -z, y, z, zero, -x, -y, x, zero], -1).unflatten(-1, (3, 3))
    eye = torch.eye(3, dtype=rotvec.dtype, device=rotvec.device)
    return eye + a[..., None] * k + b[..., None] * (k @ k)


def rigid_transforms(rotations: Tensor, joints: Tensor, parents: Sequence[int]) -> Tensor:
    """Per-joint skinning transforms along the kinematic chain.

    Args:
        rotations: ``(B, J, 3, 3)`` each joint's rotation relative to its parent.
        joints: ``(B, J, 3)`` rest-pose joint locations.
        parents: ``J`` parent indices, ``parents[0]`` ignored (the root), each parent before
            its children.

    Returns:
        ``(B, J, 4, 4)``: the transform mapping a rest-pose point rigidly attached to each
        joint to its posed location (the world transform with the rest joint subtracted).
    """
    rel = joints.clone()
    parent_idx = list(parents[1:])
    rel[:, 1:] = joints[:, 1:] - joints[:, parent_idx]
    local = torch.cat([rotations, rel[..., None]], -1)  # (B, J, 3, 4)
    bottom = torch.zeros_like(local[..., :1, :])
    bottom[..., 0, 3] = 1
    local = torch.cat([local, bottom], -2)  # (B, J, 4, 4)
    chain = [local[:, 0]]
    for j in range(1, local.shape[1]):
        chain.append(chain[parents[j]] @ local[:, j])
    world = torch.stack(chain, 1)  # (B, J, 4, 4)
    offset = (world[..., :3, :3] @ joints[..., None])[..., 0]  # (B, J, 3)
    moved = torch.cat([world[..., :3, :3], (world[..., :3, 3] - offset)[..., None]], -1)
    return torch.cat([moved, bottom], -2)


def linear_blend_skinning(
    coefficients: Tensor,
    pose: Tensor,
    v_template: Tensor,
    shapedirs: Tensor,
    posedirs: Tensor,
    j_regressor: Tensor,
    parents: Sequence[int],
    weights: Tensor,
) -> Tensor:
    """FLAME/SMPL linear blend skinning.

    Args:
        coefficients: ``(B, K)`` blend-shape coefficients (shape then expression).
        pose: ``(B, J, 3)`` axis-angle rotation of each joint relative to its parent.
        v_template: ``(V, 3)`` template.
        shapedirs: ``(V, 3, K)`` blend shapes.
        posedirs: ``(V, 3, 9 * (J - 1))`` pose correctives, driven by ``R_j - I`` of the
            non-root joints (joint-major, row-major 3x3).
        j_regressor: ``(J, V)`` joint regressor.
        parents: kinematic tree (see :func:`rigid_transforms`).
        weights: ``(V, J)`` skinning weights.

    Returns:
        ``(B, V, 3)`` posed vertices.
    """
    v_shaped = v_template + torch.einsum("bk,vck->bvc", coefficients, shapedirs)
    joints = torch.einsum("jv,bvc->bjc", j_regressor, v_shaped)  # (B, J, 3)
    rotations = rodrigues(pose)  # (B, J, 3, 3)
    eye = torch.eye(3, dtype=pose.dtype, device=pose.device)
    pose_feature = (rotations[:, 1:] - eye).flatten(1)  # (B, 9 (J - 1))
    v_posed = v_shaped + torch.einsum("bp,vcp->bvc", pose_feature, posedirs)
    transforms = rigid_transforms(rotations, joints, parents)  # (B, J, 4, 4)
    per_vertex = torch.einsum("vj,bjrc->bvrc", weights, transforms[..., :3, :])  # (B, V, 3, 4)
    return (per_vertex[..., :3] @ v_posed[..., None])[..., 0] + per_vertex[..., 3]


class FLAME(nn.Module):
    """The FLAME head model: coefficients and pose -> vertices, batched and differentiable.

    Build it from a converted file with :func:`load_flame` (see :func:`convert_flame`) or from
    arrays (tests, :func:`asccl.spfem.face3d.synthetic.synthetic_flame`).

    Args:
        arrays: the :data:`FLAME_KEYS` arrays (``shapedirs`` holds ``shape_total`` shape
            components followed by the expression components).
        n_shape: shape coefficients used (DECA/NED: 100).
        n_exp: expression coefficients used (DECA/NED: 50).
        shape_total: shape components stored before the expression ones (FLAME 2020: 300).

    Attributes:
        faces: ``(F, 3)`` long triangle indices (buffer).
        parents: the kinematic tree as a tuple of ints.
    """

    def __init__(
        self,
        arrays: Mapping[str, np.ndarray | Tensor],
        *,
        n_shape: int = 100,
        n_exp: int = 50,
        shape_total: int = 300,
    ) -> None:
        super().__init__()
        total = int(np.shape(arrays["shapedirs"])[-1])
        if not (0 <= n_shape <= shape_total and 0 <= n_exp <= total - shape_total):
            raise ValueError(
                f"n_shape={n_shape}, n_exp={n_exp} do not fit a model with {shape_total} shape "
                f"and {total - shape_total} expression components"
            )
        as_float = lambda key: torch.as_tensor(np.asarray(arrays[key]), dtype=torch.float32)  # noqa: E731
        shapedirs = as_float("shapedirs")
        shapedirs = torch.cat(
            [shapedirs[..., :n_shape], shapedirs[..., shape_total : shape_total + n_exp]], -1
        )
        self.n_shape, self.n_exp = n_shape, n_exp
        self.register_buffer("v_template", as_float("v_template"))
        self.register_buffer("shapedirs", shapedirs)
        self.register_buffer("posedirs", as_float("posedirs"))
        self.register_buffer("j_regressor", as_float("J_regressor"))
        self.register_buffer("weights", as_float("weights"))
        faces = torch.as_tensor(np.asarray(arrays["f"]), dtype=torch.long)
        self.register_buffer("faces", faces)
        kintree = np.asarray(arrays["kintree_table"]).astype(np.int64)
        self.parents: tuple[int, ...] = (-1, *(int(p) for p in kintree[0, 1:]))

    @property
    def num_joints(self) -> int:
        return len(self.parents)

    def forward(
        self,
        shape: Tensor | None = None,
        expression: Tensor | None = None,
        *,
        global_pose: Tensor | None = None,
        neck_pose: Tensor | None = None,
        jaw_pose: Tensor | None = None,
        eye_pose: Tensor | None = None,
    ) -> Tensor:
        """Vertices of a batch of heads.

        Args:
            shape: ``(B, n_shape)`` identity coefficients (``None``: zeros).
            expression: ``(B, n_exp)`` expression coefficients (``None``: zeros).
            global_pose, neck_pose, jaw_pose: ``(B, 3)`` axis-angle rotations (``None``:
                zero). DECA's ``pose`` code is ``[global_pose, jaw_pose]``.
            eye_pose: ``(B, 6)`` left then right eye (``None``: zero).

        Returns:
            ``(B, V, 3)`` vertices in FLAME's frame (metres; y up, the face looks along +z).
        """
        given = [t for t in (shape, expression, global_pose, neck_pose, jaw_pose, eye_pose)]
        batch = next((t.shape[0] for t in given if t is not None), 1)
        ref = self.v_template
        dtype = next((t.dtype for t in given if t is not None and t.is_floating_point()), ref.dtype)

        def filled(value: Tensor | None, size: int, name: str) -> Tensor:
            if value is None:
                return ref.new_zeros(batch, size, dtype=dtype)
            if value.shape != (batch, size):
                raise ValueError(f"{name} must be ({batch}, {size}), got {tuple(value.shape)}")
            return value.to(dtype)

        coefficients = torch.cat(
            [filled(shape, self.n_shape, "shape"), filled(expression, self.n_exp, "expression")],
            -1,
        )
        parts = [
            filled(global_pose, 3, "global_pose"),
            filled(neck_pose, 3, "neck_pose"),
            filled(jaw_pose, 3, "jaw_pose"),
            filled(eye_pose, 6, "eye_pose"),
        ]
        pose = torch.cat(parts, -1).unflatten(-1, (-1, 3))  # (B, 5, 3)
        if pose.shape[1] != self.num_joints:
            raise ValueError(f"FLAME pose has 5 joints, this model has {self.num_joints}")
        buffers = (self.v_template, self.shapedirs, self.posedirs, self.j_regressor, self.weights)
        v_template, shapedirs, posedirs, j_regressor, weights = (b.to(dtype) for b in buffers)
        return linear_blend_skinning(
            coefficients, pose, v_template, shapedirs, posedirs, j_regressor, self.parents, weights
        )


def load_flame(
    path: str | os.PathLike, *, n_shape: int = 100, n_exp: int = 50, shape_total: int = 300
) -> FLAME:
    """A :class:`FLAME` from an asccl ``.npz`` made by :func:`convert_flame`.

    Raises:
        Face3DModelError: the file is missing, is the original ``.pkl`` (convert it first), is
            not an asccl FLAME ``.npz`` or its arrays are inconsistent.
    """
    file = require_model_file(path, FLAME_SOURCE)
    if file.suffix == ".pkl":
        raise Face3DModelError(
            file,
            "is FLAME's original pickle; convert it once with `asccl face3d convert-flame "
            f"{file} flame.npz` (asccl.spfem.face3d.convert_flame) and load the .npz",
            FLAME_SOURCE,
        )
    try:
        with np.load(file, allow_pickle=False) as data:
            arrays = {key: data[key] for key in data.files}
    except (OSError, ValueError, EOFError) as exc:
        raise Face3DModelError(file, f"not a readable .npz ({exc})", FLAME_SOURCE) from exc
    if str(arrays.get("format", "")) != FLAME_NPZ_FORMAT:
        raise Face3DModelError(
            file, f"not an asccl FLAME .npz (no format {FLAME_NPZ_FORMAT!r})", FLAME_SOURCE
        )
    missing = [key for key in FLAME_KEYS if key not in arrays]
    if missing:
        raise Face3DModelError(file, f"lacks {missing}", FLAME_SOURCE)
    problem = flame_shape_problem(arrays)
    if problem:
        raise Face3DModelError(file, problem, FLAME_SOURCE)
    try:
        return FLAME(arrays, n_shape=n_shape, n_exp=n_exp, shape_total=shape_total)
    except ValueError as exc:
        raise Face3DModelError(file, str(exc), FLAME_SOURCE) from exc
