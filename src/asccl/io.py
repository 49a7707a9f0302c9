"""One loading path for every weights and checkpoint file, and one way to write files.

Every pretrained or own checkpoint asccl loads (a metric checkpoint, the authors' metric
``.pth``, insightface's ``backbone.pth``, syncnet_python's ``syncnet_v2.model``,
pytorch-fid's ``pt_inception-*.pth``) goes through :func:`read_weights` and
:func:`load_state_dict_strict`, so each failure is a :class:`CheckpointError` whose text is
one line naming the file: missing, empty, truncated, malformed, pickled objects, another
network's keys, wrong shapes, NaN/Inf values.

Every file or folder asccl writes for others to read goes through :func:`atomic_write`
(temporary sibling, ``fsync``, rename; :func:`write_text_atomic`, :func:`write_bytes_atomic`
for whole contents), so a crash or an error never leaves a half-written output.
:func:`save_safetensors` writes a safetensors file with its metadata in a fixed (sorted)
order, so identical inputs give byte-identical files.

Nothing here imports torch at module level: ``asccl.cli`` imports the error class cheaply.
"""

from __future__ import annotations

import contextlib
import json
import os
import pickle
import shutil
import stat
import struct
import tempfile
import zipfile
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from torch import Tensor, nn

#: First bytes of a ``torch.save`` file in the zip format (PyTorch >= 1.6).
_ZIP_MAGIC = b"PK\x03\x04"
#: First bytes of a ``torch.save`` file in the legacy format: the pickled magic number.
_LEGACY_MAGIC = b"\x80\x02\x8a\x0al\xfc\x9cF\xf9 j\xa8P\x19."
#: A safetensors header larger than this is refused as malformed (the library's own limit).
_MAX_HEADER = 100_000_000
#: How many key names an error message lists.
_FEW = 3

StateFilter = Callable[[Mapping[str, Any], "nn.Module"], Mapping[str, Any]]


class CheckpointError(ValueError):
    """A weights or checkpoint file cannot be used. ``str(err)`` is one line: ``file: problem``.

    ``problem`` is folded onto one line (library messages can span several).
    """

    def __init__(self, file: str | os.PathLike, problem: str) -> None:
        self.file = str(file)
        self.problem = " ".join(problem.split())
        super().__init__(f"{self.file}: {self.problem}")


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
    if path.suffix == ".safetensors" or _looks_like_safetensors(head):
        return _read_safetensors(path, size)
    return _read_torch(path, head)


def read_safetensors_metadata(file: str | os.PathLike) -> dict[str, str]:
    """The ``__metadata__`` of a safetensors file's header (``{}`` if none), after checking
    the header is well formed and the file holds all the tensor data it describes."""
    path = Path(file)
    return _safetensors_header(path, _check_file(path))[1]


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


def _looks_like_safetensors(head: bytes) -> bool:
    """8-byte little-endian header length, then the header's opening brace."""
    if len(head) < 9 or head[8:9] != b"{":
        return False
    return struct.unpack("<Q", head[:8])[0] <= _MAX_HEADER


def _safetensors_header(path: Path, size: int) -> tuple[dict[str, Any], dict[str, str]]:
    """``({name: {dtype, shape, data_offsets}}, metadata)`` of a safetensors file, checked
    for truncation and malformed entries before the library reads it."""
    try:
        with open(path, "rb") as handle:
            prefix = handle.read(8)
            if len(prefix) < 8:
                raise CheckpointError(path, f"not a readable safetensors file (only {size} bytes)")
            (length,) = struct.unpack("<Q", prefix)
            if length > _MAX_HEADER:
                raise CheckpointError(
                    path,
                    f"not a readable safetensors file (header length {length} is implausible)",
                )
            if length > size - 8:
                raise CheckpointError(
                    path,
                    f"truncated safetensors file: its header needs {length} bytes, "
                    f"only {size - 8} follow",
                )
            raw = handle.read(length)
    except OSError as exc:
        raise CheckpointError(path, f"cannot be read ({exc.strerror or exc})") from None
    try:
        header = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(
            path, f"not a readable safetensors file (its header is not JSON: {exc})"
        ) from None
    if not isinstance(header, dict):
        raise CheckpointError(
            path, "not a readable safetensors file (its header is not a JSON object)"
        )
    metadata = header.pop("__metadata__", None) or {}
    if not isinstance(metadata, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()
    ):
        raise CheckpointError(path, "malformed safetensors header (__metadata__ is not str -> str)")
    end = 0
    for name, entry in header.items():
        offsets = entry.get("data_offsets") if isinstance(entry, dict) else None
        if (
            not isinstance(offsets, list)
            or len(offsets) != 2
            or not all(isinstance(o, int) and o >= 0 for o in offsets)
            or offsets[0] > offsets[1]
        ):
            raise CheckpointError(path, f"malformed safetensors header: entry {name!r}")
        end = max(end, offsets[1])
    available = size - 8 - length
    if end > available:
        raise CheckpointError(
            path,
            f"truncated safetensors file: its tensors need {end} bytes of data, "
            f"only {available} are there",
        )
    return header, metadata


