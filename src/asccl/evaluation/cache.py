"""The per-clip feature cache under ``<out>/cache/<extractor>/``: one ``.npz`` per clip and
extractor, written atomically, holding the recipe that made it (:func:`feature_recipe`);
:func:`extract_features` reuses an entry only when its recipe is this run's, else computes
and stores it (counting why a stale entry was redone)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
from tqdm import tqdm

from asccl.data.errors import DataError, printable_path
from asccl.evaluation.config import EvalConfig, EvalSummary
from asccl.evaluation.features import Extractors, FeatureJob, extractor_input
from asccl.io import atomic_write

#: bump when a change of this module or of features.py changes what a cached entry holds or means
CACHE_VERSION = 2


def _stamp(path: Path) -> str:
    """A file's size and mtime (a frame folder's: every image file's), ``"missing"`` if
    absent: what tells a changed file from the one a cache entry was made from."""
    try:
        if path.is_dir():
            files = sorted(p for p in path.iterdir() if p.is_file())
            return ";".join(f"{p.name}:{p.stat().st_size}:{p.stat().st_mtime_ns}" for p in files)
        st = path.stat()
    except OSError:
        return "missing"
    return f"{st.st_size}:{st.st_mtime_ns}"


def _identity(path: Path | None) -> str:
    """``"<absolute path> <stamp>"`` of a file or frame folder; ``"none"`` for ``None``."""
    if path is None:
        return "none"
    return f"{Path(path).resolve()} {_stamp(Path(path))}"


def cache_path(out: Path, kind: str, clip: Path, audio_from: Path | None = None) -> Path:
    """``<out>/cache/<kind>/<clip name>-<hash>.npz``: one entry per clip (and the audio it
    is scored with) and extractor; what made it is recorded inside (:func:`feature_recipe`)
    and checked before it is used."""
    parts = [kind, str(clip.resolve()), str(audio_from.resolve()) if audio_from else ""]
    digest = hashlib.sha1("|".join(parts).encode()).hexdigest()[:16]
    return out / "cache" / kind / f"{clip.stem}-{digest}.npz"


def feature_recipe(
    config: EvalConfig, kind: str, clip: Path, audio_from: Path | None, weights: Path | None
) -> dict[str, str]:
    """Everything the cached features of ``clip`` by extractor ``kind`` depend on: the
    clip's file(s) (path, size, mtime), the extractor and its weights file (path, size,
    mtime), its input size and preprocessing, ``max_frames_per_clip`` and, for LSE, the
    audio file and how it is decoded (:data:`LSE_AUDIO`), ``lse_vshift``, ``lse_min_frames``,
    ``lse_codecs``, ``lse_ffmpeg`` and the frame rate of a frame folder.
    ``device`` and ``batch_size`` are left out: they change features only by rounding."""
    recipe = {
        "version": str(CACHE_VERSION),
        "extractor": kind,
        "clip": _identity(clip),
        "weights": _identity(weights),
        "input": extractor_input(config, kind),  # framing settings too
        "max_frames_per_clip": str(config.max_frames_per_clip),
    }
    if kind == "arcface":
        recipe["arcface_backbone"] = config.arcface_backbone
    if kind == "syncnet":
        recipe["audio"] = _identity(audio_from) if audio_from is not None else "the clip's own"
        recipe["lse_vshift"] = str(config.lse_vshift)
        recipe["lse_min_frames"] = str(config.lse_min_frames)
        recipe["lse_audio"] = LSE_AUDIO[config.lse_codecs]
        recipe["lse_codecs"] = str(config.lse_codecs)
        recipe["lse_ffmpeg"] = config.lse_ffmpeg
        if clip.is_dir():
            recipe["frame_folder_fps"] = repr(float(config.frame_folder_fps))
    return recipe


RECIPE_KEY = "recipe"
#: how LSE decodes its audio, by ``lse_codecs``; change it when that changes
LSE_AUDIO = {
    True: "run_pipeline's: -async 1, MP3 (libmp3lame, priming kept) in AVI, -ac 1 -ar 16000 s16",
    False: "ffmpeg -async 1 -ac 1 -ar 16000 s16 (libswresample), on the clip's clock",
}


def _load_npz(path: Path) -> dict[str, np.ndarray] | None:
    try:
        with np.load(path, allow_pickle=False) as data:
            return {k: data[k] for k in data.files}
    except (OSError, ValueError, EOFError):
        return None  # missing or corrupt: recompute


def _save_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    with atomic_write(path) as tmp, open(tmp, "wb") as handle:
        np.savez(handle, **arrays)


def extract_features(
    jobs: list[FeatureJob], extractors: Extractors, config: EvalConfig, summary: EvalSummary
) -> dict[tuple[str, Path], dict[str, np.ndarray]]:
    """Features per ``(kind, clip)``: from the cache when its entry was made by the same
    recipe (:func:`feature_recipe`), else computed and cached (a stale entry is redone and
    counted). A clip that cannot be read is listed in ``summary.failures``, never scored."""
    features: dict[tuple[str, Path], dict[str, np.ndarray]] = {}
    for job in tqdm(jobs, desc="features", unit="clip", leave=False):
        weights = extractors.weights(job.kind)
        recipe = feature_recipe(config, job.kind, job.clip, job.audio_from, weights)
        cache = cache_path(config.out, job.kind, job.clip, job.audio_from)
        data = _load_npz(cache)
        made_by = _recipe_of(data) if data is not None else None
        if data is not None and made_by == recipe:
            summary.cached += 1
        else:
            try:
                data = extractors.compute(job.kind, job.clip, job.audio_from)
            except DataError as err:
                where = "" if err.path == printable_path(job.clip) else f"{err.path}: "
                summary.fail(job.clip, f"{where}{err.problem}")
                continue
            _save_npz(cache, {**data, RECIPE_KEY: np.str_(json.dumps(recipe, sort_keys=True))})
            summary.computed += 1
            if made_by is not None:  # an entry made from another clip or with other settings
                summary.redone += 1
                for key in sorted(set(recipe) | set(made_by)):
                    if recipe.get(key) != made_by.get(key):
                        summary.redone_because[key] = summary.redone_because.get(key, 0) + 1
        features[(job.kind, job.clip)] = {k: v for k, v in data.items() if k != RECIPE_KEY}
    return features


def _recipe_of(data: dict[str, np.ndarray]) -> dict[str, str]:
    """The recipe stored in a cache entry; ``{}`` for an entry without one (older format)."""
    try:
        recipe = json.loads(str(data[RECIPE_KEY]))
    except (KeyError, ValueError):
        return {}
    return recipe if isinstance(recipe, dict) else {}
