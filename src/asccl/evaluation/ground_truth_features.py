"""Per-clip inputs of the ground-truth metrics (``metrics`` switch ``"ground_truth"``, on by
itself when the results folder has ``ground_truth/``), cached like the other features.

For every result with a ground-truth namesake (``ground_truth/<setting>/<emotion>/<clip>``)
one cache entry ``<out>/cache/ground_truth/<clip>-<hash>.npz`` holds, over the first
``T = min(result frames, ground-truth frames)`` frames (frame ``i`` against frame ``i``;
the report notes a result longer or shorter than its ground truth, and a result at another
frame rate than its ground truth is not scored, naming both rates):

* ``landmarks`` ``(T, 68, 2)``: the result's landmarks from the evaluation's face tracker
  (:meth:`~asccl.evaluation.features.Extractors.face_track`, the data stage's tracker, its
  own ``framing`` cache; NaN where no face was found);
* ``truth_landmarks`` ``(T, 68, 2)``: the ground truth's, read from ``<clip>.landmarks.npy``
  beside the ground-truth video when present (``(N, 68, 2)`` pixels of that video's
  frames: what ``asccl data synth`` and ``asccl experiment`` write), else tracked alike;
* ``truth_tracked`` ``(T, 68, 2)``: the ground truth's landmarks as the same tracker finds
  them (the same :meth:`~asccl.evaluation.features.Extractors.face_track`, so tracked once
  per ground-truth clip and kept in its ``framing`` cache; NaN where no face was found):
  the reference of the LMD columns (:func:`~asccl.evaluation.ground_truth.landmark_distance`);
* ``psnr``, ``ssim`` ``(T,)``: per frame (:func:`~asccl.evaluation.ground_truth.psnr`,
  :func:`~asccl.evaluation.ground_truth.ssim`, uint8 range 255). A frame equal to its
  ground truth has an infinite PSNR; it is stored as :data:`PSNR_CAP` (100 dB) so that means
  stay finite: a uint8 frame of ``H x W x 3`` values that differs from its ground truth at
  all has ``MSE >= 1 / (3 H W)``, i.e. PSNR ``<= 10 log10(255^2 * 3 H W)``, 95 dB at
  128x128 and 116 dB at 1920x1080, so 100 dB means "identical" for frames up to ~400x400.
  The mean over frames keeps the capped values (the papers' mean of per-frame PSNR), so the
  cap can decide a ranking: the tables count a method's frames at the cap in a footnote and
  mark no PSNR winner in such a row (:mod:`asccl.evaluation.scoring`).

The entry's recipe names both clips and the landmarks file (path, size, mtime), the
tracker's settings (those of ``truth_tracked`` too), ``max_frames_per_clip`` and the cap;
another recipe recomputes it, and so does an entry lacking an array of :data:`ARRAYS`
(version 1 entries had no ``truth_tracked``: :data:`GT_VERSION` 2 redoes them).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from asccl.data.errors import DataError, printable_path
from asccl.evaluation import cache
from asccl.evaluation.config import EvalConfig, EvalSummary
from asccl.evaluation.features import Extractors, FeatureJob, track_settings
from asccl.evaluation.results import ResultsIndex, read_frames

#: bump when what an entry holds or means changes (2: ``truth_tracked`` added)
GT_VERSION = 2
#: the per-frame PSNR stored for a frame equal to its ground truth (dB; see the module doc)
PSNR_CAP = 100.0
#: the extractor kind of these entries (cache folder, feature key)
KIND = "ground_truth"
#: the arrays every entry holds (one missing: the entry is recomputed)
ARRAYS = ("landmarks", "truth_landmarks", "truth_tracked", "psnr", "ssim", "frames",
          "truth_frames")  # fmt: skip


def truth_landmarks_path(truth: Path) -> Path:
    """``<clip>.landmarks.npy`` beside a ground-truth video (or frame folder)."""
    return truth.with_name(f"{truth.stem if truth.is_file() else truth.name}.landmarks.npy")


def ground_truth_jobs(index: ResultsIndex) -> list[FeatureJob]:
    """One job per result with a ground-truth namesake (same setting, emotion and name)."""
    tree = index.ground_truth or {}
    return [FeatureJob(KIND, c.path) for c in index.clips
            if c.name in tree.get(c.setting, {}).get(c.emotion, {})]  # fmt: skip


def _truth_of(index: ResultsIndex) -> dict[Path, Path]:
    tree = index.ground_truth or {}
    return {c.path: tree[c.setting][c.emotion][c.name] for c in index.clips
            if c.name in tree.get(c.setting, {}).get(c.emotion, {})}  # fmt: skip


def recipe(config: EvalConfig, clip: Path, truth: Path) -> dict[str, str]:
    """What an entry depends on (see the module doc)."""
    marks = truth_landmarks_path(truth)
    return {
        "version": str(GT_VERSION),
        "extractor": KIND,
        "clip": cache._identity(clip),
        "truth": cache._identity(truth),
        "truth_landmarks": cache._identity(marks) if marks.is_file() else "tracked",
        "track": track_settings(config),
        "max_frames_per_clip": str(config.max_frames_per_clip),
        "psnr_cap": repr(PSNR_CAP),
    }


def compute(extractors: Extractors, clip: Path, truth: Path) -> dict[str, np.ndarray]:
    """One entry's arrays (see the module doc); :class:`DataError` for an unreadable clip,
    frames of another size than the ground truth's, or a bad landmarks file."""
    from asccl.evaluation.ground_truth import psnr, ssim

    limit = extractors.config.max_frames_per_clip
    frames, target = read_frames(clip, limit), read_frames(truth, limit)
    if frames.shape[1:] != target.shape[1:]:
        raise DataError(clip, f"frames {frames.shape[2]}x{frames.shape[1]}, its ground truth "
                        f"{truth} {target.shape[2]}x{target.shape[1]}: not comparable")  # fmt: skip
    t = min(len(frames), len(target))
    marks = truth_landmarks_path(truth)
    if marks.is_file():
        try:
            truth_marks = np.load(marks, allow_pickle=False)
        except (OSError, ValueError) as err:
            raise DataError(marks, f"unreadable landmarks ({err})") from None
        if truth_marks.ndim != 3 or truth_marks.shape[1:] != (68, 2) or len(truth_marks) < t:
            raise DataError(marks, f"expected ({t} or more, 68, 2) landmarks, got "
                            f"{truth_marks.shape}")  # fmt: skip
        truth_marks = truth_marks[:t].astype(np.float32)
    tracked = extractors.face_track(truth, target).landmarks[:t].astype(np.float32)
    if not marks.is_file():
        truth_marks = tracked
    result_marks = extractors.face_track(clip, frames).landmarks[:t]
    value = psnr(frames[:t], target[:t]).numpy()
    return {
        "landmarks": result_marks.astype(np.float32),
        "truth_landmarks": truth_marks,
        "truth_tracked": tracked,
        "psnr": np.minimum(value, PSNR_CAP),
        "ssim": ssim(frames[:t], target[:t]).numpy(),
        "frames": np.int64(len(frames)),
        "truth_frames": np.int64(len(target)),
    }


