"""OpenFace CSV reading and landmark-derived expression parameters."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from asccl.data.errors import DataError
from asccl.spfem.action_units import (
    LANDMARK_LAYOUT,
    OPENFACE_AUS,
    OPENFACE_LAYOUT,
    landmark_expression_params,
    mix_params,
    read_openface_csv,
)


def face_template() -> torch.Tensor:
    """``(68, 2)`` a plausible frontal face (eye centres at x = +-0.5, y = 0; y down)."""
    pts = torch.zeros(68, 2)
    t = torch.linspace(math.pi, 0, 17)  # jaw: lower half-ellipse, right (image left) to left
    pts[0:17, 0] = 0.95 * torch.cos(t)
    pts[0:17, 1] = 0.1 + 1.2 * torch.sin(t)  # chin 8 at y = 1.3
    brow = torch.linspace(-0.8, -0.15, 5)
    pts[17:22, 0], pts[17:22, 1] = brow, -0.3 - 0.05 * torch.sin((brow + 0.8) * math.pi / 0.65)
    pts[22:27, 0], pts[22:27, 1] = -brow.flip(0), pts[17:22, 1].flip(0)
    pts[27:31, 0], pts[27:31, 1] = 0.0, torch.linspace(0.0, 0.6, 4)  # bridge, tip 30
    pts[31:36, 0], pts[31:36, 1] = torch.linspace(-0.2, 0.2, 5), 0.7  # nose base, 33 centre
    for start, cx in ((36, -0.5), (42, 0.5)):  # eye: corner, 2 upper, corner, 2 lower
        pts[start : start + 6] = torch.tensor(
            [[-0.2, 0.0], [-0.07, -0.07], [0.07, -0.07], [0.2, 0.0], [0.07, 0.07], [-0.07, 0.07]]
        ) + torch.tensor([cx, 0.0])
    outer = [
        [-0.4, 1.0],
        [-0.25, 0.93],
        [-0.1, 0.9],
        [0.0, 0.92],
        [0.1, 0.9],
        [0.25, 0.93],
        [0.4, 1.0],
        [0.25, 1.1],
        [0.1, 1.14],
        [0.0, 1.15],
        [-0.1, 1.14],
        [-0.25, 1.1],
    ]
    pts[48:60] = torch.tensor(outer)
    inner = [
        [-0.35, 1.0],
        [-0.1, 0.99],
        [0.0, 0.99],
        [0.1, 0.99],
        [0.35, 1.0],
        [0.1, 1.01],
        [0.0, 1.01],
        [-0.1, 1.01],
    ]
    pts[60:68] = torch.tensor(inner)
    return pts


def test_template_params_are_in_range_and_near_neutral():
    p = landmark_expression_params(face_template()[None])
    assert p.shape == (1, LANDMARK_LAYOUT.size) == (1, 12)
    values = dict(zip(LANDMARK_LAYOUT.names, p[0].tolist(), strict=True))
    assert ((p > -0.1) & (p < 1.1)).all(), values
    names = LANDMARK_LAYOUT.names
    assert p[0, names.index("pose_roll")] == pytest.approx(0.5, abs=1e-5)
    assert p[0, names.index("pose_yaw")] == pytest.approx(0.5, abs=1e-5)


def test_invariant_to_translation_and_scale():
    base = face_template()[None]
    moved = base * 37.5 + torch.tensor([120.0, -40.0])
    torch.testing.assert_close(
        landmark_expression_params(moved), landmark_expression_params(base), atol=1e-5, rtol=0
    )


def test_rotation_changes_only_roll():
    base = face_template()[None]
    angle = 0.3
    rot = torch.tensor([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
    p0, p1 = landmark_expression_params(base), landmark_expression_params(base @ rot.T)
    roll = LANDMARK_LAYOUT.names.index("pose_roll")
    assert (p1[0, roll] - p0[0, roll]).item() == pytest.approx(angle / 1.4, abs=1e-5)
    others = [i for i in range(12) if i != roll]
    torch.testing.assert_close(p1[:, others], p0[:, others], atol=1e-5, rtol=0)


def test_features_respond_to_their_landmarks():
    names = LANDMARK_LAYOUT.names
    base = face_template()
    opened = base.clone()
    opened[65:68, 1] += 0.2  # inner lower lip down
    opened[55:60, 1] += 0.2
    opened[5:12, 1] += 0.2  # jaw down
    smile = base.clone()
    smile[[48, 54, 60, 64], 1] -= 0.1
    brows = base.clone()
    brows[17:27, 1] -= 0.1
    p = landmark_expression_params(torch.stack([base, opened, smile, brows]))
    d = p - p[0]
    i = names.index
    assert d[1, i("mouth_open")] > 0.3 and d[1, i("jaw_drop")] > 0.15
    assert d[1, i("brow_inner")].abs() < 1e-6 and d[1, i("eye_open")].abs() < 1e-6
    assert d[2, i("lip_corners")] > 0.3 and d[2, i("mouth_open")].abs() < 1e-6
    assert d[3, i("brow_inner")] > 0.2 and d[3, i("brow_outer")] > 0.2
    assert d[3, i("mouth_open")].abs() < 1e-6


def test_differentiable():
    lm = (face_template()[None] * 0.3 + 0.5).requires_grad_(True)
    landmark_expression_params(lm).sum().backward()
    assert lm.grad is not None and torch.isfinite(lm.grad).all() and lm.grad.abs().sum() > 0


def test_bad_shape_is_an_error():
    with pytest.raises(ValueError, match=r"\(B, 68, 2\)"):
        landmark_expression_params(torch.zeros(2, 5, 2))


def test_mix_params_takes_speech_and_pose_from_source():
    src = torch.zeros(2, 12)
    ref = torch.ones(2, 12)
    mixed = mix_params(src, ref, LANDMARK_LAYOUT, mouth_from="source")
    from_source = set(LANDMARK_LAYOUT.speech) | set(LANDMARK_LAYOUT.pose)
    for k in range(12):
        assert (mixed[:, k] == (0.0 if k in from_source else 1.0)).all()
    everything = mix_params(
        src, ref, LANDMARK_LAYOUT, mouth_from="reference", pose_from="reference"
    )
    assert torch.equal(everything, ref)
    with pytest.raises(ValueError, match="mouth_from"):
        mix_params(src, ref, LANDMARK_LAYOUT, mouth_from="lips")
    with pytest.raises(ValueError, match=r"\(B, 12\)"):
        mix_params(src[:, :5], ref[:, :5], LANDMARK_LAYOUT)


# ---------------------------------------------------------------- OpenFace CSVs


def write_openface_csv(path: Path, rows: int = 3, faces: tuple[int, ...] = (0,)) -> Path:
    """A CSV laid out like OpenFace 2.0's FeatureExtraction output (", " separators)."""
    header = [
        "frame",
        "face_id",
        "timestamp",
        "confidence",
        "success",
        "gaze_0_x",
        "pose_Tx",
        "pose_Ty",
        "pose_Tz",
        "pose_Rx",
        "pose_Ry",
        "pose_Rz",
        "x_0",
        "y_0",
        *OPENFACE_AUS,
        "AU01_c",
        "AU45_c",
    ]
    lines = [", ".join(header)]
    for face in faces:
        for r in range(rows):
            values = [r + 1, face, 0.04 * r, 0.98, 1, 0.1, 1.0, 2.0, 300.0, 0.1 * r, -0.2, 0.7]
            values += [50.0, 60.0] + [round(0.25 * k + r, 2) for k in range(17)] + [1, 0]
            lines.append(", ".join(str(v) for v in values))
    path.write_text("\n".join(lines) + "\n")
    return path


