"""Writing matplotlib figures: headless (Agg), atomically (:func:`asccl.io.atomic_write`),
one place."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from asccl.io import atomic_write


def pyplot() -> Any:
    """``matplotlib.pyplot`` on the Agg backend (no display needed), imported lazily."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig: Any, path: str | os.PathLike, dpi: int = 120) -> Path:
    """Save ``fig`` as a PNG at ``path`` atomically, close it, and return ``path``.

    The saved area is the figure's drawn content plus a small pad (``bbox_inches="tight"``),
    so no title, label or legend is ever cut off, whatever the layout left outside.
    """
    path = Path(path)
    try:
        with atomic_write(path) as tmp:
            fig.savefig(tmp, dpi=dpi, bbox_inches="tight", pad_inches=0.08)
    finally:
        pyplot().close(fig)
    return path
