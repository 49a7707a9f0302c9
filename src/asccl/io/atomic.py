"""The one atomic write: :func:`atomic_write` for files and folders (temporary sibling,
``fsync``, rename), and :func:`write_text_atomic`, :func:`write_bytes_atomic` for whole
contents, so a crash or an error never leaves a half-written output."""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path


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
