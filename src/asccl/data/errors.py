"""The one error type of the data stage: a bad input file, named, with what is wrong."""

from __future__ import annotations

import os


class DataError(ValueError):
    """A dataset file or folder cannot be used. ``str(err)`` is one line: ``path: problem``."""

    def __init__(self, path: str | os.PathLike, problem: str) -> None:
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")
