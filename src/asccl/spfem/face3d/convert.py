"""One-off conversion of FLAME's ``generic_model.pkl`` into the ``.npz`` asccl loads.

FLAME is distributed as a Python 2 pickle holding numpy arrays, chumpy arrays (``chumpy.ch.Ch``)
and a scipy sparse matrix (``J_regressor``). Unpickling runs whatever callables the file names,
so a tampered ``.pkl`` can execute arbitrary code (``os.system`` and friends) the moment it is
loaded with :func:`pickle.load`. DECA and NED do exactly that. Here the file is read once by
:class:`RestrictedUnpickler`, whose ``find_class`` allows only the handful of globals a FLAME
pickle needs, each through a checking stand-in:

* numpy's array reconstruction (``_reconstruct``, ``ndarray``, ``dtype``, ``scalar``) and
  ``_codecs.encode`` with ``latin1`` (how Python 3 protocol-2 pickles store bytes);
* ``copy_reg._reconstructor`` / ``__builtin__.object`` (Python 2 object reconstruction), for the
  stand-in classes below only;
* ``chumpy.ch.Ch``, mapped to :class:`_ChumpyArray`, a stand-in that keeps only its ``x`` array:
  chumpy itself is never imported;
* ``__builtin__.set`` / ``builtins.set``, for the ``_dirty_vars`` in a ``Ch`` state (the names
  of its changed terms, e.g. ``set(['x'])``): it builds a set of plain values (str, bytes, int,
  float, bool, None) and refuses anything else;
* scipy's ``csc_matrix`` / ``csr_matrix``, mapped to :class:`_SparseMatrix`, a stand-in that
  keeps ``data``, ``indices``, ``indptr`` and the shape and densifies them with numpy.

Anything else (``os.system``, ``builtins.eval``, other chumpy classes) raises
:class:`Face3DModelError` naming the global. Every array shape the file declares (numpy's
``_reconstruct`` and array state, a dtype's item size, a sparse matrix's dense shape) is checked
against :data:`MAX_ARRAY_BYTES` before anything is allocated, so a crafted shape cannot ask for
terabytes. The residual risk: numpy's reconstruction code parses attacker-controlled bytes, as
``np.load`` does; no code from the file runs. The output is a plain ``.npz`` (read with
``allow_pickle=False``), so the pickle is never opened again.
"""

from __future__ import annotations

import copyreg
import math
import os
import pickle
import struct
from pathlib import Path
from typing import Any

import numpy as np

from asccl.io import atomic_write
from asccl.spfem.face3d.errors import FLAME_SOURCE, Face3DModelError, require_model_file

#: Format tag written into every converted file.
FLAME_NPZ_FORMAT = "asccl-flame-npz-1"

#: FLAME arrays kept by the conversion and what each must look like (V vertices, J joints).
FLAME_KEYS = {
    "v_template": "(V, 3) template vertices",
    "shapedirs": "(V, 3, S + E) shape then expression blend shapes (FLAME 2020: 300 + 100)",
    "posedirs": "(V, 3, 9 * (J - 1)) pose-corrective blend shapes",
    "J_regressor": "(J, V) joint regressor (sparse in the pickle)",
    "kintree_table": "(2, J) kinematic tree, row 0 the parents",
    "weights": "(V, J) skinning weights",
    "f": "(F, 3) triangles, 0-based vertex indices",
}


#: The most bytes one array of a FLAME pickle may declare (numpy arrays, dtypes, a sparse
#: matrix's dense form). FLAME 2020's largest array is ``shapedirs``: 5023 vertices x 3 x 400
#: components (300 shape + 100 expression) x 8 bytes = 48.2 MB; ``posedirs`` (5023 x 3 x 36) is
#: 4.3 MB and the densified ``J_regressor`` (5 x 5023) 0.2 MB. 1 GiB is over 20 times the largest,
#: room for denser meshes or more components, while a crafted shape (say 10^6 x 10^6 float64,
#: 7.28 TiB) is refused before numpy allocates it.
MAX_ARRAY_BYTES = 1 << 30

