"""Expression parameters for the ICface-style generator: OpenFace action units or landmarks.

ICface (Tripathy, Kannala, Rahtu, WACV 2020) drives a face with 20 interpretable numbers per
frame, read from OpenFace 2.0 ``FeatureExtraction`` CSVs: the head pose ``pose_Rx, pose_Ry,
pose_Rz`` (radians) and the 17 action-unit intensities ``AU01_r ... AU45_r`` (0-5). Its
released loader (``test_code_released_new/data/aligned_dataset.py``, columns 296-298 and
679-695 of the full CSV) scales them to about [0, 1]: pose ``(x + 0.70) / 1.4`` (so a frontal
head is 0.5) and intensities ``x / 5``. :func:`read_openface_csv` reads such a CSV and
:meth:`AUTrack.icface_params` returns exactly that 20-vector (:data:`OPENFACE_LAYOUT`).

Where no OpenFace output exists (the data pipeline stores 68 iBUG landmarks per frame),
:func:`landmark_expression_params` derives a 12-vector of geometric stand-ins
(:data:`LANDMARK_LAYOUT`): a 3-value head-pose proxy and 9 distances, all measured in a frame
normalised for translation, scale and in-plane rotation, then mapped by fixed affine ranges to
roughly [0, 1]. Both layouts say which entries are head pose and which carry speech (the
mouth's opening, width and the jaw), so the generator can take speech from the source frame
and expression from the reference frame (:func:`mix_params`).
"""

from __future__ import annotations

import csv
import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from asccl.data.errors import DataError

#: The 17 AU intensity columns of OpenFace 2.0, in its CSV order (the ones ICface uses).
OPENFACE_AUS: tuple[str, ...] = (
    "AU01_r",  # inner brow raiser
    "AU02_r",  # outer brow raiser
    "AU04_r",  # brow lowerer
    "AU05_r",  # upper lid raiser
    "AU06_r",  # cheek raiser
    "AU07_r",  # lid tightener
    "AU09_r",  # nose wrinkler
    "AU10_r",  # upper lip raiser
    "AU12_r",  # lip corner puller
    "AU14_r",  # dimpler
    "AU15_r",  # lip corner depressor
    "AU17_r",  # chin raiser
    "AU20_r",  # lip stretcher
    "AU23_r",  # lip tightener
    "AU25_r",  # lips part
    "AU26_r",  # jaw drop
    "AU45_r",  # blink
)
#: OpenFace's head rotation columns (radians, camera frame; pitch, yaw, roll).
OPENFACE_POSE: tuple[str, ...] = ("pose_Rx", "pose_Ry", "pose_Rz")


@dataclass(frozen=True)
class ParamLayout:
    """What each entry of a parameter vector is.

    Attributes:
        names: one name per entry, ``P`` in all.
        pose: indices of the head-pose entries (taken from the source frame by default).
        speech: indices of the entries that move with speech: mouth opening, mouth width,
            jaw. ``mouth_from="source"`` takes these from the source frame.
        neutral: the value of each entry for a frontal, expressionless, closed-mouth face
            (ICface's neutraliser target).
    """

    names: tuple[str, ...]
    pose: tuple[int, ...]
    speech: tuple[int, ...]
    neutral: tuple[float, ...]

    def __post_init__(self) -> None:
        if len(self.neutral) != len(self.names):
            raise ValueError(f"neutral has {len(self.neutral)} values for {len(self.names)} names")
        for idx in (*self.pose, *self.speech):
            if not 0 <= idx < len(self.names):
                raise ValueError(f"index {idx} outside 0..{len(self.names) - 1}")

    @property
    def size(self) -> int:
        """``P``, the number of parameters."""
        return len(self.names)


#: ICface's 20 parameters: pose (normalised, 0.5 = frontal), then 17 AU intensities / 5.
#: Speech: AU17 chin raiser, AU20 lip stretcher, AU23 lip tightener, AU25 lips part, AU26 jaw
#: drop (articulation). AU10, AU12, AU14, AU15 (lip raise, smile, dimple, corners down) are
#: treated as expression, i.e. taken from the reference.
OPENFACE_LAYOUT = ParamLayout(
    names=OPENFACE_POSE + OPENFACE_AUS,
    pose=(0, 1, 2),
    speech=tuple(
        3 + OPENFACE_AUS.index(au) for au in ("AU17_r", "AU20_r", "AU23_r", "AU25_r", "AU26_r")
    ),
    neutral=(0.5, 0.5, 0.5) + (0.0,) * len(OPENFACE_AUS),
)


