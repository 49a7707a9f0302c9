"""``comparison.{md,csv}`` of a multi-seed experiment: baseline vs +ASCCL per model,
setting and metric, from the seed averages :mod:`asccl.spfem.seeds` recomputes (mean ± std
over seeds, the better variant only beyond the spread, how many seeds +ASCCL won)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING

from asccl.evaluation.ground_truth_scoring import cap_note
from asccl.evaluation.tables import AVERAGE, METRICS, best_methods, format_value
from asccl.io import write_text_atomic
from asccl.spfem.results import MODEL_SETTINGS, method_name

if TYPE_CHECKING:
    from asccl.spfem.experiment import ExperimentConfig


def mean_std(mean: float, std: float) -> str:
    """``mean ± std`` at 3 decimals as the tables print values (no ``-0.000``)."""
    return "-" if not math.isfinite(mean) else f"{format_value(mean)} ± {format_value(std)}"


def write_comparison(
    config: ExperimentConfig, stats, per_seed, average_notes, capped, cap_where: str
) -> dict[str, Path]:
    """``comparison.{md,csv}`` under ``config.out`` from the recomputed averages (``stats``:
    ``{key: (mean, std, n)}`` of :func:`~asccl.spfem.seeds.aggregate`); a PSNR row where
    either variant has frames at the cap in some seed (``capped``: per setting, the counts
    of each row and method) names no better variant (``not ranked``) and counts no seeds;
    ``cap_where``: the footnote's words for the seeds counted."""
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
                wins = str(sum(1 for s in per_seed
                               if (s[(setting, ours, AVERAGE, metric)] > s[(setting, base,
                                   AVERAGE, metric)]) == higher
                               and s[(setting, ours, AVERAGE, metric)]
                               != s[(setting, base, AVERAGE, metric)]))  # fmt: skip
                notes = [t for t in [average_notes.get((setting, metric), "")] if t]
                counts = capped.get(setting, {}).get(AVERAGE, {}) if metric == "psnr" else {}
                counts = {m: counts.get(m, (0, 0)) for m in (base, ours)}
                if any(k for k, _ in counts.values()):  # the cap can decide: no ranking
                    better, wins = "not ranked", "-"
                    notes.append(cap_note(counts, cap_where))
                rows.append((model, setting, label, a, b, b[0] - a[0], better, wins,
                             tuple(notes)))  # fmt: skip
    header = ("model", "setting", "metric", "baseline", "+ASCCL", "difference", "better",
              "+ASCCL better in")  # fmt: skip
    out = Path(config.out)
    body = [",".join(("model", "setting", "metric", "baseline_mean", "baseline_std",
                      "asccl_mean", "asccl_std", "difference", "better", "asccl_better_seeds",
                      "seeds", "note"))]  # fmt: skip
    for m, s, k, a, b, d, w, c, texts in rows:
        numbers = [f"{a[0]:.4f}", f"{a[1]:.4f}", f"{b[0]:.4f}", f"{b[1]:.4f}", f"{d:+.4f}"]
        body.append(",".join([m, s, k, *numbers, w, c, str(n), _csv_cell("; ".join(texts))]))
    csv_path = write_text_atomic(out / "comparison.csv", "\n".join(body) + "\n")
    md = [
        f"# Baseline vs +ASCCL, mean ± std over {n} seeds ({', '.join(map(str, config.seeds))})\n",
        f"Test speakers: {', '.join(config.test_speakers)}; ASCCL weight "
        f"{config.asccl_weight:g}; each seed's average (seed_<s>/eval/) taken over the "
        "emotions every method has in every seed (a footnote names them where fewer). "
        "std: sample standard deviation over seeds. `better` names a variant only where its "
        "mean beats the other's by more than the larger std and at 3 decimals, else `within "
        "spread` (`not ranked` where frames identical to the ground truth, PSNR at its "
        "100 dB cap, could decide it: see the footnote); the last column counts the seeds "
        "where +ASCCL's value was the better one.\n",
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
    ]
    refs = {t: i + 1 for i, t in enumerate(dict.fromkeys(t for r in rows for t in r[-1]))}
    cited = [", ".join(str(refs[t]) for t in r[-1]) for r in rows]
    md += [f"| {m} | {s} | {k}{f' [{ref}]' if ref else ''} | {mean_std(*a[:2])} | "
           f"{mean_std(*b[:2])} | {format_value(d, signed=True)} | {w} | "
           f"{c if c == '-' else f'{c}/{n}'} |"
           for (m, s, k, a, b, d, w, c, _), ref in zip(rows, cited, strict=True)]  # fmt: skip
    if refs:
        md += [""] + [f"[{i}] {t}  " for t, i in refs.items()]
    md_path = write_text_atomic(out / "comparison.md", "\n".join(md) + "\n")
    return {"comparison_md": md_path, "comparison_csv": csv_path}


def _csv_cell(text: str) -> str:
    return '"' + text.replace('"', '""') + '"' if any(c in text for c in ',"\n') else text