_BIGGEST_FLAME_ARRAY = "FLAME's largest, shapedirs, 5023 x 3 x 400 float64, is 48.2 MB"


def _human_bytes(count: int) -> str:
    size = float(count)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if size < 1024 or unit == "PiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.2f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")


def _checked_shape(shape: Any, what: str) -> tuple[int, ...]:
    """``shape`` as a tuple of non-negative Python ints, or ``UnpicklingError``."""
    if not isinstance(shape, (tuple, list)):
        raise pickle.UnpicklingError(f"{what} has a shape that is a {type(shape).__name__}")
    dims = []
    for dim in shape:
        if isinstance(dim, bool) or not isinstance(dim, (int, np.integer)) or dim < 0:
            raise pickle.UnpicklingError(f"{what} has a shape {tuple(shape)!r}")
        dims.append(int(dim))
    return tuple(dims)


def _check_size(shape: Any, dtype: Any, what: str) -> None:
    """Refuse (``UnpicklingError``) a ``shape`` x ``dtype`` over :data:`MAX_ARRAY_BYTES`."""
    dims = _checked_shape(shape, what)
    if not isinstance(dtype, np.dtype):
        raise pickle.UnpicklingError(f"{what} has a dtype that is a {type(dtype).__name__}")
    count = math.prod(dims)
    nbytes = count * max(dtype.itemsize, 1)  # a 0-byte item still counts: no 10^18-element array
    if nbytes > MAX_ARRAY_BYTES:
        raise pickle.UnpicklingError(
            f"{what} of shape {dims} and dtype {dtype} declares {_human_bytes(nbytes)}, over the "
            f"{_human_bytes(MAX_ARRAY_BYTES)} limit for one FLAME array ({_BIGGEST_FLAME_ARRAY})"
        )


class _CheckedArray(np.ndarray):
    """Stand-in for ``numpy.ndarray`` while unpickling: only :func:`_reconstruct` makes one, and
    its pickled state's shape is checked against :data:`MAX_ARRAY_BYTES` before numpy reads it.
    ``np.asarray`` turns it into a plain ``ndarray``."""

    def __new__(cls, *args: Any, **kwargs: Any) -> _CheckedArray:
        raise pickle.UnpicklingError("numpy.ndarray built other than by numpy's _reconstruct")

    def __setstate__(self, state: Any) -> None:
        if not isinstance(state, tuple) or len(state) not in (4, 5):
            raise pickle.UnpicklingError("an array whose pickled state is not numpy's")
        shape, dtype = state[-4], state[-3]  # (version,) shape, dtype, is_fortran, data
        _check_size(shape, dtype, "an array")
        super().__setstate__(state)


def _reconstruct(subtype: Any, shape: Any, dtype: Any) -> _CheckedArray:
    """numpy's ``_reconstruct`` for plain arrays, with the declared size checked first."""
    if subtype is not _CheckedArray:
        raise pickle.UnpicklingError("numpy's _reconstruct of something other than an ndarray")
    if not isinstance(dtype, (str, bytes, np.dtype)):
        raise pickle.UnpicklingError(f"an array whose dtype is a {type(dtype).__name__}")
    _check_size(shape, np.dtype(dtype), "an array")
    return _numpy_global("_reconstruct")(_CheckedArray, shape, dtype)


def _scalar(dtype: Any, *args: Any) -> Any:
    """numpy's ``scalar`` (a pickled numpy scalar), with the dtype's item size checked first."""
    _check_size((), dtype, "a numpy scalar")
    return _numpy_global("scalar")(dtype, *args)


