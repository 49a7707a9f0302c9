"""The one error type of the data stage: a bad input file, named, with what is wrong."""

from __future__ import annotations

import os

__all__ = ["DataError", "printable_path"]


def printable_path(path: str | os.PathLike) -> str:
    """``path`` as text that prints on one line anywhere.

    Bytes of a name that are not UTF-8 (Python keeps them as lone surrogates, e.g.
    ``os.fsdecode(b"\\xff")``) are written ``\\xff``; line breaks as ``\\n``/``\\r``.
    """
    text = os.fspath(path) if isinstance(path, str | bytes | os.PathLike) else str(path)
    if isinstance(text, bytes):
        text = os.fsdecode(text)
    text = text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    return text.replace("\n", "\\n").replace("\r", "\\r")


def _one_line(text: str) -> str:
    """``text`` on one line, with any non-UTF-8 bytes escaped as in :func:`printable_path`."""
    text = text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    return " ".join(text.split()) if ("\n" in text or "\r" in text) else text


class DataError(ValueError):
    """A dataset file or folder cannot be used. ``str(err)`` is one line: ``path: problem``.

    ``path`` is kept as :func:`printable_path` text, so the message prints (and goes into
    a UTF-8 log) whatever bytes the file name holds.

    It survives a trip through a DataLoader worker as itself: PyTorch re-raises a worker's
    exception by calling its class with one argument, its traceback text
    (``torch._utils.ExceptionWrapper``); from that this class takes back the original
    ``path: problem`` line instead of failing into a 70-line ``RuntimeError``.
    """

    def __init__(self, path: str | os.PathLike, problem: str | None = None) -> None:
        if problem is None:  # one argument: unpickling, or a DataLoader worker's traceback
            path, problem = _split_message(str(path), type(self))
        self.path = printable_path(path)
        self.problem = _one_line(str(problem))
        super().__init__(f"{self.path}: {self.problem}")

    def __reduce__(self) -> tuple:
        return type(self), (self.path, self.problem)


def _split_message(text: str, cls: type) -> tuple[str, str]:
    """``(path, problem)`` from ``"path: problem"`` or from a traceback whose last line is
    ``"<module>.<Class>: path: problem"`` (the form ``traceback.format_exception`` ends
    with)."""
    prefix = f"{cls.__module__}.{cls.__qualname__}: "
    for line in reversed(text.splitlines()):
        if line.startswith(prefix):
            text = line[len(prefix) :]
            break
    else:
        text = _one_line(text)
    path, sep, problem = text.partition(": ")
    return (path, problem) if sep else ("?", text)
