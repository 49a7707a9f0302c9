"""SPFEM adapters for generators that output 3DMM coefficients: render both sides, then compare.

NED's first stage (``manipulator/``) and DSM map expression coefficients to expression
coefficients. ASCCL compares images, so these adapters turn the step's input coefficients
(key side) and the generator's output coefficients (query side, with gradients) into meshes,
render them with the same camera, and hand the two renders to the loss as an
:class:`~asccl.spfem.adapters.ImagePair`: ``(B', 3, S, S)`` in [0, 1], RGB.

They satisfy :class:`~asccl.spfem.adapters.SPFEMAdapter` and plug into
:class:`~asccl.spfem.ASCCLSupervision` (``adapter=get_coefficient_adapter("ned_stage1",
model=flame)``). They are not in :data:`asccl.spfem.ADAPTERS`: they need a model file and a
renderer, and importing them there would tie the integration layer to this subpackage.

Sequences ``(B, T, D)`` are folded into the batch (``frames="all"``, ``B' = B * T``) or cut
to their last frame (``frames="last"``); per-sequence tensors (``(B, D)``: shape, or a camera
without a time axis) are repeated over time.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from torch import Tensor

from asccl.spfem.adapters import ChannelOrder, ImagePair
from asccl.spfem.face3d.bfm import BFM
from asccl.spfem.face3d.camera import PerspectiveCamera, orthographic_project
from asccl.spfem.face3d.flame import FLAME
from asccl.spfem.face3d.renderer import MeshRenderer

FrameMode = Literal["all", "last"]

#: NED's visualisation camera (``manipulator/util/visualization.py``: ``cam = [6, 0, 0]``).
NED_DEFAULT_CAMERA = (6.0, 0.0, 0.0)


def _tensor(mapping: Mapping[str, Any] | Tensor, key: str, where: str) -> Tensor:
    if isinstance(mapping, Tensor):
        return mapping
    if key not in mapping:
        raise KeyError(f"{where} has no {key!r}; its keys are {sorted(mapping)}")
    value = mapping[key]
    if not isinstance(value, Tensor):
        raise TypeError(f"{where}[{key!r}] must be a tensor, got {type(value).__name__}")
    return value


def _frames(values: Tensor, frames: FrameMode, steps: int | None, name: str) -> Tensor:
    """``(B, T, D)`` -> ``(B*T, D)`` or ``(B, D)``; ``(B, D)`` -> repeated over ``steps``."""
    if values.ndim == 3:
        return values[:, -1] if frames == "last" else values.flatten(0, 1)
    if values.ndim == 2:
        if steps is None or frames == "last":
            return values
        return values.repeat_interleave(steps, 0)
    raise ValueError(f"{name} must be (B, T, D) or (B, D), got {tuple(values.shape)}")


def _steps(values: Tensor) -> int | None:
    return values.shape[1] if values.ndim == 3 else None


@dataclass(eq=False)
class NEDStage1Adapter:
    """NED's expression manipulator: DECA expression + jaw coefficients in and out.

    Args:
        model: the FLAME model DECA used (``load_flame(..., n_shape=100, n_exp=50)``).
        renderer: renders both sides (``MeshRenderer(224)`` when ``None``).
        layout: ``"deca"``: ``batch[expression_key]`` ``(B, T, 50)`` and
            ``batch[jaw_key]`` ``(B, T, 3)``, the generator's ``outputs`` the same keys;
            ``"ned"``: NED's packed ``(B, T, 51)`` tensors (``manipulator/data/
            train_dataset.py``: ``[jaw opening = pose[3], exp 50]``), ``batch[source_key]``
            (``x_real``) and ``outputs[generated_key]`` (``x_fake``, or ``outputs`` itself as
            a tensor); the jaw opening is the x-axis jaw rotation, the other two are 0.
        camera_key: DECA's ``cam`` ``[s, tx, ty]``, ``(B, T, 3)`` or ``(B, 3)``, read from
            ``batch`` when present, else ``default_camera`` for every frame.
        shape_key: DECA's ``shape`` ``(B, 100)`` (or ``(B, T, 100)``) from ``batch`` when
            present, else zeros (the mean head).
        frames: ``"all"`` renders every frame of the window, ``"last"`` only the last.
    """

    model: FLAME
    renderer: MeshRenderer | None = None
    layout: Literal["deca", "ned"] = "deca"
    expression_key: str = "exp"
    jaw_key: str = "jaw_pose"
    source_key: str = "x_real"
    generated_key: str = "x_fake"
    camera_key: str = "cam"
    shape_key: str = "shape"
    default_camera: tuple[float, float, float] = NED_DEFAULT_CAMERA
    frames: FrameMode = "all"
    value_range: tuple[float, float] = field(default=(0.0, 1.0), init=False)
    channel_order: ChannelOrder = field(default="rgb", init=False)

    def __post_init__(self) -> None:
        if self.layout not in ("deca", "ned"):
            raise ValueError(f"layout must be 'deca' or 'ned', got {self.layout!r}")
        if self.frames not in ("all", "last"):
            raise ValueError(f"frames must be 'all' or 'last', got {self.frames!r}")
        if self.renderer is None:
            self.renderer = MeshRenderer(224)

    def coefficients(self, source: Mapping[str, Any] | Tensor, where: str) -> dict[str, Tensor]:
        """``{"expression": (B, [T,] E), "jaw_pose": (B, [T,] 3)}`` of one side."""
        if self.layout == "deca":
            return {
                "expression": _tensor(source, self.expression_key, where),
                "jaw_pose": _tensor(source, self.jaw_key, where),
            }
        key = self.source_key if where == "batch" else self.generated_key
        packed = _tensor(source, key, where)
        if packed.shape[-1] != self.model.n_exp + 1:
            raise ValueError(
                f"{where}[{key!r}] has {packed.shape[-1]} coefficients; NED's layout is "
                f"1 jaw opening + {self.model.n_exp} expression"
            )
        jaw = torch.cat([packed[..., :1], torch.zeros_like(packed[..., :2])], -1)
        return {"expression": packed[..., 1:], "jaw_pose": jaw}

    def render(self, coefficients: Mapping[str, Tensor], batch: Mapping[str, Any]) -> Tensor:
        """``(B', 3, S, S)`` renders of one side's coefficients with the batch's camera/shape.

        ``coefficients`` is what :meth:`coefficients` returns, ``batch`` the loader's dict.
        """
        if not isinstance(coefficients, Mapping) or not isinstance(batch, Mapping):
            raise TypeError(
                "NEDStage1Adapter.render expects coefficients as a mapping {'expression', "
                "'jaw_pose'} (see .coefficients) and batch as the loader's mapping, got "
                f"{type(coefficients).__name__} and {type(batch).__name__}"
            )
        expression = coefficients["expression"]
        steps = _steps(expression)
        batch_size = expression.shape[0]
        camera = batch.get(self.camera_key)
        if camera is None:
            camera = expression.new_tensor(self.default_camera).expand(batch_size, 3)
        shape = batch.get(self.shape_key)
        if shape is None:
            shape = expression.new_zeros(batch_size, self.model.n_shape)
        flat = lambda t, name: _frames(t.to(expression), self.frames, steps, name)  # noqa: E731
        exp, jaw = flat(expression, "expression"), flat(coefficients["jaw_pose"], "jaw_pose")
        vertices = self.model(flat(shape, "shape"), exp, jaw_pose=jaw)
        screen = orthographic_project(vertices, flat(camera, "camera"))
        assert self.renderer is not None
        return self.renderer(vertices, self.model.faces, screen).image

    def pair(self, batch: Mapping[str, Any], outputs: Mapping[str, Any] | Tensor) -> ImagePair:
        """Render ``outputs`` (query, with gradients) and ``batch`` (key) -> :class:`ImagePair`."""
        generated = self.render(self.coefficients(outputs, "outputs"), batch)
        with torch.no_grad():  # the key side never needs a graph
            source = self.render(self.coefficients(batch, "batch"), batch)
        return ImagePair(generated, source, None, self.value_range, self.channel_order)


@dataclass(eq=False)
class DSMAdapter:
    """DSM's expression decoder: expression parameters in, expression parameters out.

    DSM's public repository (github.com/Girish-03/DeepSemManipulation) holds no code, so the
    3DMM is a choice: FLAME (DECA-style expression params, orthographic ``cam``) or BFM
    (Deep3DFaceRecon-style 64 expression coefficients, perspective camera).

    Args:
        model: :class:`FLAME` or :class:`BFM`.
        renderer: ``MeshRenderer(224)`` when ``None``.
        source_key: the input expression in ``batch``, ``(B, [T,] E)``.
        generated_key: the output expression in ``outputs`` (or ``outputs`` itself).
        identity_key: FLAME ``shape`` / BFM ``id`` in ``batch`` (zeros when absent).
        jaw_key: FLAME only: jaw pose in ``batch`` shared by both sides (zeros when absent).
        camera_key: FLAME only: DECA ``cam`` in ``batch`` (else ``default_camera``).
        angles_key, translation_key: BFM only: head pose in ``batch`` (none when absent).
        perspective: BFM only: the pinhole camera (Deep3DFaceRecon's defaults).
    """

    model: FLAME | BFM
    renderer: MeshRenderer | None = None
    source_key: str = "expression"
    generated_key: str = "expression"
    identity_key: str = "shape"
    jaw_key: str = "jaw_pose"
    camera_key: str = "cam"
    angles_key: str = "angles"
    translation_key: str = "translation"
    default_camera: tuple[float, float, float] = NED_DEFAULT_CAMERA
    perspective: PerspectiveCamera = field(default_factory=PerspectiveCamera)
    frames: FrameMode = "all"
    value_range: tuple[float, float] = field(default=(0.0, 1.0), init=False)
    channel_order: ChannelOrder = field(default="rgb", init=False)

    def __post_init__(self) -> None:
        if not isinstance(self.model, (FLAME, BFM)):
            raise TypeError(f"model must be a FLAME or BFM, got {type(self.model).__name__}")
        if self.frames not in ("all", "last"):
            raise ValueError(f"frames must be 'all' or 'last', got {self.frames!r}")
        if self.renderer is None:
            self.renderer = MeshRenderer(224)

    def render(self, expression: Tensor, batch: Mapping[str, Any]) -> Tensor:
        """``(B', 3, S, S)`` renders of ``expression`` with the batch's identity, pose, camera."""
        steps, batch_size = _steps(expression), expression.shape[0]
        flat = lambda t, name: _frames(t.to(expression), self.frames, steps, name)  # noqa: E731
        optional = lambda key: batch.get(key) if key in batch else None  # noqa: E731
        n_id = self.model.n_shape if isinstance(self.model, FLAME) else self.model.n_id
        identity = optional(self.identity_key)
        if identity is None:
            identity = expression.new_zeros(batch_size, n_id)
        exp, ident = flat(expression, "expression"), flat(identity, "identity")
        assert self.renderer is not None
        if isinstance(self.model, FLAME):
            jaw = optional(self.jaw_key)
            jaw = flat(jaw, "jaw_pose") if jaw is not None else None
            camera = optional(self.camera_key)
            if camera is None:
                camera = expression.new_tensor(self.default_camera).expand(batch_size, 3)
            vertices = self.model(ident, exp, jaw_pose=jaw)
            screen = orthographic_project(vertices, flat(camera, "camera"))
        else:
            angles, trans = optional(self.angles_key), optional(self.translation_key)
            vertices = self.model(
                ident,
                exp,
                angles=flat(angles, "angles") if angles is not None else None,
                translation=flat(trans, "translation") if trans is not None else None,
            )
            screen = self.perspective.project(vertices)
        return self.renderer(vertices, self.model.faces, screen).image

    def pair(self, batch: Mapping[str, Any], outputs: Mapping[str, Any] | Tensor) -> ImagePair:
        """Render ``outputs`` (query, with gradients) and ``batch`` (key) -> :class:`ImagePair`."""
        generated = self.render(_tensor(outputs, self.generated_key, "outputs"), batch)
        with torch.no_grad():
            source = self.render(_tensor(batch, self.source_key, "batch"), batch)
        return ImagePair(generated, source, None, self.value_range, self.channel_order)


COEFFICIENT_ADAPTERS: dict[str, type[NEDStage1Adapter] | type[DSMAdapter]] = {
    "ned_stage1": NEDStage1Adapter,
    "dsm": DSMAdapter,
}


def get_coefficient_adapter(
    name: str, *, model: FLAME | BFM, renderer: MeshRenderer | None = None, **changes: Any
) -> NEDStage1Adapter | DSMAdapter:
    """The coefficient adapter ``name`` (``"ned_stage1"`` or ``"dsm"``) on ``model``.

    ``changes`` set the adapter's other fields (key names, ``layout``, ``frames``, cameras).

    Raises:
        ValueError: unknown ``name`` (the valid names are listed).
    """
    if name not in COEFFICIENT_ADAPTERS:
        raise ValueError(
            f"unknown coefficient adapter {name!r}; valid names: {sorted(COEFFICIENT_ADAPTERS)}"
        )
    return COEFFICIENT_ADAPTERS[name](model=model, renderer=renderer, **changes)  # type: ignore[arg-type]
