"""A run's outputs: per setting its tables, plot and qualitative grid
(:func:`write_setting`), then ``scores.csv``, ``summary.json`` and ``report.txt``
(:func:`write_run_files`); :func:`remove_stale_outputs` drops what an earlier run wrote for
settings or methods no longer evaluated."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

from asccl.data.errors import DataError
from asccl.evaluation.config import EvalConfig, EvalSummary
from asccl.evaluation.results import ResultsIndex, read_frames
from asccl.evaluation.tables import plot_scores, qualitative_grid, write_tables
from asccl.io import write_text_atomic


def setting_grid(
    index: ResultsIndex, methods: list[str], setting: str, config: EvalConfig, path: Path
) -> Path | None:
    """A qualitative grid of ``setting`` at ``path``: up to ``grid_clips`` rows (one clip per
    emotion first), columns reference, source and each method; ``None`` if no clip."""
    methods = [m for m in methods if index.select(method=m, setting=setting)]
    names = sorted({(c.emotion, c.name) for c in index.select(setting=setting)})
    # one clip per emotion first (the paper's figures show every emotion), then the next
    rank: dict[tuple[str, str], int] = {}
    per_emotion: dict[str, int] = {}
    for emotion, name in names:
        rank[emotion, name] = per_emotion.get(emotion, 0)
        per_emotion[emotion] = rank[emotion, name] + 1
    names.sort(key=lambda key: (rank[key], key))
    rows, labels = [], []

    def frame(p: Path | None):
        if p is None:
            return None
        try:
            frames = read_frames(p, max(1, min(config.max_frames_per_clip or 8, 8)))
        except DataError:
            return None
        return frames[len(frames) // 2]

    for emotion, name in names[: config.grid_clips]:
        by_method = {
            c.method: c for c in index.select(setting=setting, emotion=emotion) if c.name == name
        }
        any_clip = next(iter(by_method.values()))
        row = [frame(any_clip.reference), frame(any_clip.source)]
        row += [frame(by_method[m].path) if m in by_method else None for m in methods]
        rows.append(row)
        labels.append(f"{emotion}/{name}")
    if not rows:
        return None
    columns = ["Reference", "Source", *methods]
    if all(row[0] is None for row in rows):  # no reference input (e.g. GANmut): no column
        rows, columns = [row[1:] for row in rows], columns[1:]
    return qualitative_grid(rows, columns, path, labels)


def remove_stale_outputs(out: Path, outputs: dict[str, Path]) -> None:
    """Remove the tables, plots and grids an earlier run wrote that this one did not (a
    setting or method no longer evaluated), so ``out`` holds only this run's results."""
    kept = {Path(p).resolve() for p in outputs.values()}
    for folder in ("tables", "plots", "grids"):
        for path in sorted((out / folder).glob("*")) if (out / folder).is_dir() else []:
            stale = path.resolve() not in kept
            if stale and path.is_file() and path.suffix in (".md", ".csv", ".tex", ".png"):
                path.unlink()


def write_setting(
    scores: dict[str, dict[str, dict[str, float]]],
    index: ResultsIndex,
    methods: list[str],
    setting: str,
    config: EvalConfig,
) -> dict[str, Path]:
    """Tables (MD/CSV/LaTeX), plot and (``grid_clips`` > 0) qualitative grid of one setting
    under ``config.out``; returns ``{name: path}``."""
    out, metrics = Path(config.out), config.table_metrics
    outputs: dict[str, Path] = {}
    stem = out / "tables" / setting
    md, csv_path, tex = write_tables(scores, metrics, stem, caption=f"Setting: {setting}")
    outputs |= {f"table_{setting}_md": md, f"table_{setting}_csv": csv_path}
    outputs[f"table_{setting}_tex"] = tex
    outputs[f"plot_{setting}"] = plot_scores(
        scores, metrics, out / "plots" / f"{setting}.png", title=setting
    )
    if config.grid_clips > 0:
        grid = setting_grid(index, methods, setting, config, out / "grids" / f"{setting}.png")
        if grid is not None:
            outputs[f"grid_{setting}"] = grid
    return outputs


def write_run_files(
    out: Path, long_rows: list[tuple], summary: EvalSummary, index: ResultsIndex
) -> dict[str, Path]:
    """``scores.csv`` (one row per setting, method, emotion, metric), ``summary.json`` and
    ``report.txt`` under ``out``; returns ``{name: path}``."""
    outputs: dict[str, Path] = {}
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(["setting", "method", "emotion", "metric", "value"])
    writer.writerows(long_rows)
    outputs["scores"] = write_text_atomic(out / "scores.csv", buffer.getvalue())
    summary_json = {
        "computed": summary.computed,
        "redone": summary.redone,
        "cached": summary.cached,
        "problems": summary.problems,
        "failures": summary.failures,
        "methods": index.methods,
        "settings": index.settings,
        "emotions": index.emotions,
    }
    outputs["summary"] = write_text_atomic(
        out / "summary.json", json.dumps(summary_json, indent=2) + "\n"
    )
    outputs["report"] = write_text_atomic(out / "report.txt", summary.report())
    return outputs