def _read_safetensors(path: Path, size: int) -> dict[str, Tensor]:
    from safetensors.torch import load_file

    _safetensors_header(path, size)
    try:
        return load_file(str(path))
    except Exception as exc:  # SafetensorError and friends: the header was checked above
        raise CheckpointError(
            path, f"not a readable safetensors file ({_first_line(exc)})"
        ) from None


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
        raise CheckpointError(path, f"corrupt PyTorch file ({_first_line(exc)})") from None
    except (EOFError, struct.error) as exc:
        raise CheckpointError(path, f"truncated PyTorch file ({_first_line(exc)})") from None
    except Exception as exc:  # torch's RuntimeError/OSError for a damaged archive or pickle
        raise CheckpointError(
            path, f"corrupt or truncated PyTorch file ({_first_line(exc)})"
        ) from None
    if not isinstance(state, dict):
        raise CheckpointError(
            path, f"holds a {type(state).__name__}, not a state dict (name -> tensor)"
        )
    return state


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    line = text.splitlines()[0] if text else type(exc).__name__
    return line if len(line) <= 160 else line[:157] + "..."


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
        raise CheckpointError(file, f"does not load ({_first_line(exc)})") from None
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


def few(items: list[str], limit: int = _FEW) -> str:
    """``"a, b, c and 4 more"``; ``"none"`` for an empty list."""
    if not items:
        return "none"
    more = f" and {len(items) - limit} more" if len(items) > limit else ""
    return ", ".join(items[:limit]) + more


# ---------------------------------------------------------------------------------- writing


