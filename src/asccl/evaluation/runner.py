"""``asccl evaluate``: FID or FAD, CSIM and LSE-D/LSE-C over a results folder -> tables, plots.

For each method x setting x emotion of a results folder (layout:
:mod:`asccl.evaluation.results`):

- **FID / FAD** (``distribution_metric``): Frechet distance between the features of the
  real set of that emotion (``real_set``: every clip under ``sources/<emotion>/`` by default,
  or the setting's ``references/<setting>/<emotion>/`` or ``ground_truth/<setting>/<emotion>/``;
  tables say which) and of the method's results (fake), all frames pooled. FID uses
  pytorch-fid's Inception on the frame centre-cropped to a square (RGB in [0, 1], resized
  to 299 by the extractor); FAD uses ArcFace embeddings of the crop resized to 112 (see
  :mod:`asccl.evaluation.frechet`).
- **CSIM**: cosine similarity of ArcFace embeddings of source frame ``i`` and result frame
  ``i`` (frame-aligned by index, up to the shorter clip), averaged over all frames of the
  emotion. Frames are only centre-cropped and resized to 112x112, so results and sources
  must already be aligned face crops (insightface's alignment or a tight square around it).
- **Ground truth** (when ``<results>/ground_truth/`` exists, or ``metrics`` names
  ``"ground_truth"``): mouth and full-face landmark error (normalised by the ground truth's
  inter-ocular distance), PSNR and SSIM of each result against its ground-truth namesake,
  frame by frame (:mod:`asccl.evaluation.ground_truth`,
  :mod:`asccl.evaluation.ground_truth_features`): four more columns in the same tables.
- **LSE-D / LSE-C**: SyncNet on the result frames centre-cropped and resized to 224x224,
  with the result's own audio track, or the source's when the result has none (frame
  folders, silent renders: the result is assumed to be lip-synced to its source). Per clip
  by :func:`asccl.evaluation.lip_sync.evaluate_clip`, then the mean over clips; dropped clips
  (too short) are listed in the report.

Rows are the emotions plus ``average``. Every row is computed over the same clips for every
method (those all of them scored), the average over the emotions where every method has a
value (:mod:`asccl.evaluation.scoring`); footnotes say where a set shrank, and a winner is
marked only among values of the same set that differ at the displayed precision. Each
clip's features (per extractor) are cached under ``<out>/cache/<extractor>/`` as ``.npz``
written atomically, one entry per clip, holding the recipe that made it
(:func:`feature_recipe`: the clip's path, size and mtime, the weights file's, the input
size and preprocessing, ``max_frames_per_clip``, the LSE settings and audio). A re-run
reuses an entry only when its recipe is this run's, so adding a method only computes the
new clips and a killed run resumes, while a changed clip, weights file or
setting redoes the entries it touches (the report says how many, and why). An unreadable
clip is reported by name with the reason and never scored; it is not fatal. The tables,
plots and grids of settings no longer evaluated are removed at the end of a run.

Under ``torchrun --nproc_per_node N -m asccl evaluate ...`` (gloo on CPU, NCCL on CUDA)
the clips are split across processes by (emotion, clip name), so a result, its source and
its real-set clip share a process; each extracts its features and updates the metrics, whose
``compute()`` sums their states over the processes: the tables are those of one process.
Process 0 writes the outputs.

The run is this module; its parts: :mod:`~asccl.evaluation.config` (``EvalConfig``,
``EvalSummary``), :mod:`~asccl.evaluation.features` (extractors, jobs),
:mod:`~asccl.evaluation.cache` (recipes, the per-clip cache), :mod:`~asccl.evaluation.scoring`
and :mod:`~asccl.evaluation.report` (tables, plots, grids, report, stale outputs).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from asccl.data.errors import DataError
from asccl.evaluation.cache import (
    CACHE_VERSION,
    RECIPE_KEY,
    cache_path,
    extract_features,
    feature_recipe,
)
from asccl.evaluation.config import METRIC_SWITCHES, EvalConfig, EvalSummary
from asccl.evaluation.features import Extractors, FeatureJob, feature_jobs, square_resize
from asccl.evaluation.report import remove_stale_outputs, write_run_files, write_setting
from asccl.evaluation.results import GROUND_TRUTH, ResultsIndex, scan_results
from asccl.evaluation.scoring import DIST_KIND, RealStats, scored_units, setting_scores

__all__ = [
    "CACHE_VERSION",
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
    from asccl.training.distributed import setup_distributed, world_size

    saved, owned = config, False
    rank, world = 0, 1
    if world_size() > 1:
        import torch.distributed as dist

        owned = not dist.is_initialized()
        rank, world, device = setup_distributed(config.device)
        config = replace(config, device=str(device))
    try:
        out = Path(config.out)
        extractors = Extractors(config)  # the weights load first: a bad file stops the run here
        dist_kind = DIST_KIND[config.distribution_metric]
        for kind, used in (
            (dist_kind, config.use_distribution),
            ("inception", "kid" in config.metrics),
            ("arcface", "csim" in config.metrics),
            ("syncnet", "lse" in config.metrics),
        ):
            if used:
                extractors.model(kind)
        index, methods = _scan(config)
        if index.ground_truth is not None and "ground_truth" not in config.metrics:
            config = replace(config, metrics=(*config.metrics, "ground_truth"))  # GT columns
        out.mkdir(parents=True, exist_ok=True)
        outputs: dict[str, Path] = {"config": out / "config.json"}  # written last
        summary = EvalSummary(problems=list(index.problems))
        jobs = _share(_jobs(index, config), index, rank, world)
        features = extract_features(jobs, extractors, config, summary)
        if "ground_truth" in config.metrics:
            from asccl.evaluation.ground_truth_features import (
                extract_ground_truth,
                ground_truth_jobs,
            )

            gt_jobs = _share(ground_truth_jobs(index), index, rank, world)
            features |= extract_ground_truth(gt_jobs, index, extractors, config, summary)
        for (kind, path), f in sorted(features.items(), key=lambda item: str(item[0])):
            missed = len(f.get("no_face", ()))
            if missed:  # report.txt lists them per clip; those frames are never scored
                total = f"of {int(f['frames'])} " if "frames" in f else ""
                how = f"{kind}, {config.framing_of(kind)} framing"
                summary.problems.append(f"{path}: {missed} frame(s) {total}without a face "
                                        f"({how}), not scored")  # fmt: skip
        local = scored_units(index.clips, features, config, summary)
        dims = {k: f["features"].shape[1] for (k, _), f in features.items()
                if k not in ("syncnet", "ground_truth")}  # fmt: skip
        shared = _gather((local, dims), world)
        available = set().union(*(units for units, _ in shared))
        real = RealStats(index, features, config, {k: d for _, p in shared for k, d in p.items()})

        metrics, long_rows, results = config.table_metrics, [], {}
        for setting in index.settings:
            results[setting] = setting_scores(index, setting, methods, features, config,
                                              summary, available, local, real)  # fmt: skip
            for method, rows in results[setting].scores.items():
                for row, values in rows.items():
                    long_rows += [(setting, method, row, k, values[k]) for k in metrics
                                  if k in values]  # fmt: skip
        summary = _merge(_gather(summary, world), len(index.problems))
        if rank == 0:
            for setting, result in results.items():
                outputs |= write_setting(result, index, methods, setting, config)
            comparable = any(r.any_average for r in results.values())
            outputs |= write_run_files(out, long_rows, summary, index, comparable,
                                       config.real_set, results)  # fmt: skip
            save_config(saved, outputs["config"])
            remove_stale_outputs(out, outputs)
        _gather(None, world)  # every process returns once the outputs are written
        if rank != 0:
            outputs |= {f"table_{s}_{ext}": out / "tables" / f"{s}.{ext}"
                        for s in results for ext in ("md", "csv", "tex")}  # fmt: skip
            outputs |= {n: out / f for n, f in (("scores", "scores.csv"), ("report",
                        "report.txt"), ("summary", "summary.json"))}  # fmt: skip
        return outputs
    finally:
        if owned:
            import torch.distributed as dist

            dist.destroy_process_group()


def _scan(config: EvalConfig) -> tuple[ResultsIndex, list[str]]:
    """The results folder's index (clips of ``config.methods`` only) and the methods; a
    folder that cannot be evaluated is a one-line :class:`DataError` naming what is missing."""
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
        layout = "<method>/<setting>/<emotion>/<clip>"
        raise DataError(config.results, f"no method folder(s) {missing} with result clips "
                        f"({layout}); found {index.methods}")  # fmt: skip
    if "ground_truth" in config.metrics and index.ground_truth is None:
        folder = Path(config.results) / GROUND_TRUTH
        raise DataError(folder, 'missing: metrics "ground_truth" needs the target clips as '
                        "<setting>/<emotion>/<clip> (+ <clip>.landmarks.npy)")  # fmt: skip
    if config.real_set == "ground_truth" and index.ground_truth is None:
        folder = Path(config.results) / GROUND_TRUTH
        example = folder / index.settings[0] / index.emotions[0] / f"{index.clips[0].name}.mp4"
        raise DataError(folder, 'missing: real_set = "ground_truth" needs the target clips as '
                        f"<setting>/<emotion>/<clip>, e.g. {example}")  # fmt: skip
    index.clips = [c for c in index.clips if c.method in methods]
    return index, methods


def _jobs(index: ResultsIndex, config: EvalConfig) -> list[FeatureJob]:
    """Every (extractor, clip) job: :func:`feature_jobs`, with the FID/FAD real set's clips
    (``real_set``) instead of every source."""
    jobs = feature_jobs(index, config)
    kinds = [DIST_KIND[config.distribution_metric]] if config.use_distribution else []
    kinds += ["inception"] if "kid" in config.metrics else []
    if config.use_distribution and config.real_set != "sources":
        kind = kinds[0]
        needed = {c.path for c in index.clips}  # results, and the sources CSIM compares with
        needed |= {c.source for c in index.clips if "csim" in config.metrics
                   and kind == "arcface"}  # fmt: skip
        jobs = [j for j in jobs if j.kind != kind or j.clip in needed]
    have = {(j.kind, j.clip) for j in jobs}
    for kind in kinds:
        paths = [c.path for c in index.clips]
        for setting in index.settings:
            for emotion in index.emotions:
                paths += index.real_clips(config.real_set, setting, emotion).values()
        for path in paths:
            if (kind, path) not in have:
                have.add((kind, path))
                jobs.append(FeatureJob(kind, path))
    return jobs


def _share(jobs: list[FeatureJob], index: ResultsIndex, rank: int, world: int):
    """This process's jobs: those of every ``world``-th (emotion, clip name) group, so that
    a result, its source and its real-set namesake are in one process."""
    if world == 1:
        return jobs
    group: dict[Path, tuple[str, str]] = {}
    for c in index.clips:
        for path in (c.path, c.source, c.reference):
            if path is not None:
                group[path] = (c.emotion, c.name)
    for emotion, clips in index.sources.items():
        group |= {path: (emotion, name) for name, path in clips.items()}
    for tree in (index.references, index.ground_truth or {}):
        for emotions in tree.values():
            for emotion, clips in emotions.items():
                group |= {path: (emotion, name) for name, path in clips.items()}
    keys = sorted({group.get(j.clip, ("", str(j.clip))) for j in jobs})
    mine = set(keys[rank::world])
    return [j for j in jobs if group.get(j.clip, ("", str(j.clip))) in mine]


def _gather(obj, world: int) -> list:
    """``obj`` of every process, in rank order (``[obj]`` for one process)."""
    if world == 1:
        return [obj]
    import torch.distributed as dist

    parts: list = [None] * world
    dist.all_gather_object(parts, obj)
    return parts


def _merge(parts: list[EvalSummary], scanned: int) -> EvalSummary:
    """One summary of every process's: counts summed, failures joined, the scan's problems
    (the same in all) then the others, sorted (so any number of processes lists them alike)."""
    first = parts[0]
    merged = EvalSummary(problems=list(first.problems[:scanned]))
    later: set[str] = set()
    for part in parts:
        merged.computed += part.computed
        merged.cached += part.cached
        merged.redone += part.redone
        for key, n in part.redone_because.items():
            merged.redone_because[key] = merged.redone_because.get(key, 0) + n
        merged.failures |= part.failures
        later |= set(part.problems[scanned:])
    merged.problems += sorted(later)
    merged.failures = dict(sorted(merged.failures.items()))
    return merged
