"""Paper tables (Markdown, CSV, LaTeX), bar plots and qualitative grids.

Scores are nested dicts ``scores[method][row][metric] -> float`` (rows are the emotions
and ``"average"``; NaN where a value is missing). Tables follow the seed's Tables 1-2:
one row per emotion plus Average, one column group per method holding its metrics; in
every row the best method per metric is marked (bold in Markdown and LaTeX, a trailing
``*`` in CSV), but only where there is a winner (:func:`best_methods`): every method has a
value, over the same clips (``comparable``), and the best one is apart from the next at the
table's displayed precision (and, given ``spread``, by more than the seeds' spread). One
table per setting. Markdown and LaTeX carry the table's title (``caption``) and footnotes
(``notes``: why a cell is ``-`` or what set it covers); CSV holds the values only.
"""

from __future__ import annotations

import csv
import io
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from asccl.data.clips import PAPER_EMOTIONS
from asccl.figures import pyplot, save_figure
from asccl.io import write_text_atomic

AVERAGE = "average"

#: metric -> (column label, LaTeX label, higher is better)
METRICS: dict[str, tuple[str, str, bool]] = {
    "fid": ("FID↓", r"FID$\downarrow$", False),
    "fad": ("FAD↓", r"FAD$\downarrow$", False),
    "kid": ("KID↓", r"KID$\downarrow$", False),
    "lse_d": ("LSE-D↓", r"LSE-D$\downarrow$", False),
    "lse_c": ("LSE-C↑", r"LSE-C$\uparrow$", True),
    "csim": ("CSIM↑", r"CSIM$\uparrow$", True),
    "lme_mouth": ("Mouth-LME↓", r"Mouth-LME$\downarrow$", False),
    "lme_face": ("Face-LME↓", r"Face-LME$\downarrow$", False),
    "lmd_mouth": ("Mouth-LMD↓", r"Mouth-LMD$\downarrow$", False),
    "lmd_face": ("Face-LMD↓", r"Face-LMD$\downarrow$", False),
    "psnr": ("PSNR↑", r"PSNR$\uparrow$", True),
    "ssim": ("SSIM↑", r"SSIM$\uparrow$", True),
    # the metric's health table (asccl metric evaluate: metric/health.py)
    "gap": ("cos gap↑", r"cos gap$\uparrow$", True),
    "top1": ("top-1↑", r"top-1$\uparrow$", True),
    "top5": ("top-5↑", r"top-5$\uparrow$", True),
}

Scores = Mapping[str, Mapping[str, Mapping[str, float]]]


def _check_metrics(metrics: Sequence[str]) -> None:
    unknown = [m for m in metrics if m not in METRICS]
    if unknown:
        raise ValueError(f"unknown metric(s) {unknown}; valid: {list(METRICS)}")


def table_rows(scores: Scores) -> list[str]:
    """Rows in table order: the emotions present (paper order), then ``average``."""
    present = {row for per_method in scores.values() for row in per_method}
    rows = [e for e in PAPER_EMOTIONS if e in present]
    rows += sorted(present - set(PAPER_EMOTIONS) - {AVERAGE})
    return rows + ([AVERAGE] if AVERAGE in present else [])


def value(scores: Scores, method: str, row: str, metric: str) -> float:
    v = scores.get(method, {}).get(row, {}).get(metric)
    return float("nan") if v is None else float(v)


def best_methods(
    scores: Scores,
    row: str,
    metric: str,
    digits: int = 3,
    spread: Mapping[tuple[str, str, str], float] | None = None,
) -> set[str]:
    """The winner of ``metric`` in ``row`` (a set of one), or no winner (empty): when a
    method has no value, when the best equals the next at ``digits`` decimals (what the
    table shows), or when their difference is within the larger ``spread[(method, row,
    metric)]`` of the two (e.g. the standard deviation over seeds)."""
    _check_metrics([metric])
    higher = METRICS[metric][2]
    values = {m: value(scores, m, row, metric) for m in scores}
    if len(values) < 2 or not all(math.isfinite(v) for v in values.values()):
        return set()
    ranked = sorted(values, key=lambda m: -values[m] if higher else values[m])
    best, runner_up = ranked[0], ranked[1]
    if format_value(values[best], digits) == format_value(values[runner_up], digits):
        return set()
    if spread is not None:
        width = max(spread.get((m, row, metric), 0.0) for m in (best, runner_up))
        if abs(values[best] - values[runner_up]) <= width:
            return set()
    return {best}


def format_value(v: float, digits: int = 3, signed: bool = False) -> str:
    """``v`` at ``digits`` decimals (``"-"`` if not finite; a leading ``+`` if ``signed``),
    the way every table prints and compares values: a value that rounds to zero prints
    without a sign (``-0.0004`` -> ``0.000``, not ``-0.000``), so two values that print
    alike are equal to the table."""
    if not math.isfinite(v):
        return "-"
    text = f"{v:+.{digits}f}" if signed else f"{v:.{digits}f}"
    if text[0] in "+-" and float(text) == 0.0:
        text = ("+" if signed else "") + text[1:]
    return text