@contextlib.contextmanager
def atomic_write(
    path: str | os.PathLike, mode: int | None = None, *, folder: bool = False
) -> Iterator[Path]:
    """Yield a temporary path beside ``path`` to fill; on success it replaces ``path``.

    The one way asccl replaces a file or a folder: a reader sees the old ``path`` or the
    whole new one, never a half-written one, and a failed or interrupted write changes
    nothing that was there::

        with atomic_write(out / "table.csv") as tmp:
            tmp.write_text(text)

    The temporary path is ``.<name>.<random>.tmp<suffix>`` in ``path``'s folder (created
    if needed; hidden; the same file system, so the rename is atomic; the target's suffix
    kept so writers that pick a format from the name, such as ``savefig``, ``np.savez``
    and PyAV, write the right one). It is an empty file, or with ``folder=True`` an empty
    folder to fill with files.

    On leaving the block normally: the data is flushed to disk (``fsync``, every file of a
    folder), the permission bits are set, the temporary path is renamed onto ``path`` and
    the folder's entry is flushed. A file replacing a file is one atomic rename; when a
    folder is replaced (or a file by a folder, or a folder by a file) the old one is first
    renamed aside, then deleted after the new one is in place. On an exception (including
    ``KeyboardInterrupt``) the temporary path is removed and ``path`` is left as it was.

    Args:
        path: the file or folder to write.
        mode: permission bits for the result (applied whatever the umask; ``0o600`` keeps
            a secret private from its creation). Default: those of the file or folder it
            replaces, else ``0o644`` for a file and ``0o755`` for a folder.
        folder: yield a folder instead of a file.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if mode is None:
        mode = _replaced_mode(path, folder)
    prefix, suffix = f".{path.name}.", f".tmp{path.suffix}"
    if folder:
        tmp = Path(tempfile.mkdtemp(suffix, prefix, path.parent))
    else:
        fd, raw = tempfile.mkstemp(suffix, prefix, path.parent)  # 0600 until the chmod
        os.close(fd)
        tmp = Path(raw)
    try:
        yield tmp
        _fsync_tree(tmp)
        os.chmod(tmp, mode)
        _replace(tmp, path)
    except BaseException:
        _remove(tmp)
        raise
    _fsync(path.parent)


def write_bytes_atomic(path: str | os.PathLike, data: bytes, mode: int | None = None) -> Path:
    """Write ``data`` to ``path`` through :func:`atomic_write`; returns ``path``."""
    path = Path(path)
    with atomic_write(path, mode) as tmp:
        tmp.write_bytes(data)
    return path


def write_text_atomic(path: str | os.PathLike, text: str, mode: int | None = None) -> Path:
    """Write ``text`` as UTF-8 (newlines as given) through :func:`atomic_write`; returns
    ``path``."""
    return write_bytes_atomic(path, text.encode("utf-8"), mode)


def _replaced_mode(path: Path, folder: bool) -> int:
    """The permission bits of what ``path`` holds, if it is of the same kind."""
    try:
        st = path.stat()
    except OSError:
        st = None
    if st is not None and stat.S_ISDIR(st.st_mode) == folder:
        return stat.S_IMODE(st.st_mode)
    return 0o755 if folder else 0o644


def _replace(tmp: Path, path: Path) -> None:
    """Rename ``tmp`` onto ``path``. A folder on either side is not replaced by one rename
    (POSIX replaces only empty folders): the old ``path`` is renamed aside, into a fresh
    hidden folder beside it, then ``tmp`` into place, then the old one deleted."""
    one_rename = not tmp.is_dir() and not (path.is_dir() and not path.is_symlink())
    if one_rename or not os.path.lexists(path):
        os.replace(tmp, path)
        return
    aside = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.", suffix=".old"))
    os.replace(path, aside / "old")
    try:
        os.replace(tmp, path)
    except BaseException:
        os.replace(aside / "old", path)  # put the old one back
        aside.rmdir()
        raise
    _remove(aside)


def _remove(path: Path) -> None:
    """Delete a file or folder tree, ignoring errors (a cleanup must not hide the cause)."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(OSError):
            path.unlink()


def _fsync_tree(path: Path) -> None:
    """Flush ``path`` to disk; a folder's files and sub-folders too."""
    if path.is_dir():
        for root, dirs, files in os.walk(path):
            for entry in files:
                _fsync(Path(root) / entry)
            for entry in dirs:
                _fsync(Path(root) / entry)
    _fsync(path)


def _fsync(path: Path) -> None:
    """``fsync`` a file or folder; file systems that cannot sync a folder are let be."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def safetensors_bytes(tensors: Mapping[str, Tensor], metadata: Mapping[str, str]) -> bytes:
    """A safetensors file's bytes with ``__metadata__`` first and its keys sorted.

    safetensors' own writer emits the metadata in hash-map order, which changes from one
    process to the next; the tensors' entries and data are already in a fixed order.
    """
    from safetensors.torch import save

    raw = save(dict(tensors))
    (length,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + length])
    header.pop("__metadata__", None)
    ordered = {"__metadata__": {k: str(metadata[k]) for k in sorted(metadata)}} if metadata else {}
    text = json.dumps({**ordered, **header}, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)  # the data starts 8-byte aligned, as the library writes
    return struct.pack("<Q", len(text)) + text + raw[8 + length :]


def save_safetensors(
    tensors: Mapping[str, Tensor], path: str | os.PathLike, metadata: Mapping[str, str]
) -> Path:
    """Write ``tensors`` (contiguous CPU) and ``metadata`` to ``path`` atomically, byte for
    byte the same for the same inputs (see :func:`safetensors_bytes`)."""
    return write_bytes_atomic(path, safetensors_bytes(tensors, metadata))