def _object_reconstructor(cls: Any, base: Any, state: Any) -> Any:
    """``copy_reg._reconstructor`` for the stand-in classes on ``object`` only."""
    if base is not object or cls not in (_ChumpyArray, _SparseMatrix, _CSRMatrix):
        raise pickle.UnpicklingError("copy_reg._reconstructor of a class outside the allow-list")
    return copyreg._reconstructor(cls, base, state)  # type: ignore[attr-defined]


_PLAIN_TYPES = (str, bytes, int, float, bool, type(None))


def _plain_set(items: Any = ()) -> set:
    """``set(items)`` for a list of plain values (chumpy's ``_dirty_vars``), nothing else."""
    if not isinstance(items, (list, tuple)):
        raise pickle.UnpicklingError(f"a set built from a {type(items).__name__}, not a list")
    for item in items:
        if type(item) not in _PLAIN_TYPES:
            raise pickle.UnpicklingError(
                f"a set holding a {type(item).__name__}: only plain values "
                "(str, bytes, int, float, bool, None) may be in one, as in chumpy's _dirty_vars"
            )
    return set(items)


def _latin1_encode(text: Any, encoding: str = "utf-8") -> bytes:
    """``_codecs.encode`` as Python 3 protocol-2 pickles use it: ``str`` to bytes in latin1."""
    if not isinstance(text, str) or encoding.lower().replace("_", "-") not in ("latin1", "latin-1"):
        raise pickle.UnpicklingError(f"_codecs.encode other than str to latin1 ({encoding!r})")
    return text.encode("latin1")


class _ChumpyArray:
    """Stand-in for ``chumpy.ch.Ch``: keeps the ``x`` array of its pickled state, nothing else.

    chumpy pickles ``Ch.__dict__`` less its caches: ``x``, ``_dirty_vars`` (a set of term
    names), ``_itr``, ``_make_dense``, ``_make_sparse`` and ``_depends_on_deps``.
    """

    x: Any = None

    def __setstate__(self, state: Any) -> None:
        if isinstance(state, tuple) and len(state) == 2:  # (dict, slots) form
            state = state[0]
        if not isinstance(state, dict) or "x" not in state:
            raise pickle.UnpicklingError("a chumpy array without an 'x' array in its state")
        self.x = state["x"]


class _SparseMatrix:
    """Stand-in for scipy's CSC/CSR matrices: the compressed arrays, densified on request."""

    kind = "csc"
    state: Any = None

    def __setstate__(self, state: Any) -> None:
        if not isinstance(state, dict):
            raise pickle.UnpicklingError("a sparse matrix whose state is not a dict")
        shape = _checked_shape(state.get("_shape", state.get("shape")), "a sparse matrix")
        if len(shape) != 2:
            raise pickle.UnpicklingError(f"a sparse matrix of shape {shape}, not (rows, cols)")
        _check_size(shape, np.dtype(np.float64), f"a {self.kind} sparse matrix (densified)")
        self.state = state

    def dense(self) -> np.ndarray:
        """The ``(rows, cols)`` float64 matrix; ``ValueError`` if its arrays disagree."""
        s = self.state
        if not isinstance(s, dict):
            raise ValueError("a sparse matrix with no pickled state")
        shape = s.get("_shape", s.get("shape"))
        if shape is None or not all(k in s for k in ("data", "indices", "indptr")):
            raise ValueError(f"sparse matrix state lacks data/indices/indptr/shape: {sorted(s)}")
        rows, cols = (int(n) for n in shape)
        data, indices, indptr = (np.asarray(s[k]) for k in ("data", "indices", "indptr"))
        major, minor = (cols, rows) if self.kind == "csc" else (rows, cols)
        if indptr.shape != (major + 1,):
            raise ValueError(f"indptr has shape {indptr.shape}, expected ({major + 1},)")
        if not (
            np.issubdtype(indptr.dtype, np.integer) and np.issubdtype(indices.dtype, np.integer)
        ):
            raise ValueError(f"indptr/indices are {indptr.dtype}/{indices.dtype}, not integers")
        counts = np.diff(indptr)
        if indptr[0] != 0 or np.any(counts < 0) or indptr[-1] != len(indices):
            raise ValueError("indptr, indices and data of the sparse matrix disagree")
        if data.shape != indices.shape or data.ndim != 1:
            raise ValueError(f"data {data.shape} and indices {indices.shape} differ")
        if indices.size and (indices.min() < 0 or indices.max() >= minor):
            raise ValueError(f"indices {indices.min()}..{indices.max()} outside 0..{minor - 1}")
        out = np.zeros((rows, cols), dtype=np.float64)
        majors = np.repeat(np.arange(major), counts)
        if self.kind == "csc":
            np.add.at(out, (indices, majors), data)
        else:
            np.add.at(out, (majors, indices), data)
        return out


