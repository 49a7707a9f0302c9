"""``asccl evaluate``: FID or FAD, CSIM and LSE-D/LSE-C over a results folder -> tables, plots.

For each method x setting x emotion of a results folder (layout:
:mod:`asccl.evaluation.results`):

- **FID / FAD** (``distribution_metric``): Frechet distance between the features of the
  sources of that emotion (real: every clip under ``sources/<emotion>/``) and of the method's
  results (fake), all frames pooled. FID uses pytorch-fid's Inception on the frame
  centre-cropped to a square (RGB in [0, 1], resized to 299 by the extractor); FAD uses
  ArcFace embeddings of the crop resized to 112 (see :mod:`asccl.evaluation.frechet`).
- **CSIM**: cosine similarity of ArcFace embeddings of source frame ``i`` and result frame
  ``i`` (frame-aligned by index, up to the shorter clip), averaged over all frames of the
  emotion. Frames are only centre-cropped and resized to 112x112, so results and sources
  must already be aligned face crops (insightface's alignment or a tight square around it).
- **LSE-D / LSE-C**: SyncNet on the result frames centre-cropped and resized to 224x224,
  with the result's own audio track, or the source's when the result has none (frame
  folders, silent renders: the result is assumed to be lip-synced to its source). Per clip
  by :func:`asccl.evaluation.lip_sync.evaluate_clip`, then the mean over clips; dropped clips
  (too short) are listed in the report.

Rows are the emotions plus ``average``: the plain mean over the emotions present, as the
paper averages its per-emotion rows. Each clip's features (per extractor) are cached under
``<out>/cache/<extractor>/`` as ``.npz`` written atomically, one entry per clip, holding the
recipe that made it (:func:`feature_recipe`: the clip's path, size and mtime, the weights
file's, the input size and preprocessing, ``max_frames_per_clip``, the LSE settings and
audio). A re-run reuses an entry only when its recipe is this run's, so adding a method only
computes the new clips and a killed run resumes, while a changed clip, weights file or
setting redoes the entries it touches (the report says how many, and why). An unreadable
clip is reported by name with the reason and never scored; it is not fatal. The tables,
plots and grids of settings no longer evaluated are removed at the end of a run.

Single process; on a GPU set ``device = "cuda"``.

The run is this module; its parts: :mod:`~asccl.evaluation.config` (``EvalConfig``,
``EvalSummary``), :mod:`~asccl.evaluation.features` (extractors, jobs),
:mod:`~asccl.evaluation.cache` (recipes, the per-clip cache), :mod:`~asccl.evaluation.scoring`
and :mod:`~asccl.evaluation.report` (tables, plots, grids, report, stale outputs).
"""

from __future__ import annotations

from pathlib import Path

from asccl.data.errors import DataError
from asccl.evaluation.cache import (
    CACHE_VERSION,
    EXTRACTOR_INPUT,
    RECIPE_KEY,
    cache_path,
    extract_features,
    feature_recipe,
)
from asccl.evaluation.config import METRIC_SWITCHES, EvalConfig, EvalSummary
from asccl.evaluation.features import Extractors, feature_jobs, square_resize
from asccl.evaluation.report import remove_stale_outputs, write_run_files, write_setting
from asccl.evaluation.results import scan_results
from asccl.evaluation.scoring import setting_scores

__all__ = [
    "CACHE_VERSION",
    "EXTRACTOR_INPUT",
    "METRIC_SWITCHES",
    "RECIPE_KEY",
    "EvalConfig",
    "EvalSummary",
    "Extractors",
    "cache_path",
    "feature_recipe",
    "run_evaluation",
    "square_resize",
]


def run_evaluation(config: EvalConfig) -> dict[str, Path]:
    """Evaluate ``config.results`` into ``config.out``; returns ``{name: path}`` of outputs:
    ``config``, ``scores`` (long CSV), ``summary`` (JSON), ``report`` (text), and per setting
    ``table_<setting>_{md,csv,tex}``, ``plot_<setting>``, ``grid_<setting>``."""
    from asccl.config import save_config

    out = Path(config.out)
    extractors = Extractors(config)  # the weights load first: a bad file stops the run here
    dist = {"fid": "inception", "fad": "arcface"}[config.distribution_metric]
    for kind, used in (
        (dist, config.use_distribution),
        ("arcface", "csim" in config.metrics),
        ("syncnet", "lse" in config.metrics),
    ):
        if used:
            extractors.model(kind)
    index = scan_results(config.results)
    if not index.clips:  # e.g. <method>/<emotion>/ with the setting level missing
        sources = str(Path(config.results) / "sources")
        why = [p for p in index.problems if not p.startswith(sources)] or index.problems
        more = f" (and {len(why) - 1} more)" if len(why) > 1 else ""
        first = f": {why[0]}{more}" if why else ""
        raise DataError(config.results, f"no result clips (<method>/<setting>/<emotion>/<clip>)"
                        f"{first}")  # fmt: skip
    methods = list(config.methods) or index.methods
    missing = [m for m in methods if m not in index.methods]
    if missing:
        raise DataError(config.results, f"no method folder(s) {missing}; found {index.methods}")
    index.clips = [c for c in index.clips if c.method in methods]
    out.mkdir(parents=True, exist_ok=True)
    outputs: dict[str, Path] = {"config": out / "config.json"}  # written last, with the rest
    summary = EvalSummary(problems=list(index.problems))
    features = extract_features(feature_jobs(index, config), extractors, config, summary)

    metrics = config.table_metrics
    long_rows = []
    for setting in index.settings:
        scores = setting_scores(index, setting, methods, features, config, summary)
        for method, rows in scores.items():
            for row, values in rows.items():
                long_rows += [(setting, method, row, k, values[k]) for k in metrics if k in values]
        outputs |= write_setting(scores, index, methods, setting, config)

    outputs |= write_run_files(out, long_rows, summary, index)
    save_config(config, outputs["config"])
    remove_stale_outputs(out, outputs)
    return outputs
