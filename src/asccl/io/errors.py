"""The one error of a weights or checkpoint file, and the helpers that word its message."""

from __future__ import annotations

import os

#: How many key names an error message lists.
_FEW = 3


class CheckpointError(ValueError):
    """A weights or checkpoint file cannot be used. ``str(err)`` is one line: ``file: problem``.

    ``problem`` is folded onto one line (library messages can span several).
    """

    def __init__(self, file: str | os.PathLike, problem: str) -> None:
        self.file = str(file)
        self.problem = " ".join(problem.split())
        super().__init__(f"{self.file}: {self.problem}")


def first_line(exc: BaseException) -> str:
    """The first line of ``exc``'s message (its type's name if empty), cut to 160 characters."""
    text = str(exc).strip()
    line = text.splitlines()[0] if text else type(exc).__name__
    return line if len(line) <= 160 else line[:157] + "..."


def few(items: list[str], limit: int = _FEW) -> str:
    """``"a, b, c and 4 more"``; ``"none"`` for an empty list."""
    if not items:
        return "none"
    more = f" and {len(items) - limit} more" if len(items) > limit else ""
    return ", ".join(items[:limit]) + more
