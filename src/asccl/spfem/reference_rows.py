"""The ground-truth tables' reference rows (``ExperimentConfig.reference_rows``): bounds that
say whether a method's score is good.

* ``source``: the unedited input (``results/sources/<emotion>/<clip>``) scored as if it were
  a method's result: the do-nothing baseline (speech kept exactly, no expression change);
* ``truth``: the ground truth itself (``results/ground_truth/<setting>/<emotion>/<clip>``):
  the ceiling. Its landmark errors (LME) are the face tracker's own error against the exact
  landmarks (the floor of those columns); its landmark distances (LMD: against the ground
  truth as the same tracker finds it) are exactly 0 (the same frames, a deterministic
  tracker); its frames are identical to the ground truth, so PSNR is the cap (100 dB,
  footnoted, as the scoring does) and SSIM 1.

They are scored by the evaluation's own code (:mod:`asccl.evaluation.ground_truth_features`,
:func:`asccl.evaluation.scoring.setting_scores`) on the same cached entries, the same framing
and tracker and the same clips as the methods; only the ground-truth metrics. **Common
frames:** the landmark errors of every column of a reference table are over the frames where
every method's result, each reference and the ground truth have a face (the scoring's rule,
with the references counted as methods), so methods and references share one frame set; the
footnote counts each reference's frames without a face (when both are 0 the methods' values
equal ``eval/tables/<setting>.*``'s). The main evaluation is untouched: its tables, winners,
``scores.csv``, ``comparison.*`` and the seeds' averages never see these rows.

Written: ``eval/references/tables/<setting>.{md,csv,tex}`` (the methods, then the references
labelled ``<name> (reference)``, no winner marked anywhere in the table: the winners are in
``eval/tables/``), ``eval/references/plots/<setting>.png`` and ``eval/references/scores.csv``
(``kind`` = method or reference); over seeds (:func:`write_seed_references`)
``seeds/references/<setting>.{md,csv,tex}`` (means), ``<setting>_spread.md`` (every cell
``mean ± std``) and ``plots/<setting>.png``.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from asccl.evaluation.config import EvalConfig, EvalSummary
from asccl.evaluation.results import ResultClip, ResultsIndex, scan_results
from asccl.evaluation.tables import (
    AVERAGE,
    METRICS,
    format_value,
    plot_scores,
    table_rows,
    write_tables,
)
from asccl.io import write_text_atomic

if TYPE_CHECKING:
    from asccl.evaluation.scoring import SettingScores
    from asccl.spfem.experiment import ExperimentConfig

#: the ground-truth metrics, in table order
GT_METRICS = ("lme_mouth", "lme_face", "lmd_mouth", "lmd_face", "psnr", "ssim")
#: what each reference row is (the tables' footnote)
MEANING = {
    "source": "source = the unedited input clip scored as if it were a result (no "
    "expression change: the do-nothing bound)",
    "truth": "truth = the ground-truth clip itself (the ceiling; its landmark error is the "
    "face tracker's own against the exact landmarks, the floor of those columns; its "
    "landmark distance is 0: the same frames through the same tracker)",
}


def label(reference: str) -> str:
    """The column name of a reference row: ``source (reference)``."""
    return f"{reference} (reference)"


def reference_clips(index: ResultsIndex, references: Sequence[str]) -> list[ResultClip]:
    """One :class:`ResultClip` per reference and per (setting, emotion, clip) of
    ``index.clips`` that has a ground-truth namesake: ``source`` reads the clip's source,
    ``truth`` the ground truth itself (a clip without a source gets no ``source`` row)."""
    tree = index.ground_truth or {}
    out = []
    for setting, emotion, name in sorted({(c.setting, c.emotion, c.name) for c in index.clips}):
        truth = tree.get(setting, {}).get(emotion, {}).get(name)
        if truth is None:
            continue
        source = index.sources.get(emotion, {}).get(name)
        for reference in references:
            path = source if reference == "source" else truth
            if path is not None:
                out.append(ResultClip(reference, setting, emotion, name, path, source))
    return out


def score_references(
    config: EvalConfig, references: Sequence[str]
) -> tuple[dict[str, SettingScores], list[str]]:
    """``({setting: SettingScores}, methods)``: the ground-truth metrics of ``config.methods``
    and ``references`` (as methods named after them) over one set of clips and frames per
    row (:func:`asccl.evaluation.scoring.setting_scores`); the cache is the evaluation's
    (``config.out``), so the methods' entries are reused."""
    from asccl.evaluation.features import Extractors
    from asccl.evaluation.ground_truth_features import extract_ground_truth, ground_truth_jobs
    from asccl.evaluation.scoring import scored_units, setting_scores

    config = replace(config, metrics=("ground_truth",))
    index = scan_results(config.results)
    methods = list(config.methods) or index.methods
    clash = [m for m in methods if m in references]
    if clash:
        from asccl.config import ConfigError

        raise ConfigError(f"reference_rows {clash}: a method has that name; rename it")
    index.clips = [c for c in index.clips if c.method in methods]
    index.clips += reference_clips(index, references)
    summary = EvalSummary(problems=list(index.problems))
    extractors = Extractors(config)
    features = extract_ground_truth(ground_truth_jobs(index), index, extractors, config, summary)
    units = scored_units(index.clips, features, config, summary)
    every = methods + list(references)
    scores = {s: setting_scores(index, s, every, features, config, summary, units, units, None)
              for s in index.settings}  # fmt: skip
    return scores, methods


