"""Cameras against hand-computed projections; BFM against numpy and its errors."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.io
import torch
from scipy.spatial.transform import Rotation

from asccl.spfem.face3d import Face3DModelError, PerspectiveCamera, load_bfm, to_pixels
from asccl.spfem.face3d.bfm import euler_rotation
from asccl.spfem.face3d.camera import orthographic_project


def test_orthographic_matches_deca():
    # DECA: s * (X + t), then y (and z) negated; pixels = x * size / 2 + size / 2
    points = torch.tensor([[[0.0, 0.0, 0.0], [0.1, 0.05, 0.02], [-0.1, -0.1, -0.3]]])
    cam = torch.tensor([[5.0, 0.02, -0.04]])
    screen = orthographic_project(points, cam)
    want = torch.tensor(
        [[[0.1, 0.2, 0.0], [0.6, -0.05, -0.1], [-0.4, 0.7, 1.5]]]  # (x, y down, depth)
    )
    torch.testing.assert_close(screen, want)
    pixels = to_pixels(screen, 224, 224)
    torch.testing.assert_close(pixels[0, 1, :2], torch.tensor([0.6 * 112 + 112, -0.05 * 112 + 112]))
    # a point above the centre (y up in FLAME) lands in the upper half of the image
    assert pixels[0, 1, 1] < 112
    # nearer to the camera (larger Z, the face looks along +z) means smaller depth
    assert screen[0, 1, 2] < screen[0, 0, 2]


def test_perspective_matches_deep3dfacerecon():
    camera = PerspectiveCamera()  # focal 1015, centre 112, distance 10
    points = torch.tensor([[[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.5, -0.5, 1.0]]])
    pixels = to_pixels(camera.project(points), 224, 224)
    # u = f x / (d - z) + c; row = 2c - (f y / (d - z) + c)
    want_cols = [112.0, 1015 / 10 + 112, 112.0, 1015 * 0.5 / 9 + 112]
    want_rows = [112.0, 112.0, 224 - (1015 / 10 + 112), 224 - (-1015 * 0.5 / 9 + 112)]
    torch.testing.assert_close(pixels[0, :, 0], torch.tensor(want_cols))
    torch.testing.assert_close(pixels[0, :, 1], torch.tensor(want_rows))
    torch.testing.assert_close(pixels[0, :, 2], torch.tensor([10.0, 10.0, 10.0, 9.0]))
    # rendering at 112 px scales pixel coordinates by one half
    half = to_pixels(camera.project(points), 112, 112)
    torch.testing.assert_close(half[..., :2], pixels[..., :2] / 2)


def bfm_arrays(num_verts: int = 6, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    return {
        "meanshape": rng.normal(size=(1, 3 * num_verts)),
        "idBase": rng.normal(size=(3 * num_verts, 4)),
        "exBase": rng.normal(size=(3 * num_verts, 3)),
        "tri": np.array([[1, 2, 3], [2, 3, 4], [4, 5, 6]]),
        "meantex": rng.uniform(0, 255, size=(1, 3 * num_verts)),
    }


def test_bfm_mat_matches_numpy(tmp_path):
    arrays = bfm_arrays()
    path = tmp_path / "BFM_model_front.mat"
    scipy.io.savemat(path, arrays)
    model = load_bfm(path).double()
    identity, expression = np.array([[0.5, -1, 0, 2]]), np.array([[1.0, 0.3, -0.7]])
    angles, trans = np.array([[0.1, -0.3, 0.2]]), np.array([[0.0, 0.1, -0.2]])
    got = model(
        torch.from_numpy(identity),
        torch.from_numpy(expression),
        angles=torch.from_numpy(angles),
        translation=torch.from_numpy(trans),
    )
    mean = arrays["meanshape"].reshape(-1, 3)
    mean = mean - mean.mean(0)  # Deep3DFaceRecon's recenter
    shape = mean + (arrays["idBase"] @ identity[0] + arrays["exBase"] @ expression[0]).reshape(
        -1, 3
    )
    rotation = Rotation.from_euler("xyz", angles[0]).as_matrix()  # extrinsic x, y, z: Rz Ry Rx
    want = shape @ rotation.T + trans
    np.testing.assert_allclose(got[0].numpy(), want, atol=1e-5)
    assert model.faces.tolist() == [[0, 1, 2], [1, 2, 3], [3, 4, 5]]  # 0-based
    torch.testing.assert_close(
        euler_rotation(torch.from_numpy(angles)), torch.from_numpy(rotation)[None]
    )


def test_bfm_errors_name_the_file_and_the_source(tmp_path):
    missing = tmp_path / "BFM_model_front.mat"
    with pytest.raises(Face3DModelError, match="no such file") as info:
        load_bfm(missing)
    assert str(missing) in str(info.value) and "faces.dmi.unibas.ch" in str(info.value)
    arrays = bfm_arrays()
    del arrays["exBase"]
    scipy.io.savemat(missing, arrays)
    with pytest.raises(Face3DModelError, match="lacks \\['exBase'\\]"):
        load_bfm(missing)
    bad = bfm_arrays()
    bad["tri"] = bad["tri"] - 1  # 0-based: not the published layout
    scipy.io.savemat(missing, bad)
    with pytest.raises(Face3DModelError, match="1-based"):
        load_bfm(missing)
    missing.write_bytes(b"not a mat file")
    with pytest.raises(Face3DModelError, match=r"not a readable \.mat"):
        load_bfm(missing)


def test_bfm_h5_without_h5py_says_how_to_install(tmp_path):
    pytest.importorskip("scipy")
    try:
        import h5py  # noqa: F401

        pytest.skip("h5py is installed")
    except ImportError:
        pass
    path = tmp_path / "model2017-1_bfm_nomouth.h5"
    path.write_bytes(b"\x89HDF")
    with pytest.raises(ImportError, match="pip install h5py"):
        load_bfm(path)