@dataclass(frozen=True)
class AUTrack:
    """One face's OpenFace 2.0 track (``N`` frames).

    Attributes:
        path: the CSV it was read from.
        frame: ``(N,)`` int64, OpenFace's 1-based frame numbers.
        timestamp: ``(N,)`` float64 seconds (0 where the CSV has no ``timestamp``).
        confidence: ``(N,)`` float32 in [0, 1] (1 where the CSV has no ``confidence``).
        success: ``(N,)`` bool, whether OpenFace tracked the face in that frame.
        pose: ``(N, 3)`` float32 radians: ``pose_Rx, pose_Ry, pose_Rz``.
        au: ``(N, 17)`` float32 intensities in [0, 5], in :data:`OPENFACE_AUS` order.
    """

    path: Path
    frame: np.ndarray
    timestamp: np.ndarray
    confidence: np.ndarray
    success: np.ndarray
    pose: np.ndarray
    au: np.ndarray

    def __len__(self) -> int:
        return len(self.frame)

    def icface_params(self) -> Tensor:
        """``(N, 20)`` float32: ICface's scaling, pose ``(x + 0.70) / 1.4``, AUs ``x / 5``."""
        pose = (self.pose + 0.70) / 1.4
        return torch.from_numpy(np.concatenate([pose, self.au / 5.0], axis=1).astype(np.float32))


