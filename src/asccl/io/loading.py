"""Reading a weights file without running code from it, and loading it strictly.

:func:`read_weights` reads safetensors (checked by :mod:`asccl.io.safetensors_files`) or
``torch.load(weights_only=True)`` files; :func:`check_state_dict` and
:func:`load_state_dict_strict` check keys, shapes, dtypes and NaN/Inf before anything is
copied. Every failure is a one-line :class:`~asccl.io.errors.CheckpointError` naming the file.
"""

from __future__ import annotations

import os
import pickle
import struct
import zipfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import CheckpointError, few, first_line
from .safetensors_files import looks_like_safetensors, read_safetensors, safetensors_header

if TYPE_CHECKING:
    from torch import Tensor, nn

#: First bytes of a ``torch.save`` file in the zip format (PyTorch >= 1.6).
_ZIP_MAGIC = b"PK\x03\x04"
#: First bytes of a ``torch.save`` file in the legacy format: the pickled magic number.
_LEGACY_MAGIC = b"\x80\x02\x8a\x0al\xfc\x9cF\xf9 j\xa8P\x19."

StateFilter = Callable[[Mapping[str, Any], "nn.Module"], Mapping[str, Any]]


# ---------------------------------------------------------------------------------- reading


def read_weights(file: str | os.PathLike) -> dict[str, Any]:
    """The contents of a weights file as a dict, read without running code from it.

    ``.safetensors`` files (or any file whose bytes are safetensors) are read with
    safetensors: ``{name: tensor}``. Anything else is read with
    ``torch.load(map_location="cpu", weights_only=True)`` (zip and legacy formats) and must
    hold a dict (a state dict, possibly wrapped: unwrap it with a ``filter_fn`` of
    :func:`load_state_dict_strict`).

    Raises:
        CheckpointError: missing, a folder, unreadable, empty, truncated, malformed, pickled
            objects other than tensors, or not a dict; the message names the file.
    """
    path = Path(file)
    size = _check_file(path)
    head = _read_head(path, 16)
    if path.suffix == ".safetensors" or looks_like_safetensors(head):
        return read_safetensors(path, size)
    return _read_torch(path, head)


def read_safetensors_metadata(file: str | os.PathLike) -> dict[str, str]:
    """The ``__metadata__`` of a safetensors file's header (``{}`` if none), after checking
    the header is well formed and the file holds all the tensor data it describes."""
    path = Path(file)
    return safetensors_header(path, _check_file(path))[1]


def _check_file(path: Path) -> int:
    """The file's size; a :class:`CheckpointError` if it is absent, a folder or empty."""
    try:
        st = path.stat()
    except FileNotFoundError:
        raise CheckpointError(path, "no such checkpoint file") from None
    except OSError as exc:
        raise CheckpointError(path, f"cannot be read ({exc.strerror or exc})") from None
    if path.is_dir():
        raise CheckpointError(path, "is a folder, not a weights file")
    if st.st_size == 0:
        raise CheckpointError(path, "empty file (0 bytes)")
    return st.st_size


def _read_head(path: Path, n: int) -> bytes:
    try:
        with open(path, "rb") as handle:
            return handle.read(n)
    except OSError as exc:
        raise CheckpointError(path, f"cannot be read ({exc.strerror or exc})") from None


def _read_torch(path: Path, head: bytes) -> dict[str, Any]:
    import torch

    if head.startswith(_ZIP_MAGIC):
        if not zipfile.is_zipfile(path):
            raise CheckpointError(
                path, "truncated or corrupt PyTorch file (a zip archive without its directory)"
            )
    elif not head.startswith(_LEGACY_MAGIC):
        raise CheckpointError(
            path, "not a weights file: neither safetensors nor a PyTorch checkpoint (torch.save)"
        )
    try:
        # zip files are memory-mapped: a refused file's tensors are never read in full
        mmap = head.startswith(_ZIP_MAGIC)
        state = torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except pickle.UnpicklingError as exc:
        if "weights only" in str(exc).lower():
            raise CheckpointError(
                path,
                "holds pickled Python objects, not only tensors: refused "
                "(torch.load(weights_only=True) runs no code from a file)",
            ) from None
        raise CheckpointError(path, f"corrupt PyTorch file ({first_line(exc)})") from None
    except (EOFError, struct.error) as exc:
        raise CheckpointError(path, f"truncated PyTorch file ({first_line(exc)})") from None
    except Exception as exc:  # torch's RuntimeError/OSError for a damaged archive or pickle
        raise CheckpointError(
            path, f"corrupt or truncated PyTorch file ({first_line(exc)})"
        ) from None
    if not isinstance(state, dict):
        raise CheckpointError(
            path, f"holds a {type(state).__name__}, not a state dict (name -> tensor)"
        )
    return state


# ---------------------------------------------------------------------------------- loading


