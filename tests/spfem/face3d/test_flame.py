"""FLAME: vertices against a direct numpy implementation, conversion of the pickle, errors."""

from __future__ import annotations

import pickle
import sys
import types

import numpy as np
import pytest
import scipy.sparse
import torch

from asccl.spfem.face3d import FLAME, Face3DModelError, convert_flame, load_flame
from asccl.spfem.face3d.convert import read_flame_pickle
from asccl.spfem.face3d.flame import rodrigues
from asccl.spfem.face3d.synthetic import synthetic_flame_arrays

N_SHAPE, N_EXP, SHAPE_TOTAL = 4, 3, 6


def np_rodrigues(r: np.ndarray) -> np.ndarray:
    angle = np.linalg.norm(r)
    if angle < 1e-12:
        return np.eye(3)
    kx, ky, kz = r / angle
    k = np.array([[0, -kz, ky], [kz, 0, -kx], [-ky, kx, 0]])
    return np.eye(3) + np.sin(angle) * k + (1 - np.cos(angle)) * k @ k


def np_flame(arrays: dict, shape: np.ndarray, exp: np.ndarray, pose: np.ndarray) -> np.ndarray:
    """One head, written out joint by joint and vertex by vertex: pose is (5, 3)."""
    dirs = np.concatenate(
        [arrays["shapedirs"][..., :N_SHAPE], arrays["shapedirs"][..., SHAPE_TOTAL:][..., :N_EXP]],
        -1,
    )
    v_shaped = arrays["v_template"] + dirs @ np.concatenate([shape, exp])
    joints = arrays["J_regressor"] @ v_shaped
    rots = [np_rodrigues(p) for p in pose]
    feature = np.concatenate([(rots[j] - np.eye(3)).ravel() for j in range(1, 5)])
    v_posed = v_shaped + arrays["posedirs"] @ feature
    parents = arrays["kintree_table"][0]
    world = []
    for j in range(5):
        local = np.eye(4)
        local[:3, :3] = rots[j]
        local[:3, 3] = joints[j] - (joints[parents[j]] if j else 0)
        world.append(local if j == 0 else world[parents[j]] @ local)
    skin = []
    for j in range(5):
        g = world[j].copy()
        g[:3, 3] -= g[:3, :3] @ joints[j]
        skin.append(g)
    out = np.zeros_like(v_posed)
    for v in range(len(v_posed)):
        t = sum(arrays["weights"][v, j] * skin[j] for j in range(5))
        out[v] = (t @ np.append(v_posed[v], 1))[:3]
    return out


@pytest.fixture(scope="module")
def arrays() -> dict:
    return synthetic_flame_arrays(6, 8, shape_total=SHAPE_TOTAL, exp_total=N_EXP, seed=3)


def test_vertices_match_numpy_with_jaw_and_all_joints(arrays):
    model = FLAME(arrays, n_shape=N_SHAPE, n_exp=N_EXP, shape_total=SHAPE_TOTAL).double()
    rng = np.random.default_rng(0)
    shape, exp = rng.normal(size=(2, N_SHAPE)), rng.normal(size=(2, N_EXP)) * 2
    pose = rng.normal(size=(2, 5, 3)) * 0.3
    pose[1, 2] = [0.4, 0, 0]  # an open jaw
    got = model(
        torch.from_numpy(shape),
        torch.from_numpy(exp),
        global_pose=torch.from_numpy(pose[:, 0]),
        neck_pose=torch.from_numpy(pose[:, 1]),
        jaw_pose=torch.from_numpy(pose[:, 2]),
        eye_pose=torch.from_numpy(pose[:, 3:].reshape(2, 6)),
    )
    for b in range(2):
        want = np_flame(arrays, shape[b], exp[b], pose[b])
        np.testing.assert_allclose(got[b].numpy(), want, atol=1e-6)


def test_jaw_moves_only_jaw_weighted_vertices(arrays):
    rigid = dict(arrays, posedirs=np.zeros_like(arrays["posedirs"]))  # no pose correctives
    model = FLAME(rigid, n_shape=N_SHAPE, n_exp=N_EXP, shape_total=SHAPE_TOTAL)
    rest = model(jaw_pose=torch.zeros(1, 3))
    opened = model(jaw_pose=torch.tensor([[0.3, 0.0, 0.0]]))
    moved = (opened - rest).norm(dim=-1)[0]
    jaw_weight = torch.as_tensor(arrays["weights"][:, 2], dtype=torch.float32)
    assert moved[jaw_weight < 1e-6].max() < 1e-6
    assert moved[jaw_weight > 0.5].min() > 1e-3


def test_rodrigues_matches_numpy_and_is_smooth_at_zero():
    vecs = torch.tensor([[0.3, -0.2, 0.5], [1e-5, 0.0, 0.0], [0.0, 0.0, 0.0]], dtype=torch.float64)
    got = rodrigues(vecs)
    for vec, mat in zip(vecs.numpy(), got.numpy(), strict=True):
        np.testing.assert_allclose(mat, np_rodrigues(vec), atol=1e-10)
    zero = torch.zeros(1, 3, dtype=torch.float64, requires_grad=True)
    rodrigues(zero).sum().backward()
    assert torch.isfinite(zero.grad).all()


# ---------------------------------------------------------------- the pickle and its conversion