def read_openface_csv(path: str | os.PathLike, face_id: int | None = None) -> AUTrack:
    """Read an OpenFace 2.0 ``FeatureExtraction`` / ``FaceLandmarkVidMulti`` CSV.

    Column names are matched after stripping spaces (OpenFace writes ``"frame, face_id,
    ..."``); only ``pose_Rx/Ry/Rz`` and the 17 ``AU.._r`` columns are required, every other
    column is ignored. ``frame``, ``timestamp``, ``confidence``, ``success`` and ``face_id``
    are read when present.

    Args:
        path: the CSV.
        face_id: keep only this face's rows (multi-face CSVs); ``None``: all rows, which must
            then belong to one face.

    Raises:
        DataError: missing file, empty file, missing columns (listed), a non-numeric value
            (row and column named), no rows, or several faces with ``face_id=None``.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(path, "no such OpenFace CSV")
    with path.open(newline="", encoding="utf-8", errors="replace") as f:
        reader = csv.reader(f)
        header = next(reader, None)
        if header is None or not any(h.strip() for h in header):
            raise DataError(path, "empty file, expected an OpenFace CSV header")
        columns = {name.strip(): i for i, name in enumerate(header)}
        missing = [c for c in (*OPENFACE_POSE, *OPENFACE_AUS) if c not in columns]
        if missing:
            raise DataError(
                path,
                f"not an OpenFace 2.0 AU CSV: missing columns {missing} (run FeatureExtraction "
                "with -pose -aus, or without output flags)",
            )
        wanted = [
            c for c in ("frame", "face_id", "timestamp", "confidence", "success") if c in columns
        ]
        names = list(OPENFACE_POSE + OPENFACE_AUS) + wanted
        rows: list[list[float]] = []
        for line, row in enumerate(reader, start=2):
            if not row or all(not cell.strip() for cell in row):
                continue  # blank line
            values = []
            for name in names:
                col = columns[name]
                if col >= len(row):
                    raise DataError(path, f"line {line} has {len(row)} fields, no {name!r}")
                try:
                    value = float(row[col])
                except ValueError:
                    raise DataError(
                        path, f"line {line}, column {name!r}: {row[col].strip()!r} is not a number"
                    ) from None
                if not math.isfinite(value):
                    raise DataError(path, f"line {line}, column {name!r}: {value} is not finite")
                values.append(value)
            rows.append(values)
    if not rows:
        raise DataError(path, "header only, no frames")
    data = np.asarray(rows, dtype=np.float64)
    get = {name: data[:, i] for i, name in enumerate(names)}
    if "face_id" in get:
        faces = np.unique(get["face_id"]).astype(np.int64)
        if face_id is not None:
            keep = get["face_id"] == face_id
            if not keep.any():
                raise DataError(path, f"no rows of face_id {face_id}; faces: {faces.tolist()}")
            data = data[keep]
            get = {name: data[:, i] for i, name in enumerate(names)}
        elif len(faces) > 1:
            raise DataError(path, f"{len(faces)} faces {faces.tolist()}: pass face_id")
    elif face_id not in (None, 0):
        raise DataError(path, f"no face_id column, cannot select face {face_id}")
    n = len(data)
    au = data[:, 3 : 3 + len(OPENFACE_AUS)].astype(np.float32)
    return AUTrack(
        path=path,
        frame=get["frame"].astype(np.int64) if "frame" in get else np.arange(1, n + 1),
        timestamp=get.get("timestamp", np.zeros(n)).astype(np.float64),
        confidence=get.get("confidence", np.ones(n)).astype(np.float32),
        success=get.get("success", np.ones(n)) > 0.5,
        pose=data[:, :3].astype(np.float32),
        au=au,
    )


# ---------------------------------------------------------------------------- landmarks
# iBUG 68-point indices (0-based; "right" = the subject's right = the image's left):
# jaw 0-16 (chin 8), brows 17-21 (right, 17 outer, 21 inner) and 22-26 (left, 22 inner,
# 26 outer), nose bridge 27-30 (30 tip), nose base 31-35 (33 subnasale), right eye 36-41
# (36 outer, 39 inner; upper lid 37, 38; lower lid 41, 40), left eye 42-47 (42 inner,
# 45 outer; upper lid 43, 44; lower lid 47, 46), outer lips 48-59 (corners 48, 54; top centre
# 51; bottom centre 57), inner lips 60-67 (corners 60, 64; upper 61-63; lower 65-67).

#: ``(name, low, high)``: each raw measure (in interocular distances, or radians for roll)
#: is mapped to ``(raw - low) / (high - low)``, so a typical face spans about [0, 1].
_LANDMARK_PARAMS: tuple[tuple[str, float, float], ...] = (
    ("pose_roll", -0.70, 0.70),  # eye-line angle (rad), as ICface: (x + 0.70) / 1.4
    ("pose_yaw", -0.50, 0.50),  # nose tip 30 offset from the jaw's 0-16 midpoint / jaw width
    ("pose_pitch", 0.30, 0.90),  # nose length: tip 30 below bridge top 27
    ("brow_inner", 0.10, 0.50),  # inner brows 21/22 above their eye centres (AU01, AU04)
    ("brow_outer", 0.00, 0.40),  # outer brows 17/26 above their eye centres (AU02)
    ("brow_gap", 0.20, 0.60),  # horizontal gap between inner brows 21-22 (AU04 narrows it)
    ("eye_open", 0.00, 0.30),  # lower lids 40/41, 46/47 below upper 37/38, 43/44 (AU05/07/45)
    ("upper_lip", 0.00, 0.40),  # upper-lip top 51 below subnasale 33 (AU10 shortens it)
    ("lip_corners", -0.15, 0.15),  # inner upper-lip centre 62 below corners 48/54 (AU12 up)
    ("mouth_open", 0.00, 0.60),  # inner lower lip 65-67 below inner upper lip 61-63 (AU25)
    ("mouth_width", 0.40, 1.20),  # corner 54 right of corner 48 (AU20, AU12)
    ("jaw_drop", 0.60, 1.60),  # chin 8 below subnasale 33 (AU26)
)
_NAMES = tuple(name for name, _, _ in _LANDMARK_PARAMS)

#: :func:`landmark_expression_params`' 12 entries. Speech: mouth_open, mouth_width, jaw_drop.
#: Neutral: frontal pose (0.5, 0.5, 0.5) and the other entries at a resting face's values
#: (closed mouth: ``mouth_open`` 0, level lip corners: ``lip_corners`` 0.5, the rest at the
#: middle of their range, 0.5).
LANDMARK_LAYOUT = ParamLayout(
    names=_NAMES,
    pose=(0, 1, 2),
    speech=(_NAMES.index("mouth_open"), _NAMES.index("mouth_width"), _NAMES.index("jaw_drop")),
    neutral=tuple(0.0 if name == "mouth_open" else 0.5 for name in _NAMES),
)

LAYOUTS: dict[str, ParamLayout] = {"landmarks": LANDMARK_LAYOUT, "openface": OPENFACE_LAYOUT}


def landmark_expression_params(landmarks: Tensor) -> Tensor:
    """Expression parameters from 68 iBUG landmarks (differentiable).

    The landmarks are first normalised: origin at the midpoint of the two eye centres (mean
    of 36-41 and of 42-47), unit length the distance between the eye centres, x axis along
    the line from the right to the left eye centre. Every entry but ``pose_roll`` is
    therefore invariant to translation, scale and in-plane rotation; ``pose_roll`` (the
    eye line's angle) is invariant to translation and scale. See :data:`LANDMARK_LAYOUT` for
    the entries and the landmarks each one uses.

    Args:
        landmarks: ``(B, 68, 2)`` ``(x, y)`` with y pointing down (image convention), in any
            unit (pixels or crop-normalised [0, 1]).

    Returns:
        ``(B, 12)`` float, each entry about [0, 1] for ordinary faces (not clamped: extreme
        faces go beyond it).
    """
    if landmarks.dim() != 3 or landmarks.shape[1:] != (68, 2):
        raise ValueError(f"landmarks must be (B, 68, 2), got {tuple(landmarks.shape)}")
    pts = landmarks.float()
    right_eye = pts[:, 36:42].mean(1)  # (B, 2)
    left_eye = pts[:, 42:48].mean(1)
    axis = left_eye - right_eye  # (B, 2)
    iod = torch.sqrt((axis**2).sum(-1) + 1e-12)  # (B,)
    cos, sin = axis[:, 0] / iod, axis[:, 1] / iod
    # rotate by -roll and scale: u = R(-roll) (p - centre) / iod
    rel = pts - ((right_eye + left_eye) / 2)[:, None]  # (B, 68, 2)
    u = (rel[..., 0] * cos[:, None] + rel[..., 1] * sin[:, None]) / iod[:, None]  # (B, 68)
    v = (-rel[..., 0] * sin[:, None] + rel[..., 1] * cos[:, None]) / iod[:, None]
    eye_r_v, eye_l_v = v[:, 36:42].mean(1), v[:, 42:48].mean(1)

    raw = [
        torch.atan2(axis[:, 1], axis[:, 0]),  # pose_roll
        (u[:, 30] - (u[:, 0] + u[:, 16]) / 2) / (u[:, 16] - u[:, 0]).clamp_min(1e-6),
        v[:, 30] - v[:, 27],  # pose_pitch
        ((eye_r_v - v[:, 21]) + (eye_l_v - v[:, 22])) / 2,  # brow_inner
        ((eye_r_v - v[:, 17]) + (eye_l_v - v[:, 26])) / 2,  # brow_outer
        u[:, 22] - u[:, 21],  # brow_gap
        (
            (v[:, [40, 41]].mean(1) - v[:, [37, 38]].mean(1))
            + (v[:, [46, 47]].mean(1) - v[:, [43, 44]].mean(1))
        )
        / 2,  # eye_open
        v[:, 51] - v[:, 33],  # upper_lip
        v[:, 62] - (v[:, 48] + v[:, 54]) / 2,  # lip_corners
        v[:, 65:68].mean(1) - v[:, 61:64].mean(1),  # mouth_open
        u[:, 54] - u[:, 48],  # mouth_width
        v[:, 8] - v[:, 33],  # jaw_drop
    ]
    low = torch.tensor([lo for _, lo, _ in _LANDMARK_PARAMS], device=pts.device)
    high = torch.tensor([hi for _, _, hi in _LANDMARK_PARAMS], device=pts.device)
    return (torch.stack(raw, dim=1) - low) / (high - low)  # (B, 12)


def mix_params(
    source: Tensor,
    reference: Tensor,
    layout: ParamLayout,
    *,
    mouth_from: str = "source",
    pose_from: str = "source",
) -> Tensor:
    """Driving parameters for SPFEM: expression from ``reference``, speech and pose chosen.

    Args:
        source, reference: ``(B, P)`` parameters of the source (neutral, speaking) frame
            and of the reference (target-emotion) frame.
        layout: which entries are speech (:attr:`ParamLayout.speech`) and pose.
        mouth_from: ``"source"`` (keep the source's speech entries: the lips keep saying
            what the source says) or ``"reference"`` (everything expressive from the
            reference).
        pose_from: ``"source"`` or ``"reference"`` for the head-pose entries.

    Returns:
        ``(B, P)``: ``reference`` with the chosen entries replaced by ``source``'s.
    """
    for name, value in (("mouth_from", mouth_from), ("pose_from", pose_from)):
        if value not in ("source", "reference"):
            raise ValueError(f"{name} must be 'source' or 'reference', got {value!r}")
    if source.shape != reference.shape or source.shape[-1] != layout.size:
        raise ValueError(
            f"source {tuple(source.shape)} and reference {tuple(reference.shape)} must both be "
            f"(B, {layout.size})"
        )
    take = torch.zeros(layout.size, dtype=torch.bool, device=source.device)
    if mouth_from == "source":
        take[list(layout.speech)] = True
    if pose_from == "source":
        take[list(layout.pose)] = True
    return torch.where(take, source, reference)
