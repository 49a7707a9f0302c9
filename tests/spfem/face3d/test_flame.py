"""FLAME: vertices against a direct numpy implementation, conversion of the pickle, errors."""

from __future__ import annotations

import pickle
import pickletools
import sys
import tracemalloc
import types

import numpy as np
import pytest
import scipy.sparse
import torch

from asccl.spfem.face3d import FLAME, Face3DModelError, convert_flame, load_flame
from asccl.spfem.face3d.convert import MAX_ARRAY_BYTES, read_flame_pickle
from asccl.spfem.face3d.flame import rodrigues
from asccl.spfem.face3d.synthetic import synthetic_flame_arrays

try:  # numpy >= 2
    from numpy._core.multiarray import _reconstruct as numpy_reconstruct
    from numpy._core.multiarray import scalar as numpy_scalar
except ImportError:  # numpy 1.x
    from numpy.core.multiarray import _reconstruct as numpy_reconstruct
    from numpy.core.multiarray import scalar as numpy_scalar

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


def write_flame_like_pickle(path, arrays, monkeypatch, *, fix_imports: bool = True) -> None:
    """FLAME's file layout: chumpy arrays, a scipy CSC regressor, plain arrays and strings.

    chumpy is not installed (and never imported by asccl): a stub module provides a class named
    ``chumpy.ch.Ch`` only for writing the pickle. Its instances hold what chumpy's ``Ch``
    pickles (``__dict__`` less ``_parents``/``_cache``): ``x``, ``_dirty_vars`` (a set of term
    names: ``{'x'}`` after ``x`` is set, empty once evaluated), ``_itr``, ``_make_dense``,
    ``_make_sparse`` and ``_depends_on_deps``. Protocol 2 writes each set as the global
    ``__builtin__.set`` (``builtins.set`` with ``fix_imports=False``) applied to a list.
    """
    chumpy = types.ModuleType("chumpy")
    ch_module = types.ModuleType("chumpy.ch")

    class Ch:
        def __init__(self, x, dirty=("x",)):
            self._dirty_vars = set(dirty)
            self._itr = None
            self._make_dense = False
            self._make_sparse = False
            self._depends_on_deps = {}
            self.x = np.asarray(x, np.float64)

    Ch.__module__, Ch.__qualname__ = "chumpy.ch", "Ch"
    ch_module.Ch = Ch
    chumpy.ch = ch_module
    monkeypatch.setitem(sys.modules, "chumpy", chumpy)
    monkeypatch.setitem(sys.modules, "chumpy.ch", ch_module)
    content = {
        "v_template": Ch(arrays["v_template"]),
        "shapedirs": Ch(arrays["shapedirs"], dirty=()),
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
        pickle.dump(content, handle, protocol=2, fix_imports=fix_imports)


def pickle_globals(path) -> set[str]:
    """The ``module name`` globals a protocol-2 pickle names (GLOBAL opcodes)."""
    return {arg for op, arg, _ in pickletools.genops(path.read_bytes()) if op.name == "GLOBAL"}


@pytest.mark.parametrize("fix_imports", [True, False], ids=["__builtin__.set", "builtins.set"])
def test_chumpy_state_with_a_set_converts(arrays, tmp_path, monkeypatch, fix_imports):
    src = tmp_path / "generic_model.pkl"
    write_flame_like_pickle(src, arrays, monkeypatch, fix_imports=fix_imports)
    assert ("__builtin__ set" if fix_imports else "builtins set") in pickle_globals(src)
    assert "chumpy.ch Ch" in pickle_globals(src)
    monkeypatch.delitem(sys.modules, "chumpy")
    monkeypatch.delitem(sys.modules, "chumpy.ch")
    got = read_flame_pickle(src)
    assert "chumpy" not in sys.modules
    for key in ("v_template", "shapedirs", "weights", "J_regressor", "posedirs"):
        np.testing.assert_array_equal(got[key], arrays[key])
    np.testing.assert_array_equal(got["f"], arrays["f"])


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


# ---------------------------------------------------- sets in a chumpy state, declared sizes


class Reduced:
    """Pickles as ``func(*args)`` then ``BUILD state``: crafts opcodes without running them."""

    def __init__(self, func, args, state=None) -> None:
        self.reduction = (func, args) if state is None else (func, args, state)

    def __reduce__(self):
        return self.reduction


def ch_with_dirty_vars(dirty: set, monkeypatch):
    """A ``chumpy.ch.Ch`` (stub class, as in :func:`write_flame_like_pickle`) holding ``dirty``."""
    chumpy, module = types.ModuleType("chumpy"), types.ModuleType("chumpy.ch")

    class Ch:
        pass

    Ch.__module__, Ch.__qualname__ = "chumpy.ch", "Ch"
    module.Ch, chumpy.ch = Ch, module
    monkeypatch.setitem(sys.modules, "chumpy", chumpy)
    monkeypatch.setitem(sys.modules, "chumpy.ch", module)
    ch = Ch()
    ch.__dict__.update(x=np.zeros((2, 3)), _dirty_vars=dirty, _itr=None, _depends_on_deps={})
    return ch


def test_a_set_holding_a_forbidden_global_is_refused_and_never_runs(tmp_path, monkeypatch):
    marker = tmp_path / "pwned"
    src = tmp_path / "generic_model.pkl"
    dirty = {"x", Exploit(f"touch {marker}")}
    src.write_bytes(pickle.dumps({"v_template": ch_with_dirty_vars(dirty, monkeypatch)}, 2))
    assert "__builtin__ set" in pickle_globals(src)
    with pytest.raises(Face3DModelError, match="forbidden global") as info:
        read_flame_pickle(src)
    assert "system" in str(info.value) and str(src) in str(info.value)
    assert not marker.exists()


def test_a_set_holding_anything_but_plain_values_is_refused(tmp_path, monkeypatch):
    src = tmp_path / "generic_model.pkl"
    dirty = {"x", np.dtype("f8")}
    src.write_bytes(pickle.dumps({"v_template": ch_with_dirty_vars(dirty, monkeypatch)}, 2))
    with pytest.raises(Face3DModelError, match=r"a set holding a \w+: only plain values"):
        read_flame_pickle(src)


TIB_SHAPE = (10**6, 10**6)  # float64: 8e12 bytes = 7.28 TiB
JUST_OVER = (MAX_ARRAY_BYTES // 8 + 1,)  # float64: 8 bytes over the limit


def reconstruct(shape, dtype="f8", state_shape=None) -> Reduced:
    """numpy's own pickling of an array, with the declared shapes chosen by the test."""
    dtype = np.dtype(dtype)
    if state_shape is None:  # the shape in _reconstruct's arguments
        return Reduced(numpy_reconstruct, (np.ndarray, shape, dtype.str.encode()))
    state = (1, state_shape, dtype, False, b"\0" * dtype.itemsize)
    return Reduced(numpy_reconstruct, (np.ndarray, (0,), b"b"), state)


def sparse_with_shape(kind: str, shape) -> scipy.sparse.spmatrix:
    matrix = getattr(scipy.sparse, f"{kind}_matrix")(np.ones((1, 1)))
    matrix._shape = shape  # the pickled state's shape, as a crafted file would declare it
    return matrix


def huge_void_dtype() -> Reduced:
    """``numpy.dtype('V8')`` whose pickled state declares a 1 TB item size."""
    return Reduced(np.dtype, ("V8", False, True), (3, "|", None, None, None, 10**12, 1, 0))


class RawOpcodes:
    """Pickles as the given opcodes (for what the pickler itself will not write)."""

    def __init__(self, opcodes: bytes) -> None:
        self.opcodes = opcodes


# ``numpy.ndarray.__new__(numpy.ndarray, (10**6, 10**6))`` through the NEWOBJ opcode
NEWOBJ_NDARRAY = RawOpcodes(
    b"cnumpy\nndarray\n" + pickle.dumps((TIB_SHAPE,), protocol=2)[2:-1] + pickle.NEWOBJ
)


def dumps_with_raw(content: dict) -> bytes:
    """Protocol 2 ``content`` (a dict of str), :class:`RawOpcodes` values spliced in as-is."""
    out = [pickle.PROTO + b"\x02" + pickle.EMPTY_DICT]
    for key, value in content.items():
        out.append(pickle.dumps(key, protocol=2)[2:-1])
        out.append(value.opcodes if isinstance(value, RawOpcodes) else pickle.dumps(value, 2)[2:-1])
        out.append(pickle.SETITEM)
    return b"".join(out) + pickle.STOP


CRAFTED = {
    "reconstruct-7TiB": lambda: reconstruct(TIB_SHAPE),
    "reconstruct-just-over": lambda: reconstruct(JUST_OVER),
    "array-state-7TiB": lambda: reconstruct((0,), state_shape=TIB_SHAPE),
    "ndarray-newobj-7TiB": lambda: NEWOBJ_NDARRAY,
    "void-dtype-1TB": lambda: Reduced(numpy_reconstruct, (np.ndarray, (1,), huge_void_dtype())),
    "scalar-1TB": lambda: Reduced(numpy_scalar, (huge_void_dtype(), b"\0")),
    "csc-7TiB": lambda: sparse_with_shape("csc", TIB_SHAPE),
    "csr-7TiB": lambda: sparse_with_shape("csr", TIB_SHAPE),
    "csc-just-over": lambda: sparse_with_shape("csc", (2**14, 2**13 + 1)),
    "csr-just-over": lambda: sparse_with_shape("csr", (2**13 + 1, 2**14)),
}


@pytest.mark.parametrize("name", sorted(CRAFTED))
def test_a_crafted_huge_shape_is_refused_in_one_line_before_allocating(tmp_path, name):
    src = tmp_path / "generic_model.pkl"
    # under a key read first, and under one read never ("J"): refused while unpickling
    src.write_bytes(dumps_with_raw({"J": CRAFTED[name](), "v_template": CRAFTED[name]()}))
    # "before allocating" is checked by memory, not time: numpy reports every array's data
    # to tracemalloc (even a lazily zeroed one), so building any refused array would show a
    # peak of at least 1 GiB. Refusing them peaks at ~11 kB (measured: pickle opcodes, the
    # error); 16 MiB is 64x below the smallest refused size and ~1500x above that.
    tracemalloc.start()
    try:
        with pytest.raises(Face3DModelError) as info:
            read_flame_pickle(src)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    message = str(info.value)
    assert "\n" not in message and str(src) in message
    refusal = "built other than by numpy's _reconstruct" if "newobj" in name else "limit for one"
    assert refusal in message, message
    assert peak < 16 * 2**20  # the smallest refused size is 1 GiB + 8 bytes


def test_flame_real_sizes_are_within_the_limit(tmp_path):
    """FLAME 2020's shapes (5023 vertices, 400 components, 5 joints) load, float64."""
    num_verts, components, joints = 5023, 400, 5
    rng = np.random.default_rng(0)
    weights = rng.random((num_verts, joints))
    real = {
        "v_template": rng.normal(size=(num_verts, 3)),
        "shapedirs": np.zeros((num_verts, 3, components)),
        "posedirs": np.zeros((num_verts, 3, 9 * (joints - 1))),
        "J_regressor": scipy.sparse.csc_matrix(np.eye(joints, num_verts)),
        "kintree_table": np.array([[-1, 0, 1, 1, 1], [0, 1, 2, 3, 4]]),
        "weights": weights / weights.sum(1, keepdims=True),
        "f": rng.integers(0, num_verts, (9976, 3)),
    }
    assert real["shapedirs"].nbytes * 20 < MAX_ARRAY_BYTES  # a generous margin
    src = tmp_path / "generic_model.pkl"
    src.write_bytes(pickle.dumps(real, protocol=2))
    got = read_flame_pickle(src)
    assert got["shapedirs"].shape == (num_verts, 3, components)
    np.testing.assert_array_equal(got["J_regressor"], np.eye(joints, num_verts))


@pytest.mark.parametrize(
    ("state", "match"),
    [
        ({"indices": [0, 9], "indptr": [0, 1, 2], "data": [1.0, 2.0]}, r"indices 0\.\.9 outside"),
        ({"indices": [0, 1], "indptr": [0, 2, 1], "data": [1.0, 2.0]}, "disagree"),
        ({"indices": [0, 1], "indptr": [0, 1, 2], "data": [1.0]}, "differ"),
    ],
)
def test_a_sparse_matrix_whose_arrays_disagree_is_named(arrays, tmp_path, state, match):
    matrix = scipy.sparse.csc_matrix(np.eye(2))
    matrix.indices, matrix.indptr, matrix.data = (
        np.asarray(state[k]) for k in ("indices", "indptr", "data")
    )
    bad = dict(arrays, J_regressor=matrix)
    src = tmp_path / "generic_model.pkl"
    src.write_bytes(pickle.dumps(bad, protocol=2))
    with pytest.raises(Face3DModelError, match=match) as info:
        read_flame_pickle(src)
    assert str(src) in str(info.value)
