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
"""

from __future__ import annotations

import csv
import math
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from asccl.evaluation.tables import (
    AVERAGE,
    METRICS,
    best_methods,
    plot_scores,
    table_rows,
    write_tables,
)
from asccl.io import write_text_atomic
from asccl.spfem.results import MODEL_SETTINGS, method_name

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


def _fmt(mean: float, std: float) -> str:
    return "-" if not math.isfinite(mean) else f"{mean:.3f} ± {std:.3f}"


def write_seed_outputs(
    config: ExperimentConfig, per_seed: Sequence[dict[Key, float]]
) -> dict[str, Path]:
    """The tables, plots and comparison of the module doc; returns ``{name: path}``."""
    stats = aggregate(per_seed)
    n = len(per_seed)
    out, paths = Path(config.out), {}
    methods = [method_name(m, v) for m in config.models for v in ("baseline", "asccl")]
    seeds = ", ".join(map(str, config.seeds))
    settings = [s for m in config.models for s in MODEL_SETTINGS[m]]
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
        md, csv_path, tex = write_tables(means, metrics, stem, caption=caption,
                                         comparable=winners)  # fmt: skip
        paths |= {f"seeds_table_{setting}_md": md, f"seeds_table_{setting}_csv": csv_path,
                  f"seeds_table_{setting}_tex": tex}  # fmt: skip
        header = ["Emotion"] + [f"{m} {METRICS[k][0]}" for m in present for k in metrics]
        lines = [f"**{caption}**", "", "| " + " | ".join(header) + " |",
                 "|" + "---|" * len(header)]  # fmt: skip
        for row in table_rows(means):
            cells = [row.capitalize()]
            for m in present:
                for k in metrics:
                    mean, std, count = stats.get((setting, m, row, k), (math.nan, math.nan, 0))
                    text = _fmt(mean if count == n else math.nan, std)
                    won = (row, k) in winners and m in best_methods(means, row, k, 3, spread)
                    cells.append(f"**{text}**" if won else text)
            lines.append("| " + " | ".join(cells) + " |")
        paths[f"seeds_spread_{setting}"] = write_text_atomic(
            stem.with_name(f"{setting}_spread.md"), "\n".join(lines) + "\n"
        )
        paths[f"seeds_plot_{setting}"] = plot_scores(
            means, metrics, out / "seeds" / "plots" / f"{setting}.png",
            title=f"{setting}: mean over {n} seeds, bars +-1 sample std", errors=spread,
        )  # fmt: skip
    paths |= _comparison(config, stats, per_seed)
    return paths


def _comparison(config, stats, per_seed) -> dict[str, Path]:
    n, rows = len(per_seed), []
    for model in config.models:
        base, ours = method_name(model, "baseline"), method_name(model, "asccl")
        for setting in MODEL_SETTINGS[model]:
            for metric, (label, _, higher) in METRICS.items():
                a = stats.get((setting, base, AVERAGE, metric))
                b = stats.get((setting, ours, AVERAGE, metric))
                if a is None or b is None or not (a[2] == b[2] == n):
                    continue
                pair = {base: {AVERAGE: {metric: a[0]}}, ours: {AVERAGE: {metric: b[0]}}}
                spread = {(base, AVERAGE, metric): a[1], (ours, AVERAGE, metric): b[1]}
                won = best_methods(pair, AVERAGE, metric, 3, spread)
                better = ("+ASCCL" if ours in won else "baseline") if won else "within spread"
                wins = sum(1 for s in per_seed
                           if (s[(setting, ours, AVERAGE, metric)] > s[(setting, base, AVERAGE,
                               metric)]) == higher
                           and s[(setting, ours, AVERAGE, metric)]
                           != s[(setting, base, AVERAGE, metric)])  # fmt: skip
                rows.append((model, setting, label, a, b, b[0] - a[0], better, wins))
    header = ("model", "setting", "metric", "baseline", "+ASCCL", "difference", "better",
              "+ASCCL better in")  # fmt: skip
    out = Path(config.out)
    body = [",".join(("model", "setting", "metric", "baseline_mean", "baseline_std",
                      "asccl_mean", "asccl_std", "difference", "better", "asccl_better_seeds",
                      "seeds"))]  # fmt: skip
    for m, s, k, a, b, d, w, c in rows:
        numbers = [f"{a[0]:.4f}", f"{a[1]:.4f}", f"{b[0]:.4f}", f"{b[1]:.4f}", f"{d:+.4f}"]
        body.append(",".join([m, s, k, *numbers, w, str(c), str(n)]))
    csv_path = write_text_atomic(out / "comparison.csv", "\n".join(body) + "\n")
    md = [
        f"# Baseline vs +ASCCL, mean ± std over {n} seeds ({', '.join(map(str, config.seeds))})\n",
        f"Test speakers: {', '.join(config.test_speakers)}; ASCCL weight "
        f"{config.asccl_weight:g}; the average row of each seed's tables (seed_<s>/eval/). "
        "std: sample standard deviation over seeds. `better` names a variant only where its "
        "mean beats the other's by more than the larger std and at 3 decimals, else `within "
        "spread`; the last column counts the seeds where +ASCCL's value was the better one.\n",
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
    ]
    md += [f"| {m} | {s} | {k} | {_fmt(*a[:2])} | {_fmt(*b[:2])} | {d:+.3f} | {w} | {c}/{n} |"
           for m, s, k, a, b, d, w, c in rows]  # fmt: skip
    md_path = write_text_atomic(out / "comparison.md", "\n".join(md) + "\n")
    return {"comparison_md": md_path, "comparison_csv": csv_path}


def run_seeds(
    config: ExperimentConfig, run_one: Callable[[ExperimentConfig], dict[str, Path]]
) -> dict[str, Path]:
    """``run_one`` (the one-seed experiment) per seed, then :func:`write_seed_outputs`."""
    from asccl.config import save_config

    Path(config.out).mkdir(parents=True, exist_ok=True)
    paths = {"config": save_config(config, Path(config.out) / "config.json")}
    per_seed = []
    for seed in config.seeds:
        print(f"\n=== seed {seed} ({list(config.seeds).index(seed) + 1}/{len(config.seeds)})")
        done = run_one(seed_config(config, seed))
        paths |= {f"seed_{seed}_{k}": v for k, v in done.items()}
        if config.evaluate:
            per_seed.append(read_scores(done["eval_scores"]))
    if config.evaluate:
        paths |= write_seed_outputs(config, per_seed)
    return paths


__all__ = ["aggregate", "read_scores", "run_seeds", "seed_config", "write_seed_outputs"]
