"""Step 3 of ``asccl experiment``: ``comparison.{md,csv}``, baseline vs +ASCCL per model,
setting and metric, from the evaluation's ``scores.csv``.

A frame identical to its ground truth counts as 100 dB in a PSNR mean (the cap stands in
for infinity and can decide a ranking: :mod:`asccl.evaluation.ground_truth_scoring`), so a
PSNR row where either variant's average has frames at the cap (``scores.csv``'s column
``psnr_capped_frames``) names no better variant (``not ranked``) and gets a footnote with
the counts. A ``scores.csv`` of an asccl older than the counts says nothing about capped
frames: its PSNR row is ranked as before."""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path
from typing import TYPE_CHECKING

from asccl.evaluation.ground_truth_scoring import cap_note, read_caps
from asccl.evaluation.tables import AVERAGE, METRICS, format_value
from asccl.io import write_text_atomic
from asccl.spfem.results import MODEL_SETTINGS, method_name

if TYPE_CHECKING:
    from asccl.spfem.experiment import ExperimentConfig


def compare(config: ExperimentConfig, scores_csv: Path) -> dict[str, Path]:
    """``comparison.{md,csv}``: per model, setting and metric, the average over emotions of
    the baseline and of +ASCCL, the difference (+ASCCL - baseline) and the better one."""
    with open(scores_csv, newline="") as handle:
        rows = list(csv.DictReader(handle))
    value = {(r["setting"], r["method"], r["emotion"], r["metric"]): float(r["value"])
             for r in rows}  # fmt: skip
    caps = read_caps(rows)
    metrics = [m for m in METRICS if any(r["metric"] == m for r in rows)]
    table = []
    for model in config.models:
        base, ours = method_name(model, "baseline"), method_name(model, "asccl")
        for setting in MODEL_SETTINGS[model]:
            for metric in metrics:
                a = value.get((setting, base, AVERAGE, metric), math.nan)
                b = value.get((setting, ours, AVERAGE, metric), math.nan)
                if math.isnan(a) and math.isnan(b):
                    continue
                higher = METRICS[metric][2]
                if math.isnan(a) or math.isnan(b):
                    better = "-"
                elif format_value(a) == format_value(b):
                    better = "tie"  # equal to the table's precision (-0.000 is 0.000)
                else:
                    better = "+ASCCL" if (b > a) == higher else "baseline"
                counts = {m: caps[setting, m, AVERAGE] for m in (base, ours)
                          if metric == "psnr" and (setting, m, AVERAGE) in caps}  # fmt: skip
                note = ""
                if any(k for k, _ in counts.values()):  # the cap can decide: no ranking
                    better, note = "not ranked", cap_note(counts)
                table.append((model, setting, METRICS[metric][0], a, b, b - a, better, note))
    header = ("model", "setting", "metric", "baseline", "+ASCCL", "difference", "better")
    out = config.out
    csv_path = out / "comparison.csv"
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow((*header, "note"))
    writer.writerows([m, s, k, f"{a:.4f}", f"{b:.4f}", f"{d:+.4f}", w, t]
                     for m, s, k, a, b, d, w, t in table)  # fmt: skip
    write_text_atomic(csv_path, buffer.getvalue())
    real = f"; FID/FAD real set: {config.eval.real_set}" if config.eval.use_distribution else ""
    md = [
        "# Baseline vs +ASCCL per model, setting and metric (average over emotions)\n",
        f"Test speakers: {', '.join(config.test_speakers)}; ASCCL weight "
        f"{config.asccl_weight:g}; seed {config.seed}; same data and step budget for both{real}. "
        "Averages are over the emotions and clips both variants have (the setting's table "
        "in eval/tables/ footnotes any left out); `better` is `tie` where the values are "
        "equal at the 3 decimals shown, `not ranked` where frames at the PSNR cap could "
        "decide it (see the footnote).\n",
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
    ]
    refs = {t: i + 1 for i, t in enumerate(dict.fromkeys(r[-1] for r in table if r[-1]))}
    md += [f"| {m} | {s} | {k}{f' [{refs[t]}]' if t else ''} | {format_value(a)} | "
           f"{format_value(b)} | {format_value(d, signed=True)} | {w} |"
           for m, s, k, a, b, d, w, t in table]  # fmt: skip
    if refs:
        md += [""] + [f"[{i}] {t}  " for t, i in refs.items()]
    md_path = write_text_atomic(out / "comparison.md", "\n".join(md) + "\n")
    return {"comparison_md": md_path, "comparison_csv": csv_path}