def extract_ground_truth(
    jobs: list[FeatureJob],
    index: ResultsIndex,
    extractors: Extractors,
    config: EvalConfig,
    summary: EvalSummary,
) -> dict[tuple[str, Path], dict[str, np.ndarray]]:
    """``{("ground_truth", result): arrays}`` of ``jobs``: from the cache when its recipe
    matches, else computed and cached; an unreadable clip is listed in ``summary``."""
    from tqdm import tqdm

    truths, out = _truth_of(index), {}
    sources = {c.path: c.source for c in index.clips}
    for job in tqdm(jobs, desc="ground truth", unit="clip", leave=False):
        truth = truths[job.clip]
        try:
            other_rate = _rate_mismatch(job.clip, truth, sources.get(job.clip), config)
        except DataError as err:
            where = "" if err.path == printable_path(job.clip) else f"{err.path}: "
            summary.fail(job.clip, f"{where}{err.problem}")
            continue
        if other_rate:
            summary.fail(job.clip, f"ground-truth metrics not scored: {other_rate}")
            continue
        wanted = recipe(config, job.clip, truth)
        path = cache.cache_path(config.out, KIND, job.clip, truth)
        data = cache._load_npz(path)
        made_by = cache._recipe_of(data) if data is not None else None
        if data is not None and made_by == wanted and all(k in data for k in ARRAYS):
            summary.cached += 1
        else:
            try:
                data = compute(extractors, job.clip, truth)
            except DataError as err:
                where = "" if err.path == printable_path(job.clip) else f"{err.path}: "
                summary.fail(job.clip, f"{where}{err.problem}")
                continue
            text = np.str_(json.dumps(wanted, sort_keys=True))
            cache._save_npz(path, {**data, cache.RECIPE_KEY: text})
            summary.computed += 1
            if made_by is not None:
                summary.redone += 1
                changed = [k for k in sorted(set(wanted) | set(made_by))
                           if wanted.get(k) != made_by.get(k)] or ["arrays"]  # fmt: skip
                for key in changed:
                    summary.redone_because[key] = summary.redone_because.get(key, 0) + 1
        if int(data["frames"]) > int(data["truth_frames"]):
            summary.problems.append(f"{job.clip}: {int(data['frames'])} frames, its ground "
                                    f"truth {int(data['truth_frames'])}; the first "
                                    f"{int(data['truth_frames'])} are compared")  # fmt: skip
        elif int(data["frames"]) < int(data["truth_frames"]):
            summary.problems.append(f"{job.clip}: {int(data['frames'])} frames, its ground "
                                    f"truth {int(data['truth_frames'])}; only the first "
                                    f"{int(data['frames'])} of the ground truth are compared "
                                    "(a result should be as long as its ground "
                                    "truth)")  # fmt: skip
        out[(KIND, job.clip)] = {k: v for k, v in data.items() if k != cache.RECIPE_KEY}
    return out