def check_state_dict(
    model: nn.Module,
    state: Mapping[str, Any],
    file: str | os.PathLike,
    filter_fn: StateFilter | None = None,
    *,
    what: str | None = None,
) -> dict[str, Tensor]:
    """``state`` after ``filter_fn``, checked to load into ``model`` exactly; nothing loaded.

    Checks, in order: ``filter_fn`` succeeds (a ``ValueError``/``KeyError``/``TypeError``
    from it becomes the error's text), the keys equal the model's (missing and unexpected
    ones listed, a few names and the counts), every value is a tensor of the model's shape,
    floating where the model's is, and finite (the first NaN/Inf key is named).

    Args:
        model: the module to load into (may live on the ``meta`` device: only its state
            dict's keys, shapes and dtypes are read).
        state: what :func:`read_weights` returned, or any mapping.
        file: the file ``state`` came from, named in every error.
        filter_fn: ``filter_fn(state, model) -> state``, as timm's: unwraps containers,
            strips prefixes, maps a foreign key layout, fills optional buffers.
        what: the expected network in words, for messages (default: the model's class).

    Raises:
        CheckpointError: one line naming ``file`` and the first problem found.
    """
    from torch import Tensor

    what = what or f"a {type(model).__name__}"
    if filter_fn is not None:
        try:
            state = filter_fn(state, model)
        except CheckpointError:
            raise
        except (ValueError, KeyError, TypeError) as exc:
            raise CheckpointError(file, str(exc)) from None
    if not isinstance(state, Mapping):
        raise CheckpointError(file, f"holds a {type(state).__name__}, not a state dict")
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = sorted(str(k) for k in state if k not in expected)
    if missing or unexpected:
        raise CheckpointError(
            file,
            f"keys do not match {what}: {len(missing)} missing ({few(missing)}), "
            f"{len(unexpected)} unexpected ({few(unexpected)}); is it the right file?",
        )
    not_tensors = [k for k in expected if not isinstance(state[k], Tensor)]
    if not_tensors:
        k = not_tensors[0]
        raise CheckpointError(
            file, f"{k} holds a {type(state[k]).__name__}, not a tensor ({len(not_tensors)} such)"
        )
    wrong = [k for k in expected if tuple(state[k].shape) != tuple(expected[k].shape)]
    if wrong:
        k = wrong[0]
        raise CheckpointError(
            file,
            f"{len(wrong)} tensor(s) of the wrong shape for {what}: {k} "
            f"{tuple(state[k].shape)}, expected {tuple(expected[k].shape)}",
        )
    for k, ref in expected.items():
        if ref.is_floating_point() and not state[k].is_floating_point():
            raise CheckpointError(file, f"{k} is {state[k].dtype}, expected floating point")
    for k in expected:
        if not _all_finite(state[k]):
            bad = "NaN" if bool(state[k].isnan().any()) else "Inf"
            raise CheckpointError(file, f"{k} holds {bad} values: refused")
    return {k: state[k] for k in expected}


def _all_finite(value: Tensor) -> bool:
    """No NaN/Inf in ``value``. A finite sum proves it in one pass without a mask (NaN and
    Inf propagate through a sum); a sum that overflows is checked element by element."""
    if not (value.is_floating_point() or value.is_complex()) or value.numel() == 0:
        return True
    return bool(value.sum().isfinite()) or bool(value.isfinite().all())


def load_state_dict_strict(
    model: nn.Module,
    state: Mapping[str, Any],
    file: str | os.PathLike,
    filter_fn: StateFilter | None = None,
    *,
    what: str | None = None,
) -> nn.Module:
    """Load ``state`` (from ``file``) into ``model`` strictly; returns ``model``.

    Every check of :func:`check_state_dict` runs before anything is copied, so a failed
    load leaves ``model`` as it was.

    Raises:
        CheckpointError: one line naming ``file``.
    """
    checked = check_state_dict(model, state, file, filter_fn, what=what)
    try:
        model.load_state_dict(checked, strict=True)
    except RuntimeError as exc:  # checked above; kept so that nothing escapes unnamed
        raise CheckpointError(file, f"does not load ({first_line(exc)})") from None
    return model


def load_weights(
    model: nn.Module,
    file: str | os.PathLike,
    filter_fn: StateFilter | None = None,
    *,
    what: str | None = None,
) -> nn.Module:
    """:func:`read_weights` then :func:`load_state_dict_strict`: ``file`` into ``model``."""
    return load_state_dict_strict(model, read_weights(file), file, filter_fn, what=what)


def unwrap_state_dict(state: Mapping[str, Any], model: nn.Module | None = None) -> dict:
    """Filter: unwrap ``{"state_dict": ...}`` / ``{"model": ...}`` containers and strip
    DDP's ``module.`` prefixes."""
    for wrapper in ("state_dict", "model"):
        if isinstance(state.get(wrapper), Mapping):
            state = state[wrapper]
    return {str(k).removeprefix("module."): v for k, v in state.items()}


def fill_batchnorm_counters(state: Mapping[str, Any], model: nn.Module) -> dict:
    """Filter: add the BatchNorm ``num_batches_tracked`` counters a file lacks (state dicts
    saved before PyTorch 0.4.1 have none; eval-mode BatchNorm never reads them). Any other
    missing key is still an error of the strict load."""
    import torch

    state = dict(state)
    for key in model.state_dict():
        if key.endswith(".num_batches_tracked") and key not in state:
            state[key] = torch.zeros((), dtype=torch.long)
    return state
