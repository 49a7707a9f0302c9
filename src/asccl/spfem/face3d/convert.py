"""One-off conversion of FLAME's ``generic_model.pkl`` into the ``.npz`` asccl loads.

FLAME is distributed as a Python 2 pickle holding numpy arrays, chumpy arrays (``chumpy.ch.Ch``)
and a scipy sparse matrix (``J_regressor``). Unpickling runs whatever callables the file names,
so a tampered ``.pkl`` can execute arbitrary code (``os.system`` and friends) the moment it is
loaded with :func:`pickle.load`. DECA and NED do exactly that. Here the file is read once by
:class:`RestrictedUnpickler`, whose ``find_class`` allows only the handful of globals a FLAME
pickle needs:

* numpy's array reconstruction (``_reconstruct``, ``ndarray``, ``dtype``, ``scalar``) and
  ``_codecs.encode`` (how Python 3 protocol-2 pickles store bytes);
* ``copy_reg._reconstructor`` / ``__builtin__.object`` (Python 2 object reconstruction);
* ``chumpy.ch.Ch``, mapped to :class:`_ChumpyArray`, a stand-in that keeps only its ``x`` array:
  chumpy itself is never imported;
* scipy's ``csc_matrix`` / ``csr_matrix``, mapped to :class:`_SparseMatrix`, a stand-in that
  keeps ``data``, ``indices``, ``indptr`` and the shape and densifies them with numpy.

Anything else (``os.system``, ``builtins.eval``, other chumpy classes) raises
:class:`Face3DModelError` naming the global. The residual risk: numpy's reconstruction code
parses attacker-controlled bytes, as ``np.load`` does; no code from the file runs. The output is a
plain ``.npz`` (read with ``allow_pickle=False``), so the pickle is never opened again.
"""

from __future__ import annotations

import copyreg
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


class _ChumpyArray:
    """Stand-in for ``chumpy.ch.Ch``: keeps the ``x`` array of its pickled state, nothing else."""

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

    def __setstate__(self, state: Any) -> None:
        if not isinstance(state, dict):
            raise pickle.UnpicklingError("a sparse matrix whose state is not a dict")
        self.state = state

    def dense(self) -> np.ndarray:
        s = self.state
        shape = s.get("_shape", s.get("shape"))
        if shape is None or not all(k in s for k in ("data", "indices", "indptr")):
            raise ValueError(f"sparse matrix state lacks data/indices/indptr/shape: {sorted(s)}")
        rows, cols = (int(n) for n in shape)
        data, indices, indptr = (np.asarray(s[k]) for k in ("data", "indices", "indptr"))
        out = np.zeros((rows, cols), dtype=np.float64)
        major = cols if self.kind == "csc" else rows
        if indptr.shape != (major + 1,):
            raise ValueError(f"indptr has shape {indptr.shape}, expected ({major + 1},)")
        counts = np.diff(indptr)
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
    ("copy_reg", "_reconstructor"): copyreg._reconstructor,  # type: ignore[attr-defined]
    ("copyreg", "_reconstructor"): copyreg._reconstructor,  # type: ignore[attr-defined]
    ("__builtin__", "object"): object,
    ("builtins", "object"): object,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("chumpy.ch", "Ch"): _ChumpyArray,
}
for _module in ("numpy.core.multiarray", "numpy._core.multiarray"):
    _ALLOWED[(_module, "_reconstruct")] = "_reconstruct"
    _ALLOWED[(_module, "scalar")] = "scalar"
for _module in ("scipy.sparse.csc", "scipy.sparse._csc"):
    _ALLOWED[(_module, "csc_matrix")] = _SparseMatrix
for _module in ("scipy.sparse.csr", "scipy.sparse._csr"):
    _ALLOWED[(_module, "csr_matrix")] = _CSRMatrix


class RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that resolves only the globals a FLAME model pickle needs (see module doc)."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) == ("_codecs", "encode"):
            import codecs

            return codecs.encode
        target = _ALLOWED.get((module, name))
        if target is None:
            raise pickle.UnpicklingError(f"forbidden global {module}.{name}")
        if isinstance(target, str):  # numpy internals, looked up lazily
            return _numpy_global(target)
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