class _CSRMatrix(_SparseMatrix):
    kind = "csr"


def _numpy_global(name: str) -> Any:
    try:
        from numpy._core import multiarray  # numpy >= 2
    except ImportError:  # numpy 1.x
        from numpy.core import multiarray

    return getattr(multiarray, name)


_ALLOWED: dict[tuple[str, str], Any] = {
    ("copy_reg", "_reconstructor"): _object_reconstructor,
    ("copyreg", "_reconstructor"): _object_reconstructor,
    ("__builtin__", "object"): object,
    ("builtins", "object"): object,
    ("__builtin__", "set"): _plain_set,
    ("builtins", "set"): _plain_set,
    ("_codecs", "encode"): _latin1_encode,
    ("numpy", "ndarray"): _CheckedArray,
    ("numpy", "dtype"): np.dtype,
    ("chumpy.ch", "Ch"): _ChumpyArray,
}
for _module in ("numpy.core.multiarray", "numpy._core.multiarray"):
    _ALLOWED[(_module, "_reconstruct")] = _reconstruct
    _ALLOWED[(_module, "scalar")] = _scalar
for _module in ("scipy.sparse.csc", "scipy.sparse._csc"):
    _ALLOWED[(_module, "csc_matrix")] = _SparseMatrix
for _module in ("scipy.sparse.csr", "scipy.sparse._csr"):
    _ALLOWED[(_module, "csr_matrix")] = _CSRMatrix


class RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that resolves only the globals a FLAME model pickle needs (see module doc)."""

    def find_class(self, module: str, name: str) -> Any:
        target = _ALLOWED.get((module, name))
        if target is None:
            raise pickle.UnpicklingError(f"forbidden global {module}.{name}")
        return target


def read_flame_pickle(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """FLAME's arrays from its ``generic_model.pkl``, read with :class:`RestrictedUnpickler`.

    Returns:
        ``{key: array}`` for every key of :data:`FLAME_KEYS`, float64 (``f`` and
        ``kintree_table`` int64), validated against each other.

    Raises:
        Face3DModelError: missing file, a global outside the allow-list, a broken pickle, a
            missing key or inconsistent shapes.
    """
    file = require_model_file(path, FLAME_SOURCE)
    try:
        with file.open("rb") as handle:
            content = RestrictedUnpickler(handle, encoding="latin1").load()
    except pickle.UnpicklingError as exc:
        raise Face3DModelError(
            file, f"refused or unreadable as a FLAME pickle ({exc})", FLAME_SOURCE
        ) from exc
    except (
        EOFError,
        ValueError,
        TypeError,
        AttributeError,
        IndexError,
        KeyError,
        OverflowError,
        MemoryError,
        struct.error,
    ) as exc:
        raise Face3DModelError(
            file, f"not a FLAME pickle ({type(exc).__name__}: {exc})", FLAME_SOURCE
        ) from exc
    if not isinstance(content, dict):
        raise Face3DModelError(
            file, f"holds a {type(content).__name__}, not FLAME's dict of arrays", FLAME_SOURCE
        )
    arrays: dict[str, np.ndarray] = {}
    for key in FLAME_KEYS:
        if key not in content:
            raise Face3DModelError(
                file, f"has no {key!r} ({FLAME_KEYS[key]}); keys: {sorted(content)}", FLAME_SOURCE
            )
        try:
            arrays[key] = _to_array(content[key])
        except (TypeError, ValueError) as exc:
            raise Face3DModelError(file, f"{key!r} is not an array ({exc})", FLAME_SOURCE) from exc
    arrays["f"] = arrays["f"].astype(np.int64)
    arrays["kintree_table"] = arrays["kintree_table"].astype(np.int64)
    problem = flame_shape_problem(arrays)
    if problem:
        raise Face3DModelError(file, problem, FLAME_SOURCE)
    return arrays


def _to_array(value: Any) -> np.ndarray:
    if isinstance(value, _ChumpyArray):
        value = value.x
    if isinstance(value, _SparseMatrix):
        return value.dense()
    array = np.asarray(value)
    if array.dtype == object or not np.issubdtype(array.dtype, np.number):
        raise TypeError(f"dtype {array.dtype}")
    return array.astype(np.float64) if np.issubdtype(array.dtype, np.floating) else array


def flame_shape_problem(arrays: dict[str, np.ndarray]) -> str | None:
    """What is inconsistent among FLAME's arrays, or ``None`` (see :data:`FLAME_KEYS`)."""
    v_template = arrays["v_template"]
    if v_template.ndim != 2 or v_template.shape[1] != 3:
        return f"v_template has shape {v_template.shape}, expected (V, 3)"
    num_verts = v_template.shape[0]
    kintree = arrays["kintree_table"]
    if kintree.ndim != 2 or kintree.shape[0] != 2:
        return f"kintree_table has shape {kintree.shape}, expected (2, J)"
    num_joints = kintree.shape[1]
    expected = {
        "shapedirs": (num_verts, 3, None),
        "posedirs": (num_verts, 3, 9 * (num_joints - 1)),
        "J_regressor": (num_joints, num_verts),
        "weights": (num_verts, num_joints),
        "f": (None, 3),
    }
    for key, shape in expected.items():
        actual = arrays[key].shape
        mismatch = len(actual) != len(shape) or any(
            e is not None and a != e for a, e in zip(actual, shape, strict=True)
        )
        if mismatch:
            want = tuple("*" if e is None else e for e in shape)
            return f"{key} has shape {actual}, expected {want} ({FLAME_KEYS[key]})"
    faces = arrays["f"]
    if faces.size and (faces.min() < 0 or faces.max() >= num_verts):
        return f"f indexes vertices {faces.min()}..{faces.max()}, the model has {num_verts}"
    parents = kintree[0, 1:]
    if np.any(parents < 0) or np.any(parents >= np.arange(1, num_joints)):
        return f"kintree_table's parents {kintree[0].tolist()} do not precede their children"
    return None


def convert_flame(src: str | os.PathLike, dst: str | os.PathLike) -> Path:
    """Convert FLAME's ``generic_model.pkl`` (``src``) into an asccl ``.npz`` (``dst``).

    The pickle is read with :class:`RestrictedUnpickler` (no code from the file runs); the
    ``.npz`` holds the :data:`FLAME_KEYS` arrays (float32; ``f``/``kintree_table`` int64) and
    ``format`` = :data:`FLAME_NPZ_FORMAT`, written atomically (:func:`asccl.io.atomic_write`).

    Returns:
        ``dst`` as a :class:`~pathlib.Path`.
    """
    arrays = read_flame_pickle(src)
    out = {
        key: value if value.dtype == np.int64 else value.astype(np.float32)
        for key, value in arrays.items()
    }
    out["format"] = np.array(FLAME_NPZ_FORMAT)
    dst = Path(dst)
    with atomic_write(dst) as tmp, open(tmp, "wb") as handle:
        np.savez(handle, **out)
    return dst