def _row_label(row: str) -> str:
    return row.capitalize()


#: ``(method, row, metric) -> note`` (or several notes: a sequence of texts)
Notes = Mapping[tuple[str, str, str], "str | Sequence[str]"]


def _texts(notes: Notes | None, key: tuple[str, str, str]) -> list[str]:
    note = (notes or {}).get(key)
    return [] if note is None else [note] if isinstance(note, str) else list(note)


def note_numbers(scores: Scores, metrics: Sequence[str], notes: Notes | None) -> dict[str, int]:
    """``{note text: number}``, numbered in table order (rows, then columns); equal texts
    share a number."""
    numbers: dict[str, int] = {}
    for row in table_rows(scores):
        for method in scores:
            for metric in metrics:
                for text in _texts(notes, (method, row, metric)):
                    numbers.setdefault(text, len(numbers) + 1)
    return numbers


def _cells(
    scores: Scores,
    metrics: Sequence[str],
    digits: int,
    mark,
    notes: Notes | None = None,
    comparable: set[tuple[str, str]] | None = None,
    ref=None,
) -> list[list[str]]:
    """Body rows: ``[label, method1 metric1, method1 metric2, ..., method2 metric1, ...]``;
    a winner (in a ``comparable`` row, all if ``None``) goes through ``mark``, a cell with a
    note gets ``ref(number)`` appended."""
    _check_metrics(metrics)
    numbers = note_numbers(scores, metrics, notes)
    body = []
    for row in table_rows(scores):
        cells = [_row_label(row)]
        best = {
            metric: best_methods(scores, row, metric, digits)
            if comparable is None or (row, metric) in comparable
            else set()
            for metric in metrics
        }
        for method in scores:
            for metric in metrics:
                text = format_value(value(scores, method, row, metric), digits)
                text = mark(text) if method in best[metric] else text
                refs = [numbers[t] for t in _texts(notes, (method, row, metric))]
                cells.append(text + ref(", ".join(map(str, refs))) if refs and ref else text)
        body.append(cells)
    return body


def to_markdown(
    scores: Scores,
    metrics: Sequence[str],
    digits: int = 3,
    caption: str = "",
    notes: Notes | None = None,
    comparable: set[tuple[str, str]] | None = None,
    row_header: str = "Emotion",
) -> str:
    """Markdown table; the header cells are ``method metric`` (a winner in bold), the
    ``caption`` above it in bold, footnotes ``[n] why`` below it; ``row_header`` heads the
    row labels' column."""
    header = [row_header] + [f"{m} {METRICS[k][0]}" for m in scores for k in metrics]
    lines = [f"**{caption}**", ""] if caption else []
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    body = _cells(scores, metrics, digits, lambda t: f"**{t}**", notes, comparable,
                  lambda n: f" [{n}]")  # fmt: skip
    for cells in body:
        lines.append("| " + " | ".join(cells) + " |")
    numbers = note_numbers(scores, metrics, notes)
    if numbers:
        lines.append("")
        lines += [f"[{n}] {text}  " for text, n in numbers.items()]
    return "\n".join(lines) + "\n"


def to_csv(
    scores: Scores,
    metrics: Sequence[str],
    digits: int = 3,
    comparable: set[tuple[str, str]] | None = None,
    row_header: str = "Emotion",
) -> str:
    """CSV with a two-line header (method, metric); a winner ends in ``*`` (the title and
    footnotes are in the Markdown and LaTeX tables); ``row_header`` in lower case."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow([row_header.lower()] + [m for m in scores for _ in metrics])
    writer.writerow([""] + [k for _ in scores for k in metrics])
    for cells in _cells(scores, metrics, digits, lambda t: f"{t}*", comparable=comparable):
        writer.writerow([cells[0].lower(), *cells[1:]])
    return out.getvalue()


def tex_escape(text: str) -> str:
    """Escape LaTeX's special characters in ``text``."""
    for char in ("\\", "&", "%", "$", "#", "_", "{", "}"):
        text = text.replace(char, "\\" + char if char != "\\" else r"\textbackslash{}")
    return text


def to_latex(
    scores: Scores,
    metrics: Sequence[str],
    digits: int = 3,
    caption: str = "",
    notes: Notes | None = None,
    comparable: set[tuple[str, str]] | None = None,
    row_header: str = "Emotion",
) -> str:
    """A ``table`` with a ``tabular``: ``\\multicolumn`` method groups, booktabs rules (the
    document needs ``\\usepackage{booktabs}``); footnotes as superscripts under it."""
    n = len(metrics)
    spec = "l" + "|".join("c" * n for _ in scores)
    groups = " & ".join(rf"\multicolumn{{{n}}}{{c}}{{{tex_escape(m)}}}" for m in scores)
    rules = " ".join(rf"\cmidrule(lr){{{2 + i * n}-{1 + (i + 1) * n}}}" for i in range(len(scores)))
    labels = " & ".join(METRICS[k][1] for _ in scores for k in metrics)
    lines = [
        r"\begin{table}[t]",
        r"\centering",
        rf"\begin{{tabular}}{{{spec}}}",
        r"\toprule",
        rf" & {groups} \\",
        rules,
        rf"{tex_escape(row_header)} & {labels} \\",
        r"\midrule",
    ]
    body = _cells(scores, metrics, digits, lambda t: rf"\textbf{{{t}}}", notes, comparable,
                  lambda n: rf"$^{{{n}}}$")  # fmt: skip
    for i, cells in enumerate(body):
        if cells[0].lower() == AVERAGE and i > 0:
            lines.append(r"\midrule")
        lines.append(" & ".join(cells) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}"]
    for text, n in note_numbers(scores, metrics, notes).items():
        lines.append(rf"\par{{\footnotesize $^{{{n}}}$ {tex_escape(text)}}}")
    if caption:
        lines.append(rf"\caption{{{tex_escape(caption)}}}")
    lines.append(r"\end{table}")
    return "\n".join(lines) + "\n"


