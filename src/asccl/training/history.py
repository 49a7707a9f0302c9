"""The training log: one CSV row per logged step (train) or validation (val), optional
TensorBoard, and a PNG of the curves."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

from asccl.figures import pyplot, save_figure

STAGES = 4
COLUMNS = [
    "step", "epoch", "split", "loss", "positive_cosine", "negative_cosine", "gap",
    *(f"positive_cosine_{i + 1}" for i in range(STAGES)),
    *(f"negative_cosine_{i + 1}" for i in range(STAGES)),
    "pairs_per_s", "lr",
]  # fmt: skip


class TrainingLog:
    """Appends rows to ``<out>/log.csv``; on resume, rows past the resumed step are dropped
    first (they belong to the run that was killed)."""

    def __init__(self, out: Path, resumed_step: int | None, tensorboard: bool = False) -> None:
        self.path = out / "log.csv"
        out.mkdir(parents=True, exist_ok=True)
        rows = []
        if self.path.exists() and resumed_step is not None:
            with self.path.open(newline="") as handle:
                rows = [r for r in csv.DictReader(handle) if int(r["step"]) <= resumed_step]
        with self.path.open("w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=COLUMNS)
            writer.writeheader()
            writer.writerows(rows)
        self.writer = None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError as exc:
                raise ImportError("tensorboard=true needs: pip install tensorboard") from exc
            self.writer = SummaryWriter(str(out / "tensorboard"))

    def write(self, row: dict[str, Any]) -> None:
        with self.path.open("a", newline="") as handle:
            csv.DictWriter(handle, fieldnames=COLUMNS).writerow(
                {k: _fmt(row.get(k)) for k in COLUMNS}
            )
        if self.writer is not None:
            for key, value in row.items():
                if isinstance(value, (int, float)) and key not in ("step", "epoch"):
                    self.writer.add_scalar(f"{row['split']}/{key}", value, row["step"])

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def _fmt(value: Any) -> Any:
    if isinstance(value, float):
        return f"{value:.6g}"
    return "" if value is None else value


def read_log(path: Path) -> list[dict[str, Any]]:
    """Rows of a ``log.csv`` with numbers parsed."""
    with path.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    for row in rows:
        for key, value in row.items():
            if key != "split":
                row[key] = float(value) if value not in ("", None) else None
    return rows


def plot_curves(log_path: Path, png_path: Path) -> Path:
    """Loss (train and validation) and the validation health signal: mean positive and
    negative cosine and their gap, per step."""
    plt = pyplot()

    rows = read_log(log_path)
    train = [r for r in rows if r["split"] == "train"]
    val = [r for r in rows if r["split"] == "val"]
    fig, (ax_loss, ax_cos) = plt.subplots(1, 2, figsize=(10, 3.8))
    for subset, name in ((train, "train"), (val, "validation")):
        if subset:
            ax_loss.plot([r["step"] for r in subset], [r["loss"] for r in subset],
                         marker="o" if name == "validation" else None, label=name)  # fmt: skip
    ax_loss.set_xlabel("step")
    ax_loss.set_ylabel("ASCCL loss")
    ax_loss.legend()
    ax_loss.grid(alpha=0.3)
    if val:
        steps = [r["step"] for r in val]
        ax_cos.plot(steps, [r["positive_cosine"] for r in val], marker="o", label="positive pairs")
        ax_cos.plot(steps, [r["negative_cosine"] for r in val], marker="o", label="negative pairs")
        ax_cos.plot(steps, [r["gap"] for r in val], marker="o", label="gap (health signal)")
        ax_cos.legend()
    ax_cos.set_xlabel("step")
    ax_cos.set_ylabel("mean cosine similarity (validation)")
    ax_cos.grid(alpha=0.3)
    fig.tight_layout()
    return save_figure(fig, png_path, dpi=120)