def test_read_openface_csv(tmp_path):
    track = read_openface_csv(write_openface_csv(tmp_path / "clip.csv"))
    assert len(track) == 3
    np.testing.assert_array_equal(track.frame, [1, 2, 3])
    np.testing.assert_allclose(track.timestamp, [0.0, 0.04, 0.08])
    assert track.success.all()
    np.testing.assert_allclose(track.pose[:, 0], [0.0, 0.1, 0.2], atol=1e-6)
    np.testing.assert_allclose(track.au[1], [0.25 * k + 1 for k in range(17)], atol=1e-6)
    params = track.icface_params()
    assert params.shape == (3, OPENFACE_LAYOUT.size) == (3, 20) and params.dtype == torch.float32
    # ICface's scaling: pose (x + 0.70) / 1.4, AUs / 5
    assert params[0, 1].item() == pytest.approx((-0.2 + 0.7) / 1.4)
    assert params[0, 2].item() == pytest.approx((0.7 + 0.7) / 1.4)
    assert params[2, 3 + 16].item() == pytest.approx((0.25 * 16 + 2) / 5)


def test_read_openface_csv_multi_face(tmp_path):
    path = write_openface_csv(tmp_path / "multi.csv", rows=2, faces=(0, 1))
    with pytest.raises(DataError, match="pass face_id"):
        read_openface_csv(path)
    assert len(read_openface_csv(path, face_id=1)) == 2
    with pytest.raises(DataError, match="no rows of face_id 5"):
        read_openface_csv(path, face_id=5)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty file"),
        (
            "frame, face_id, timestamp, pose_Rx, pose_Ry, pose_Rz\n1, 0, 0.0, 0, 0, 0\n",
            r"missing columns \['AU01_r'",
        ),
        ("\x00\x01garbage\xff\n", "missing columns"),
    ],
)
def test_malformed_csvs_name_file_and_problem(tmp_path, text, message):
    path = tmp_path / "bad.csv"
    path.write_text(text, encoding="latin-1")
    with pytest.raises(DataError, match=message) as err:
        read_openface_csv(path)
    assert str(path) in str(err.value)


def test_header_only_and_non_numeric(tmp_path):
    path = write_openface_csv(tmp_path / "ok.csv")
    lines = path.read_text().splitlines()
    (tmp_path / "header.csv").write_text(lines[0] + "\n")
    with pytest.raises(DataError, match="no frames"):
        read_openface_csv(tmp_path / "header.csv")
    cells = lines[2].split(", ")
    cells[-5] = "n/a"  # an AU column
    (tmp_path / "text.csv").write_text("\n".join([lines[0], lines[1], ", ".join(cells)]) + "\n")
    with pytest.raises(DataError, match=r"line 3, column 'AU\d\d_r': 'n/a' is not a number"):
        read_openface_csv(tmp_path / "text.csv")
    with pytest.raises(DataError, match="no such OpenFace CSV"):
        read_openface_csv(tmp_path / "missing.csv")