def write_flame_like_pickle(path, arrays, monkeypatch) -> None:
    """FLAME's file layout: chumpy arrays, a scipy CSC regressor, plain arrays and strings.

    chumpy is not installed (and never imported by asccl): a stub module provides a class named
    ``chumpy.ch.Ch`` only for writing the pickle.
    """
    chumpy = types.ModuleType("chumpy")
    ch_module = types.ModuleType("chumpy.ch")

    class Ch:
        def __init__(self, x):
            self.x = x
            self._depends_on_deps = {}

    Ch.__module__, Ch.__qualname__ = "chumpy.ch", "Ch"
    ch_module.Ch = Ch
    chumpy.ch = ch_module
    monkeypatch.setitem(sys.modules, "chumpy", chumpy)
    monkeypatch.setitem(sys.modules, "chumpy.ch", ch_module)
    content = {
        "v_template": Ch(arrays["v_template"]),
        "shapedirs": Ch(arrays["shapedirs"]),
        "posedirs": arrays["posedirs"],
        "J_regressor": scipy.sparse.csc_matrix(arrays["J_regressor"]),
        "kintree_table": arrays["kintree_table"],
        "weights": Ch(arrays["weights"]),
        "f": arrays["f"].astype(np.uint32),
        "J": Ch(arrays["J_regressor"] @ arrays["v_template"]),
        "bs_style": "lbs",
        "bs_type": "lrotmin",
    }
    with open(path, "wb") as handle:
        pickle.dump(content, handle, protocol=2)


def test_convert_flame_pickle_to_npz_and_load(arrays, tmp_path, monkeypatch):
    src = tmp_path / "generic_model.pkl"
    write_flame_like_pickle(src, arrays, monkeypatch)
    monkeypatch.delitem(sys.modules, "chumpy")
    monkeypatch.delitem(sys.modules, "chumpy.ch")
    dst = convert_flame(src, tmp_path / "out" / "flame.npz")
    assert dst.is_file()
    assert "chumpy" not in sys.modules
    loaded = load_flame(dst, n_shape=N_SHAPE, n_exp=N_EXP, shape_total=SHAPE_TOTAL)
    direct = FLAME(arrays, n_shape=N_SHAPE, n_exp=N_EXP, shape_total=SHAPE_TOTAL)
    exp = torch.randn(2, N_EXP)
    jaw = torch.tensor([[0.2, 0.0, 0.0], [0.0, 0.1, 0.0]])
    torch.testing.assert_close(
        loaded(expression=exp, jaw_pose=jaw), direct(expression=exp, jaw_pose=jaw)
    )
    assert loaded.parents == (-1, 0, 1, 1, 1)


class Exploit:
    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self):
        import os

        return (os.system, (self.command,))


def test_forbidden_global_is_refused_and_never_runs(tmp_path):
    marker = tmp_path / "pwned"
    src = tmp_path / "generic_model.pkl"
    src.write_bytes(pickle.dumps({"v_template": Exploit(f"touch {marker}")}, protocol=2))
    with pytest.raises(Face3DModelError, match="forbidden global") as info:
        read_flame_pickle(src)
    assert "system" in str(info.value) and str(src) in str(info.value)
    assert "flame.is.tue.mpg.de" in str(info.value)
    assert not marker.exists()


@pytest.mark.parametrize(
    ("content", "match"),
    [
        (b"not a pickle at all", "refused or unreadable|not a FLAME pickle"),
        (pickle.dumps([1, 2, 3], protocol=2), "holds a list"),
        (pickle.dumps({"v_template": np.zeros((4, 3))}, protocol=2), "has no 'shapedirs'"),
    ],
)
def test_malformed_pickles_are_named(tmp_path, content, match):
    src = tmp_path / "generic_model.pkl"
    src.write_bytes(content)
    with pytest.raises(Face3DModelError, match=match) as info:
        read_flame_pickle(src)
    assert str(src) in str(info.value)


def test_inconsistent_shapes_are_named(arrays, tmp_path):
    bad = dict(arrays, weights=arrays["weights"][:-1])
    src = tmp_path / "generic_model.pkl"
    src.write_bytes(pickle.dumps(bad, protocol=2))
    with pytest.raises(Face3DModelError, match="weights has shape"):
        read_flame_pickle(src)


def test_load_flame_errors_name_the_file_and_the_source(arrays, tmp_path):
    missing = tmp_path / "nowhere.npz"
    with pytest.raises(Face3DModelError, match="no such file") as info:
        load_flame(missing)
    assert str(missing) in str(info.value) and "flame.is.tue.mpg.de" in str(info.value)
    pkl = tmp_path / "generic_model.pkl"
    pkl.write_bytes(b"x")
    with pytest.raises(Face3DModelError, match="convert-flame"):
        load_flame(pkl)
    plain = tmp_path / "plain.npz"
    np.savez(plain, **arrays)  # right arrays, but not written by convert_flame
    with pytest.raises(Face3DModelError, match="not an asccl FLAME"):
        load_flame(plain)
    garbage = tmp_path / "garbage.npz"
    garbage.write_bytes(b"garbage")
    with pytest.raises(Face3DModelError, match="not a readable"):
        load_flame(garbage)


def test_every_truncation_of_a_pickle_is_a_named_error(arrays, tmp_path):
    whole = pickle.dumps({"v_template": arrays["v_template"]}, protocol=2)
    src = tmp_path / "generic_model.pkl"
    for cut in range(1, len(whole), max(1, len(whole) // 40)):
        src.write_bytes(whole[:cut])
        with pytest.raises(Face3DModelError):
            read_flame_pickle(src)
