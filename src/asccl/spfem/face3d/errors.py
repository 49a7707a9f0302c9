"""``Face3DModelError``: a morphable-model file that is missing, unsafe or malformed."""

from __future__ import annotations

import os
from pathlib import Path

#: Where the authors publish each model file (nothing downloads: users fetch them by hand).
FLAME_SOURCE = (
    "https://flame.is.tue.mpg.de (registration required; DECA/NED use FLAME 2020's "
    "generic_model.pkl)"
)
BFM_SOURCE = (
    "https://faces.dmi.unibas.ch/bfm/ (Basel Face Model 2009, registration required), "
    "converted to BFM_model_front.mat as in Deep3DFaceRecon_pytorch's README "
    "(github.com/sicxu/Deep3DFaceRecon_pytorch, 'Prepare prerequisite models')"
)


class Face3DModelError(ValueError):
    """A 3DMM file that cannot be used: one line naming the file, the problem and the source.

    Attributes:
        path: the offending file.
        problem: what is wrong with it.
        source: where its authors publish the correct file.
    """

    def __init__(self, path: str | os.PathLike, problem: str, source: str) -> None:
        self.path = Path(path)
        self.problem = problem
        self.source = source
        super().__init__(f"{self.path}: {problem}. The model is published at {source}.")


def require_model_file(path: str | os.PathLike, source: str) -> Path:
    """``path`` as an existing file, or :class:`Face3DModelError` saying where to get it."""
    file = Path(path).expanduser()
    if not file.is_file():
        raise Face3DModelError(file, "no such file", source)
    return file
