"""``asccl experiment`` over several seeds (``seeds = [0, 1, 2]``): the whole experiment once
per seed under ``<out>/seed_<s>/`` (its own training, results and evaluation, resumable as
one), then the mean and spread over seeds of every value of the seeds' ``eval/scores.csv``.

The spread is the sample standard deviation over seeds (``ddof = 1``; 0 for one seed). It
feeds the tables' winner rule (:func:`asccl.evaluation.tables.best_methods`): a method wins
a row only when every seed has a value of every method there and its mean beats the next
by more than the larger of their spreads (and at the displayed precision). Written:

* ``<out>/seeds/tables/<setting>.{md,csv,tex}``: the house tables of the means (winners by
  that rule), ``<out>/seeds/tables/<setting>_spread.md``: every cell as ``mean ± std``;
* ``<out>/seeds/plots/<setting>.png``: the house bar plot of the means;
* ``<out>/comparison.{md,csv}``: per model, setting and metric the average row's baseline
  and +ASCCL mean ± std, the difference of means, the winner, and in how many seeds
  +ASCCL was the better one.

**One Average over one set of emotions.** Each seed's own ``average`` row is the mean over
the emotions comparable in that seed (:mod:`asccl.evaluation.scoring`), so an emotion
missing in one seed would make a mean of averages over different sets. The seeds' Average
is therefore recomputed (:func:`seed_averages`): per setting and metric, each seed's mean of
its emotion rows (unweighted, as scoring's) over ``E*``, the emotions where every method
has a value in every seed; then mean and spread over seeds. A footnote names ``E*`` when it
is smaller than the emotions shown; ``comparison.*`` uses the same averages. Where a seed's
own average left out an emotion whose rows it shows (the methods scored different clips
there: not comparable), the Average is ``-`` with a footnote.

**No PSNR winner decided by the cap.** A frame identical to its ground truth counts as
100 dB in a PSNR mean (:mod:`asccl.evaluation.ground_truth_scoring`): the cap stands in for
infinity and can decide a ranking. Each seed's ``scores.csv`` counts such frames on every
PSNR row (columns ``psnr_capped_frames``, ``psnr_frames``); where any seed has one for any
method shown, the seeds' PSNR row (the Average: over ``E*``'s rows) marks no winner, and a
footnote gives the counts summed over seeds; ``comparison.*`` says ``not ranked`` there and
counts no seeds. A ``scores.csv`` of an asccl older than the counts says nothing about capped
frames: its rows are ranked as before.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from asccl.evaluation.ground_truth_scoring import (
    Caps,
    cap_note,
    read_caps,
)
from asccl.evaluation.tables import (
    AVERAGE,
    METRICS,
    best_methods,
    note_numbers,
    plot_scores,
    table_rows,
    write_tables,
)
from asccl.io import write_text_atomic
from asccl.spfem.results import MODEL_SETTINGS, method_name
from asccl.spfem.seed_comparison import mean_std, write_comparison

if TYPE_CHECKING:
    from asccl.spfem.experiment import ExperimentConfig

#: (setting, method, row, metric)
Key = tuple[str, str, str, str]


def seed_config(config: ExperimentConfig, seed: int) -> ExperimentConfig:
    """The one-seed experiment of ``seed``: ``out`` = ``<out>/seed_<seed>``."""
    return replace(config, seed=seed, seeds=(), out=Path(config.out) / f"seed_{seed}")


def read_scores(path: Path) -> dict[Key, float]:
    """An evaluation's ``scores.csv`` as ``{(setting, method, emotion, metric): value}``."""
    with open(path, newline="") as handle:
        return {(r["setting"], r["method"], r["emotion"], r["metric"]): float(r["value"])
                for r in csv.DictReader(handle)}  # fmt: skip


def read_seed_caps(path: Path) -> Caps:
    """An evaluation's ``scores.csv``'s PSNR cap counts
    (:func:`~asccl.evaluation.ground_truth_scoring.read_caps`; empty for a file older than
    them)."""
    with open(path, newline="") as handle:
        return read_caps(csv.DictReader(handle))