def write_tables(
    scores: Scores,
    metrics: Sequence[str],
    stem: str | os.PathLike,
    caption: str = "",
    notes: Notes | None = None,
    comparable: set[tuple[str, str]] | None = None,
    row_header: str = "Emotion",
) -> list[Path]:
    """Write ``<stem>.md``, ``<stem>.csv`` and ``<stem>.tex``; returns their paths."""
    stem = Path(stem)
    common = {"comparable": comparable, "row_header": row_header}
    extra = {"caption": caption, "notes": notes, **common}
    return [
        write_text_atomic(stem.with_suffix(".md"), to_markdown(scores, metrics, **extra)),
        write_text_atomic(stem.with_suffix(".csv"), to_csv(scores, metrics, **common)),
        write_text_atomic(stem.with_suffix(".tex"), to_latex(scores, metrics, **extra)),
    ]


def plot_scores(
    scores: Scores,
    metrics: Sequence[str],
    path: str | os.PathLike,
    title: str = "",
    errors: Mapping[tuple[str, str, str], float] | None = None,
) -> Path:
    """One PNG, a subplot per metric: grouped bars per row (emotion), one bar per method;
    ``errors[(method, row, metric)]`` (e.g. the sample std over seeds) drawn as +-1 error
    bars where given and finite."""
    _check_metrics(metrics)
    plt = pyplot()
    rows = table_rows(scores)
    methods = list(scores)
    fig, axes = plt.subplots(
        len(metrics),
        1,
        figsize=(max(6, 1.1 * len(rows) * max(1, len(methods)) / 2 + 3), 2.6 * len(metrics)),
        squeeze=False,
    )
    x = np.arange(len(rows))
    width = 0.8 / max(1, len(methods))
    for ax, metric in zip(axes[:, 0], metrics, strict=True):
        for i, method in enumerate(methods):
            heights = [value(scores, method, row, metric) for row in rows]
            spread = None
            if errors is not None:
                spread = [errors.get((method, row, metric), math.nan) for row in rows]
                spread = [e if math.isfinite(e) and math.isfinite(h) else 0.0
                          for e, h in zip(spread, heights, strict=True)]  # fmt: skip
            ax.bar(
                x + (i - (len(methods) - 1) / 2) * width,
                np.nan_to_num(heights),
                width,
                label=method,
                yerr=spread,
                capsize=2 if spread is not None else 0,
            )
        if not any(math.isfinite(value(scores, m, r, metric)) for m in methods for r in rows):
            ax.text(0.5, 0.5, "no values", ha="center", va="center", transform=ax.transAxes)
        ax.set_xticks(x, [_row_label(r) for r in rows])
        ax.set_ylabel(METRICS[metric][0])
        ax.grid(axis="y", alpha=0.3)
    axes[0, 0].legend(loc="best", fontsize="small")
    if title:
        axes[0, 0].set_title(title)
    fig.tight_layout()
    return save_figure(fig, path, dpi=120)


def qualitative_grid(
    rows: Sequence[Sequence[np.ndarray | None]],
    columns: Sequence[str],
    path: str | os.PathLike,
    row_labels: Sequence[str] = (),
) -> Path:
    """A PNG grid of frames: ``rows[i][j]`` is an ``(H, W, 3)`` uint8 RGB frame (or ``None``,
    drawn blank) under column title ``columns[j]``, e.g. Reference, Source, Baseline, +ASCCL."""
    if not rows:
        raise ValueError("qualitative_grid needs at least one row")
    for i, row in enumerate(rows):
        if len(row) != len(columns):
            raise ValueError(f"row {i} has {len(row)} frames for {len(columns)} columns")
    plt = pyplot()
    fig, axes = plt.subplots(
        len(rows), len(columns), figsize=(2 * len(columns), 2 * len(rows)), squeeze=False
    )
    for i, row in enumerate(rows):
        for j, frame in enumerate(row):
            ax = axes[i, j]
            ax.set_xticks([])
            ax.set_yticks([])
            if frame is not None:
                ax.imshow(frame)
            if i == 0:
                ax.set_title(columns[j], fontsize="small")
            if j == 0 and i < len(row_labels):
                ax.set_ylabel(row_labels[i], fontsize="x-small")
    fig.tight_layout()
    return save_figure(fig, path, dpi=100)
