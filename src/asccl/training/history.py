"""The training log of every trainer: ``log.csv`` (one row per logged step or validation),
optional TensorBoard, and a PNG of the curves."""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from asccl.figures import pyplot, save_figure
from asccl.io import atomic_write
from asccl.optional import MissingDependencyError

if TYPE_CHECKING:
    from matplotlib.figure import Figure

#: columns that place a row, not series to plot
PLACE = ("step", "epoch", "split")


class TrainingLog:
    """``<out>/log.csv``: rows of ``{column: value}``; the header grows when a row brings a
    new column (the file is then rewritten). On resume, rows past the resumed step are
    dropped first (they belong to the run that was killed); a fresh run starts empty.
    Rows go to TensorBoard too (``tensorboard``: under ``<out>/tensorboard``, tagged
    ``<split>/<column>``)."""

    def __init__(self, out: Path, resumed_step: int | None, tensorboard: bool = False) -> None:
        self.path = out / "log.csv"
        self.rows: list[dict[str, Any]] = []
        self.columns: list[str] = []
        if self.path.exists() and resumed_step is not None:
            self.columns, self.rows = _rows_up_to(self.path, resumed_step)
        self._rewrite()
        self.writer = None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError as exc:
                raise MissingDependencyError("tensorboard", "tensorboard = true needs TensorBoard",
                                             exc) from exc  # fmt: skip
            self.writer = SummaryWriter(str(out / "tensorboard"))

    def write(self, row: Mapping[str, Any]) -> None:
        """Append ``row`` (``step`` first; floats kept to 6 significant digits)."""
        text = {k: _fmt(v) for k, v in row.items()}
        self.rows.append(text)
        if set(text) - set(self.columns):
            self.columns += [k for k in text if k not in self.columns]
            self._rewrite()
        else:
            with self.path.open("a", newline="") as handle:
                csv.DictWriter(handle, fieldnames=self.columns).writerow(text)
        if self.writer is not None:
            split = row.get("split") or "train"
            for key, value in row.items():
                if isinstance(value, (int, float)) and key not in PLACE:
                    self.writer.add_scalar(f"{split}/{key}", value, int(row["step"]))

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()

    def _rewrite(self) -> None:
        text = io.StringIO()
        if self.columns:
            writer = csv.DictWriter(text, fieldnames=self.columns)
            writer.writeheader()
            writer.writerows(self.rows)
        with atomic_write(self.path) as tmp:
            tmp.write_text(text.getvalue(), newline="")


def _rows_up_to(path: Path, step: int) -> tuple[list[str], list[dict[str, Any]]]:
    """The header and the whole rows of ``path`` up to ``step``. Rows are appended one
    write each, so only a power loss or a full disk tears one: a last line without its
    newline, or a row short of cells, is dropped (the resumed run logs its step again)."""
    with path.open(newline="") as handle:
        text = handle.read()
    if text and not text.endswith("\n"):
        text = text[: text.rfind("\n") + 1]  # the torn last line
    reader = csv.DictReader(io.StringIO(text, newline=""))
    columns = list(reader.fieldnames or [])
    rows = [r for r in reader if None not in r.values() and None not in r
            and r["step"].isdigit() and int(r["step"]) <= step]  # fmt: skip
    return columns, rows


def _fmt(value: Any) -> Any:
    if isinstance(value, float):
        return f"{value:.6g}"
    return "" if value is None else value


def read_log(path: Path) -> list[dict[str, Any]]:
    """Rows of a ``log.csv`` with numbers parsed (an empty cell is ``None``)."""
    with path.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    for row in rows:
        for key, value in row.items():
            if key != "split":
                row[key] = float(value) if value not in ("", None) else None
    return rows


def plot_curves(
    log_path: Path, png_path: Path, panels: Mapping[str, Callable[[str], bool]]
) -> Path:
    """The curves of ``log_path`` (see :func:`draw_curves`) as a PNG at ``png_path``."""
    return save_figure(draw_curves(read_log(log_path), panels), png_path, dpi=120)


def draw_curves(rows: list[dict[str, Any]], panels: Mapping[str, Callable[[str], bool]]) -> Figure:
    """One panel per ``{title: which columns}``, each holding every series it selects, per
    split (``train``/``val``) where the log has one, over the step. A sparse series (logged
    on fewer rows than its panel's densest one, e.g. every 4th step, or validation
    between training rows, or a single point) is drawn through its points with markers."""
    plt = pyplot()
    columns = [c for c in (rows[0] if rows else {}) if c not in PLACE]
    splits = list(dict.fromkeys(r.get("split") for r in rows))
    fig, axes = plt.subplots(1, len(panels), figsize=(4.8 * len(panels), 3.8), squeeze=False)
    for ax, (title, selects) in zip(axes[0], panels.items(), strict=True):
        series = []
        for column in filter(selects, columns):
            for split in splits:
                points = [(r["step"], r[column]) for r in rows
                          if r.get("split") == split and _finite(r[column])]  # fmt: skip
                if points:
                    label = column if len(splits) == 1 else f"{column} ({split})"
                    series.append((label, points))
        densest = max((len(points) for _, points in series), default=0)
        for label, points in series:
            sparse = len(points) < densest or len(points) < 2
            ax.plot(*zip(*points, strict=True), label=label, marker="o" if sparse else None,
                    markersize=3)  # fmt: skip
        ax.set_title(title)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
        if series:
            ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def _finite(value: Any) -> bool:
    return isinstance(value, float) and math.isfinite(value)