def _lost(result: SettingScores, reference: str) -> int:
    """Frames without a face in ``reference``'s clips over the table's emotion rows."""
    return sum(f.lost.get(reference, 0) for row, f in result.face_frames.items() if row != AVERAGE)


def _same_as_evaluation(config: EvalConfig, setting: str, scores: dict) -> bool | None:
    """Whether every method value of ``scores`` (``{method: {row: {metric: value}}}``)
    prints as the evaluation's own ``<config.out>/scores.csv`` does (``None``: no such
    file, e.g. references written apart from an evaluation)."""
    path = Path(config.out) / "scores.csv"
    if not path.is_file():
        return None
    with open(path, newline="") as handle:
        stored = {(r["method"], r["emotion"], r["metric"]): float(r["value"])
                  for r in csv.DictReader(handle) if r["setting"] == setting}  # fmt: skip
    return all(format_value(v) == format_value(stored.get((m, row, k), math.nan))
               for m, rows in scores.items() for row, values in rows.items()
               for k, v in values.items())  # fmt: skip


def write_references(config: EvalConfig, references: Sequence[str]) -> dict[str, Path]:
    """Score ``references`` beside the methods (:func:`score_references`) and write the
    module doc's files under ``<config.out>/references``; returns ``{name: path}``."""
    results, methods = score_references(config, references)
    out = Path(config.out) / "references"
    paths: dict[str, Path] = {}
    long_rows = []
    for setting, result in results.items():
        present = [m for m in methods if m in result.scores]
        refs = [r for r in references if r in result.scores]
        names = {m: m for m in present} | {r: label(r) for r in refs}
        scores = {names[m]: result.scores[m] for m in present + refs}
        notes = {(names[m], row, k): t for (m, row, k), t in result.notes.items() if m in names}
        lost = ", ".join(f"{r} {_lost(result, r)}" for r in refs)
        same = _same_as_evaluation(config, setting, {m: result.scores[m] for m in present})
        methods_note = {
            None: "",
            True: f"; the methods' values here are eval/tables/{setting}.md's",
            False: f"; the methods' values here differ from eval/tables/{setting}.md's, "
            "which are over the frames where every method and the ground truth have one",
        }[same]
        text = ("Reference rows, not methods, never ranked: " + "; ".join(MEANING[r] for r in refs)
                + ". Every column's landmark errors are over the frames where every method's "
                "result, each reference and the ground truth have a face (frames without one: "
                f"{lost}){methods_note}")  # fmt: skip
        for r in refs:
            for k in GT_METRICS:
                notes.setdefault((names[r], AVERAGE, k), [])
                cell = notes[(names[r], AVERAGE, k)]
                notes[(names[r], AVERAGE, k)] = [text, *([cell] if isinstance(cell, str) else cell)]
        metrics = [k for k in GT_METRICS if any(k in row for s in scores.values()
                                                for row in s.values())]  # fmt: skip
        caption = (f"Setting {setting}: the methods beside the reference rows "
                   f"{', '.join(label(r) for r in refs)} (ground-truth metrics; no winner "
                   f"marked here: see eval/tables/{setting}.md)")  # fmt: skip
        stem = out / "tables" / setting
        md, csv_path, tex = write_tables(scores, metrics, stem, caption=caption, notes=notes,
                                         comparable=set())  # fmt: skip
        paths |= {f"references_{setting}_md": md, f"references_{setting}_csv": csv_path,
                  f"references_{setting}_tex": tex}  # fmt: skip
        paths[f"references_plot_{setting}"] = plot_scores(
            scores, metrics, out / "plots" / f"{setting}.png",
            title=f"{setting}: methods and reference rows ({', '.join(refs)})",
        )  # fmt: skip
        for m in present + refs:
            kind = "reference" if m in refs else "method"
            for row, values in result.scores[m].items():
                long_rows += [(setting, kind, m, row, k, values[k]) for k in metrics if k in values]
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["setting", "kind", "method", "emotion", "metric", "value"])
    writer.writerows(long_rows)
    paths["references_scores"] = write_text_atomic(out / "scores.csv", buffer.getvalue())
    return paths