def aggregate(per_seed: Sequence[dict[Key, float]]) -> dict[Key, tuple[float, float, int]]:
    """``{key: (mean, std, n)}`` over the seeds that have a finite value of ``key``: the
    mean, the sample standard deviation (``ddof = 1``; 0 when ``n == 1``) and ``n``; a key
    no seed has a finite value of gets ``(nan, nan, 0)``."""
    keys = sorted({k for scores in per_seed for k in scores})
    out = {}
    for key in keys:
        values = np.array([s[key] for s in per_seed if math.isfinite(s.get(key, math.nan))])
        if not len(values):
            out[key] = (math.nan, math.nan, 0)
            continue
        std = float(values.std(ddof=1)) if len(values) > 1 else 0.0
        out[key] = (float(values.mean()), std, len(values))
    return out


def _finite(scores: dict[Key, float], key: Key) -> bool:
    return math.isfinite(scores.get(key, math.nan))


def _mean(values: list[float]) -> float:
    return float(np.mean(values)) if values else math.nan


def seed_averages(
    per_seed: Sequence[dict[Key, float]], labels: Sequence[object] | None = None
) -> tuple[list[dict[Key, float]], dict[tuple[str, str], str]]:
    """``per_seed`` with every ``average`` value recomputed over one set of emotions, and
    ``{(setting, metric): footnote}``.

    Per setting (its methods: those with any value there) and metric, ``E*`` is the emotions
    where every method has a finite value in every seed; each seed's average of a method
    becomes the plain mean of its rows over ``E*`` (NaN when ``E*`` is empty), the weighting
    of :func:`asccl.evaluation.scoring._average`. A seed whose stored average differs from
    the mean over the emotions every method has in that seed (relative 1e-9: the same
    float64 values summed in another order) left out an emotion it shows (scored over
    different clips): then NaN too. ``labels`` name the seeds in footnotes (default 0..)."""
    labels = list(range(len(per_seed))) if labels is None else list(labels)
    out = [dict(s) for s in per_seed]
    notes: dict[tuple[str, str], str] = {}
    keys = {k for s in per_seed for k in s}
    for setting in sorted({k[0] for k in keys}):
        methods = sorted({k[1] for k in keys if k[0] == setting})
        for metric in sorted({k[3] for k in keys if k[0] == setting}):
            emotions, valued, common = _emotion_sets(per_seed, setting, methods, metric)
            mixed = [
                label
                for s, label in zip(per_seed, labels, strict=True)
                if not _agrees(s, setting, methods, metric, emotions)
            ]
            for s in out:
                for m in methods:
                    value = _mean([s[(setting, m, e, metric)] for e in common])
                    s[(setting, m, AVERAGE, metric)] = math.nan if mixed else value
            if mixed:
                notes[(setting, metric)] = (
                    f"no average over seeds: seed {', '.join(map(str, mixed))}'s own average "
                    "leaves out an emotion whose values it shows (the methods scored different "
                    "clips there; see its eval/ tables)"
                )
            elif not common and valued:
                notes[(setting, metric)] = (
                    "no average: no emotion has a value of every method in every seed"
                )
            elif common != valued:
                left = ", ".join(e for e in valued if e not in common)
                notes[(setting, metric)] = (
                    f"each seed's average over {', '.join(common)} only, the emotions every "
                    f"method has in every seed (left out, lacking a value of some method in "
                    f"some seed: {left})"
                )
    return out, notes


def _emotion_sets(
    per_seed: Sequence[dict[Key, float]], setting: str, methods: Sequence[str], metric: str
) -> tuple[list[str], list[str], list[str]]:
    """``(emotions, valued, common)`` of ``setting`` and ``metric``: the emotion rows the
    seeds show (any metric), those where some method has a finite value in some seed, and
    ``E*``: those where every one of ``methods`` has one in every seed."""
    keys = {k for s in per_seed for k in s if k[0] == setting}
    rows = table_rows({m: {k[2]: {} for k in keys if k[1] == m} for m in methods})
    emotions = [r for r in rows if r != AVERAGE]
    has = {e: [_finite(s, (setting, m, e, metric)) for s in per_seed for m in methods]
           for e in emotions}  # fmt: skip
    valued = [e for e in emotions if any(has[e])]
    return emotions, valued, [e for e in valued if all(has[e])]