def _rate_mismatch(clip: Path, truth: Path, source: Path | None, config: EvalConfig) -> str:
    """``""`` when ``clip`` and its ground truth have the same frame rate over the frames
    compared (:func:`~asccl.evaluation.features.rates_differ`; a frame folder has its
    source video's rate, else ``frame_folder_fps``), else the reason naming both rates."""
    from asccl.evaluation.features import frame_count, frame_rate, rates_differ

    a, b = frame_rate(clip, source, config), frame_rate(truth, source, config)
    frames = min(frame_count(clip), frame_count(truth))
    if config.max_frames_per_clip:
        frames = min(frames, config.max_frames_per_clip)
    if not rates_differ(a, b, frames):
        return ""
    return (f"{a:g} fps, its ground truth {truth} {b:g} fps: frames are compared by "
            "index, so both must have the same rate")  # fmt: skip


def has_face(landmarks: np.ndarray) -> np.ndarray:
    """``(T, 68, 2)`` landmarks -> ``(T,)`` bool: frames with a face (no NaN point)."""
    return ~np.isnan(landmarks).any(axis=(1, 2))


def face_frames(entry: dict[str, np.ndarray]) -> np.ndarray:
    """``(T,)`` bool: frames where both the result and the ground truth have landmarks
    (the landmark errors use the frames where this holds for every method's namesake)."""
    return has_face(entry["landmarks"]) & has_face(entry["truth_landmarks"])


def lmd_frames(entry: dict[str, np.ndarray]) -> np.ndarray:
    """``(T,)`` bool: frames of :func:`face_frames` where the tracker also finds the ground
    truth's face (``truth_tracked``): the LMD columns' frames, for every method's namesake."""
    return face_frames(entry) & has_face(entry["truth_tracked"])


__all__ = [
    "ARRAYS",
    "GT_VERSION",
    "KIND",
    "PSNR_CAP",
    "compute",
    "extract_ground_truth",
    "face_frames",
    "ground_truth_jobs",
    "has_face",
    "lmd_frames",
    "recipe",
    "truth_landmarks_path",
]