def read_reference_scores(path: Path) -> dict[tuple[str, str, str, str, str], float]:
    """A ``references/scores.csv`` as ``{(setting, kind, method, emotion, metric): value}``."""
    with open(path, newline="") as handle:
        return {(r["setting"], r["kind"], r["method"], r["emotion"], r["metric"]):
                float(r["value"]) for r in csv.DictReader(handle)}  # fmt: skip


def write_seed_references(config: ExperimentConfig) -> dict[str, Path]:
    """``<out>/seeds/references/<setting>.{md,csv,tex}``: every cell of the seeds' reference
    tables as ``mean ± std`` (sample std over seeds; ``-`` unless every seed has it), no
    winner; the seeds' own tables and ``comparison.*`` are :mod:`asccl.spfem.seeds`'s."""
    per_seed = [read_reference_scores(Path(config.out) / f"seed_{s}" / "eval" / "references"
                                      / "scores.csv") for s in config.seeds]  # fmt: skip
    keys = sorted({k for s in per_seed for k in s})
    out, paths = Path(config.out) / "seeds" / "references", {}
    n, seeds = len(per_seed), ", ".join(map(str, config.seeds))
    for setting in dict.fromkeys(k[0] for k in keys):
        columns = list(dict.fromkeys((k[1], k[2]) for k in keys if k[0] == setting))
        columns.sort(key=lambda c: c[0] == "reference")  # the methods first
        means: dict = {}
        cells: dict = {}
        for kind, method in columns:
            name = label(method) if kind == "reference" else method
            means[name] = {}
            for key in (k for k in keys if k[:3] == (setting, kind, method)):
                values = [s[key] for s in per_seed if math.isfinite(s.get(key, math.nan))]
                row, metric = key[3], key[4]
                full = len(values) == n
                mean = float(np.mean(values)) if full else math.nan
                std = float(np.std(values, ddof=1)) if full and n > 1 else 0.0
                means[name].setdefault(row, {})[metric] = mean
                cells[(name, row, metric)] = (mean, std)
        metrics = [k for k in GT_METRICS if any(k in r for m in means.values() for r in m.values())]
        caption = (f"Setting {setting}: mean over {n} seeds ({seeds}) of the methods and the "
                   "reference rows (not methods, never ranked; see each seed's "
                   "eval/references/); no winner marked here")  # fmt: skip
        refs = [m for kind, m in columns if kind == "reference"]
        text = "Reference rows, not methods, never ranked: " + "; ".join(MEANING[r] for r in refs)
        notes = {(label(r), AVERAGE, k): text for r in refs for k in metrics}
        md, csv_path, tex = write_tables(means, metrics, out / setting, caption=caption,
                                         notes=notes, comparable=set())  # fmt: skip
        header = ["Emotion"] + [f"{m} {METRICS[k][0]}" for m in means for k in metrics]
        lines = [f"**{caption}**", "", "| " + " | ".join(header) + " |",
                 "|" + "---|" * len(header)]  # fmt: skip
        for row in table_rows(means):
            cells_text = [row.capitalize()]
            for m in means:
                for k in metrics:
                    mean, std = cells.get((m, row, k), (math.nan, math.nan))
                    shown = f"{format_value(mean)} ± {format_value(std)}"
                    cells_text.append(shown if math.isfinite(mean) else "-")
            lines.append("| " + " | ".join(cells_text) + " |")
        lines += ["", f"{text}  "] if refs else []
        spread = write_text_atomic(out / f"{setting}_spread.md", "\n".join(lines) + "\n")
        errors = {key: std for key, (_, std) in cells.items()}
        paths[f"seeds_references_plot_{setting}"] = plot_scores(
            means, metrics, out / "plots" / f"{setting}.png", errors=errors,
            title=f"{setting}: methods and reference rows, mean over {n} seeds, +-1 sample std",
        )  # fmt: skip
        paths |= {f"seeds_references_{setting}_md": md, f"seeds_references_{setting}_csv":
                  csv_path, f"seeds_references_{setting}_tex": tex,
                  f"seeds_references_spread_{setting}": spread}  # fmt: skip
    return paths


__all__ = [
    "GT_METRICS",
    "MEANING",
    "label",
    "reference_clips",
    "score_references",
    "write_references",
    "write_seed_references",
]