def _psnr_caps(
    caps: Sequence[Caps], per_seed: Sequence[dict[Key, float]], setting: str
) -> dict[str, dict[str, tuple[int, int]]]:
    """``{row: {method: (frames at the PSNR cap, frames)}}`` of ``setting``'s PSNR rows,
    summed over seeds (``caps``: each seed's :func:`read_caps`); the Average row sums the
    rows of ``E*`` (the emotions the seeds' Average is over: :func:`seed_averages`). A seed
    without counts (a scores.csv older than them) adds nothing."""
    methods = sorted({k[1] for s in per_seed for k in s if k[0] == setting})
    emotions, _, common = _emotion_sets(per_seed, setting, methods, "psnr")
    out: dict[str, dict[str, tuple[int, int]]] = {}
    for row, over in [*((e, [e]) for e in emotions), (AVERAGE, common)]:
        for m in methods:
            counts = [c[setting, m, e] for c in caps for e in over if (setting, m, e) in c]
            if counts:
                out.setdefault(row, {})[m] = (sum(k for k, _ in counts), sum(n for _, n in counts))
    return out


def _counted_seeds(seeds: Sequence[int], caps: Sequence[Caps]) -> str:
    """The cap footnote's words for which seeds its counts are summed over: the seeds whose
    scores.csv has counts, and the others named apart (an older asccl's file: frames at the
    cap there are not counted, so the sums are a lower bound)."""
    counted = ", ".join(str(s) for s, c in zip(seeds, caps, strict=True) if c)
    missing = ", ".join(str(s) for s, c in zip(seeds, caps, strict=True) if not c)
    words = f"summed over seeds {counted}"
    if missing:
        words += (f"; seed{'s' if ',' in missing else ''} {missing}: scores.csv without the "
                  "counts (an older asccl), not in the sums")  # fmt: skip
    return words


def _agrees(scores: dict[Key, float], setting: str, methods, metric: str, emotions) -> bool:
    """Whether a seed's stored averages are the means over the emotions where every method
    has a value in that seed (what its scoring averaged, unless it left one out as
    scored over different clips); only the methods this seed has count (scoring averaged
    over those); a seed without stored averages agrees."""
    methods = [m for m in methods if any(k[:2] == (setting, m) for k in scores)]
    mine = [e for e in emotions if all(_finite(scores, (setting, m, e, metric)) for m in methods)]
    for m in methods:
        stored = scores.get((setting, m, AVERAGE, metric))
        if stored is None:
            continue
        expected = _mean([scores[(setting, m, e, metric)] for e in mine])
        if math.isfinite(stored) != math.isfinite(expected) or (
            math.isfinite(stored) and not math.isclose(stored, expected, rel_tol=1e-9)
        ):
            return False
    return True


def _setting_tables(stats, setting: str, methods: list[str], seeds: int):
    """``(means, spread, comparable)`` of one setting: ``means[method][row][metric]``
    (NaN unless every seed has the value), ``spread[(method, row, metric)]`` and the
    ``(row, metric)`` pairs where every method has a value in every seed."""
    means: dict = {m: {} for m in methods}
    spread: dict = {}
    for (s, method, row, metric), (mean, std, n) in stats.items():
        if s != setting or method not in means:
            continue
        means[method].setdefault(row, {})[metric] = mean if n == seeds else math.nan
        spread[(method, row, metric)] = std
    comparable = set()
    for row in table_rows(means):
        for metric in METRICS:
            vals = [means[m].get(row, {}).get(metric, math.nan) for m in methods]
            if len(methods) > 1 and all(map(math.isfinite, vals)):
                comparable.add((row, metric))
    return means, spread, comparable


def write_seed_outputs(
    config: ExperimentConfig,
    per_seed: Sequence[dict[Key, float]],
    caps: Sequence[Caps] | None = None,
) -> dict[str, Path]:
    """The tables, plots and comparison of the module doc; returns ``{name: path}``.
    ``per_seed``: each seed's :func:`read_scores`; ``caps``: each seed's PSNR cap counts
    (:func:`read_seed_caps`; ``None``: none known)."""
    caps = list(caps) if caps is not None else [{} for _ in per_seed]
    per_seed, average_notes = seed_averages(per_seed, config.seeds)
    stats = aggregate(per_seed)
    n = len(per_seed)
    out, paths = Path(config.out), {}
    methods = [method_name(m, v) for m in config.models for v in ("baseline", "asccl")]
    seeds = ", ".join(map(str, config.seeds))
    settings = [s for m in config.models for s in MODEL_SETTINGS[m]]
    capped = {s: _psnr_caps(caps, per_seed, s) for s in dict.fromkeys(settings)}
    cap_where = _counted_seeds(config.seeds, caps)
    for setting in dict.fromkeys(settings):
        present = [m for m in methods if any(k[0] == setting and k[1] == m for k in stats)]
        if not present:
            continue
        means, spread, comparable = _setting_tables(stats, setting, present, n)
        metrics = [k for k in METRICS if any(k in r for m in means.values() for r in m.values())]
        # a winner only where it beats the next by more than the seeds' spread
        winners = {(r, k) for r, k in comparable if k in metrics
                   and best_methods(means, r, k, 3, spread)}  # fmt: skip
        caption = (f"Setting {setting}: mean over {n} seeds ({seeds}); a method is marked only "
                   "where its mean beats the next by more than the larger seed spread (sample "
                   "std) and at 3 decimals; spreads in the _spread table")  # fmt: skip
        stem = out / "seeds" / "tables" / setting
        notes = {(m, AVERAGE, k): [text] for (s, k), text in average_notes.items()
                 if s == setting and k in metrics for m in present}  # fmt: skip
        for row, counts in capped[setting].items() if "psnr" in metrics else ():
            shown = {m: counts.get(m, (0, 0)) for m in present}
            if any(k for k, _ in shown.values()):  # the cap can decide: no winner
                winners.discard((row, "psnr"))
                text = cap_note(shown, cap_where)
                for m in present:
                    notes.setdefault((m, row, "psnr"), []).append(text)
        md, csv_path, tex = write_tables(means, metrics, stem, caption=caption, notes=notes,
                                         comparable=winners)  # fmt: skip
        paths |= {f"seeds_table_{setting}_md": md, f"seeds_table_{setting}_csv": csv_path,
                  f"seeds_table_{setting}_tex": tex}  # fmt: skip
        header = ["Emotion"] + [f"{m} {METRICS[k][0]}" for m in present for k in metrics]
        lines = [f"**{caption}**", "", "| " + " | ".join(header) + " |",
                 "|" + "---|" * len(header)]  # fmt: skip
        numbers = note_numbers(means, metrics, notes)
        for row in table_rows(means):
            cells = [row.capitalize()]
            for m in present:
                for k in metrics:
                    mean, std, count = stats.get((setting, m, row, k), (math.nan, math.nan, 0))
                    text = mean_std(mean if count == n else math.nan, std)
                    won = (row, k) in winners and m in best_methods(means, row, k, 3, spread)
                    text = f"**{text}**" if won else text
                    refs = ", ".join(str(numbers[t]) for t in notes.get((m, row, k), []))
                    cells.append(f"{text} [{refs}]" if refs else text)
            lines.append("| " + " | ".join(cells) + " |")
        if numbers:
            lines += [""] + [f"[{i}] {text}  " for text, i in numbers.items()]
        paths[f"seeds_spread_{setting}"] = write_text_atomic(
            stem.with_name(f"{setting}_spread.md"), "\n".join(lines) + "\n"
        )
        paths[f"seeds_plot_{setting}"] = plot_scores(
            means, metrics, out / "seeds" / "plots" / f"{setting}.png",
            title=f"{setting}: mean over {n} seeds, bars +-1 sample std", errors=spread,
        )  # fmt: skip
    paths |= write_comparison(config, stats, per_seed, average_notes, capped, cap_where)
    return paths


def run_seeds(
    config: ExperimentConfig, run_one: Callable[[ExperimentConfig], dict[str, Path]]
) -> dict[str, Path]:
    """``run_one`` (the one-seed experiment) per seed, then :func:`write_seed_outputs`."""
    from asccl.config import save_config

    Path(config.out).mkdir(parents=True, exist_ok=True)
    paths = {"config": save_config(config, Path(config.out) / "config.json")}
    per_seed, caps = [], []
    for seed in config.seeds:
        print(f"\n=== seed {seed} ({list(config.seeds).index(seed) + 1}/{len(config.seeds)})")
        done = run_one(seed_config(config, seed))
        paths |= {f"seed_{seed}_{k}": v for k, v in done.items()}
        if config.evaluate:
            per_seed.append(read_scores(done["eval_scores"]))
            caps.append(read_seed_caps(done["eval_scores"]))
    if config.evaluate:
        paths |= write_seed_outputs(config, per_seed, caps)
    return paths


__all__ = [
    "aggregate",
    "read_scores",
    "read_seed_caps",
    "run_seeds",
    "seed_averages",
    "seed_config",
    "write_seed_outputs",
]
