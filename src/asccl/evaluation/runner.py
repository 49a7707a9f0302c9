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
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from asccl.config import (
    ConfigError,
    is_device,
    is_int,
    is_number,
    names_field,
    path_field,
    require,
)
from asccl.data.errors import DataError, printable_path
from asccl.evaluation.results import ResultClip, ResultsIndex, read_frames, scan_results
from asccl.evaluation.tables import AVERAGE, plot_scores, qualitative_grid, write_tables
from asccl.io import atomic_write, write_text_atomic

METRIC_SWITCHES = ("distribution", "fid", "fad", "csim", "lse")


@dataclass(frozen=True)
class EvalConfig:
    """Settings of ``asccl evaluate`` (see ``configs/eval/demo.toml``); ``device`` has no
    "auto": the evaluation runs where it is told."""

    results: Path = Path("runs/demo/results")  # results folder (layout: evaluation/results.py)
    out: Path = Path("runs/demo/eval")  # tables/, plots/, grids/, scores.csv, report.txt, cache/
    distribution_metric: Literal["fid", "fad"] = "fid"  # GANmut table: FID; DSM table: FAD
    # switched-on metrics: "distribution" (or its name, "fid"/"fad"), "csim", "lse"
    metrics: tuple[str, ...] = ("distribution", "csim", "lse")
    inception_weights: Path | None = None  # pt_inception-2015-12-05-6726825d.pth (FID)
    arcface_weights: Path | None = None  # insightface backbone.pth (FAD, CSIM)
    arcface_backbone: str = "iresnet50"
    syncnet_weights: Path | None = None  # syncnet_v2.model (LSE)
    max_frames_per_clip: int = 0  # first N frames of each clip; 0 = all
    lse_min_frames: int = 0  # syncnet_python drops tracks under 100 frames; MEAD clips are short
    lse_vshift: int = 15
    frame_folder_fps: float = 25.0  # frame rate assumed for frame-folder results
    batch_size: int = 32
    device: str = "cpu"
    grid_clips: int = 3  # clips per qualitative grid; 0 = no grids
    methods: tuple[str, ...] = ()  # methods to evaluate, in table order; () = all, by name

    def __post_init__(self) -> None:
        """One :class:`~asccl.config.ConfigError` per nonsense value, naming its key."""
        names_field(self, "metrics", problem=f"must name switches of {list(METRIC_SWITCHES)}")
        names_field(self, "methods", problem='must be a list of method folder names, e.g. '
                    '["baseline", "asccl"]')  # fmt: skip
        for name in ("results", "out"):
            path_field(self, name)
        for name in ("inception_weights", "arcface_weights", "syncnet_weights"):
            path_field(self, name, optional=True)
        require(self.distribution_metric in ("fid", "fad"), self, "distribution_metric",
                'must be "fid" or "fad"')  # fmt: skip
        require(len(self.metrics) > 0, self, "metrics", f"must name at least one of "
                f"{list(METRIC_SWITCHES)}")  # fmt: skip
        unknown = [m for m in self.metrics if m not in METRIC_SWITCHES]
        if unknown:
            raise ConfigError(f"metrics: unknown {unknown}; valid: {list(METRIC_SWITCHES)}")
        other = {"fid": "fad", "fad": "fid"}[self.distribution_metric]
        if other in self.metrics:
            raise ConfigError(
                f"metrics lists {other!r} but distribution_metric is "
                f"{self.distribution_metric!r}; set distribution_metric = {other!r}"
            )
        from asccl.metric.iresnet import IRESNET_LAYERS

        require(self.arcface_backbone in IRESNET_LAYERS, self, "arcface_backbone",
                f"must be one of {list(IRESNET_LAYERS)}")  # fmt: skip
        for name, low in (("max_frames_per_clip", 0), ("lse_min_frames", 0), ("lse_vshift", 1),
                          ("batch_size", 1), ("grid_clips", 0)):  # fmt: skip
            require(is_int(getattr(self, name), low), self, name, f"must be an integer >= {low}")
        require(is_number(self.frame_folder_fps) and 0 < self.frame_folder_fps <= 1000, self,
                "frame_folder_fps", "must be a frame rate > 0 and <= 1000")  # fmt: skip
        require(is_device(self.device), self, "device",
                'must be "cpu", "mps", "cuda" or "cuda:N"')  # fmt: skip
        require(len(set(self.methods)) == len(self.methods), self, "methods",
                "must not repeat a method")  # fmt: skip

    @property
    def use_distribution(self) -> bool:
        return bool({"distribution", self.distribution_metric} & set(self.metrics))

    @property
    def table_metrics(self) -> list[str]:
        """Table columns per method, in the paper's order (FID/FAD, LSE-D, CSIM, LSE-C)."""
        names = [self.distribution_metric] if self.use_distribution else []
        names += ["lse_d"] if "lse" in self.metrics else []
        names += ["csim"] if "csim" in self.metrics else []
        names += ["lse_c"] if "lse" in self.metrics else []
        return names


@dataclass
class EvalSummary:
    """What a run did: feature counts, layout problems, unreadable or dropped clips."""

    computed: int = 0
    cached: int = 0
    redone: int = 0  #: of ``computed``: cache entries made by other settings or another clip
    redone_because: dict[str, int] = field(default_factory=dict)  #: recipe key -> entries
    problems: list[str] = field(default_factory=list)
    failures: dict[str, str] = field(default_factory=dict)  # path -> reason

    def fail(self, path: Path, reason: str) -> None:
        """List ``path`` as not (fully) scored, with ``reason`` (reasons accumulate)."""
        key, before = str(path), self.failures.get(str(path))
        if before is None:
            self.failures[key] = reason
        elif reason not in before.split("; "):
            self.failures[key] = f"{before}; {reason}"

    def report(self) -> str:
        redone = ""
        if self.redone:
            why = ", ".join(f"{k} ({n})" for k, n in sorted(self.redone_because.items()))
            redone = f" ({self.redone} redone: cached with other settings or clip: {why})"
        lines = [
            f"features computed: {self.computed}{redone}, reused from cache: {self.cached}",
            f"layout problems: {len(self.problems)}",
            *(f"  {p}" for p in self.problems),
            f"clips skipped (unreadable or unscored): {len(self.failures)}",
            *(f"  {p}: {r}" for p, r in sorted(self.failures.items())),
        ]
        return "\n".join(lines) + "\n"


# ------------------------------------------------------------------------- frame transforms


def square_resize(frames: np.ndarray, size: int) -> torch.Tensor:
    """``(N, H, W, 3)`` uint8 -> ``(N, 3, size, size)`` float in 0..255: centre square crop,
    bilinear resize (antialiased when shrinking).

    Not :func:`~asccl.metric.preprocess.to_metric_input`: this feeds the evaluation networks
    (Inception in [0, 1], ArcFace in [-1, 1], SyncNet uint8), not the metric. It crops
    frames of any aspect, stays in 0..255 for those three ranges, and upsamples without
    antialiasing: changing it would change every FID/CSIM/LSE score (``EXTRACTOR_INPUT``
    names it in the cache's recipe)."""
    x = torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).float()
    h, w = x.shape[-2:]
    side = min(h, w)
    top, left = (h - side) // 2, (w - side) // 2
    x = x[..., top : top + side, left : left + side]
    if side != size:
        x = F.interpolate(
            x, size=(size, size), mode="bilinear", align_corners=False, antialias=side > size
        )
    return x.clamp(0, 255)


# ------------------------------------------------------------------------------ extraction


class Extractors:
    """Models built on first use (``run_evaluation`` loads them before any other work, so a
    bad weights file is refused at once); per-clip features."""

    def __init__(self, config: EvalConfig) -> None:
        self.config = config
        self._models: dict[str, torch.nn.Module] = {}

    def model(self, kind: str) -> torch.nn.Module:
        if kind not in self._models:
            c = self.config
            if kind == "inception":
                from asccl.evaluation.inception import load_inception

                net = load_inception(c.inception_weights)
            elif kind == "arcface":
                from asccl.evaluation.identity import load_arcface

                net = load_arcface(c.arcface_weights, c.arcface_backbone)
            elif kind == "syncnet":
                from asccl.evaluation.syncnet import load_syncnet

                net = load_syncnet(c.syncnet_weights)
            else:
                raise ValueError(f"unknown extractor {kind!r}")
            self._models[kind] = net.to(c.device).eval()
        return self._models[kind]

    def weights(self, kind: str) -> Path | None:
        """The weights file of ``kind`` as the loaders find it (config, else environment)."""
        from asccl.evaluation.inception import INCEPTION_WEIGHTS
        from asccl.evaluation.syncnet import SYNCNET_WEIGHTS
        from asccl.weights import ARCFACE_WEIGHTS

        c = self.config
        path, spec = {
            "inception": (c.inception_weights, INCEPTION_WEIGHTS),
            "arcface": (c.arcface_weights, ARCFACE_WEIGHTS),
            "syncnet": (c.syncnet_weights, SYNCNET_WEIGHTS),
        }[kind]
        given = path if path is not None else os.environ.get(spec.env_var)
        return Path(given) if given else None

    @torch.no_grad()
    def _batched(self, kind: str, x: torch.Tensor) -> np.ndarray:
        net, bs = self.model(kind), self.config.batch_size
        outs = [
            net(x[i : i + bs].to(self.config.device)).float().cpu() for i in range(0, len(x), bs)
        ]
        return torch.cat(outs).numpy()

    def compute(self, kind: str, clip: Path, audio_from: Path | None) -> dict[str, np.ndarray]:
        """Features of one clip; raises :class:`DataError` for an unreadable clip."""
        frames = read_frames(clip, self.config.max_frames_per_clip)
        if kind == "inception":
            x = square_resize(frames, 299) / 255.0
            return {"features": self._batched(kind, x)}
        if kind == "arcface":
            x = square_resize(frames, 112) / 127.5 - 1.0
            return {"features": self._batched(kind, x)}
        return self._lip_sync(clip, frames, audio_from)

    def _lip_sync(self, clip: Path, frames: np.ndarray, audio_from: Path | None) -> dict:
        from asccl.data.audio import load_audio
        from asccl.data.video import probe_video
        from asccl.evaluation.lip_sync import evaluate_clip

        c = self.config
        fps = c.frame_folder_fps if clip.is_dir() else probe_video(clip).fps
        audio_path = audio_from if audio_from is not None else clip
        if audio_path.is_dir():
            raise DataError(clip, "frame folder without a matching source: no audio for LSE")
        audio = load_audio(audio_path)
        faces = square_resize(frames, 224).round().to(torch.uint8).permute(0, 2, 3, 1)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # a dropped clip is reported through `dropped`
            r = evaluate_clip(
                self.model("syncnet"),
                faces,
                audio,
                fps=fps,
                rgb=True,
                vshift=c.lse_vshift,
                min_frames=c.lse_min_frames,
                batch_size=c.batch_size,
            )
        return {
            "lse_d": np.float64(r.lse_d),
            "lse_c": np.float64(r.lse_c),
            "offset": np.int64(r.offset),
            "windows": np.int64(r.num_windows),
            "dropped": np.str_(r.dropped or ""),
            "audio": np.str_(str(audio_path)),
        }


#: bump when a change of this module changes what a cached entry holds or means
CACHE_VERSION = 2
#: each extractor's input: how a clip's frames become the network's input
EXTRACTOR_INPUT = {
    "inception": "centre square, bilinear resize (antialiased when shrinking) to 299, RGB / 255",
    "arcface": "centre square, bilinear resize (antialiased when shrinking) to 112, "
    "RGB / 127.5 - 1",
    "syncnet": "centre square, bilinear resize (antialiased when shrinking) to 224, uint8 RGB, "
    "25 fps resampling",
}


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
    audio file, ``lse_vshift``, ``lse_min_frames`` and the frame rate of a frame folder.
    ``device`` and ``batch_size`` are left out: they change features only by rounding."""
    recipe = {
        "version": str(CACHE_VERSION),
        "extractor": kind,
        "clip": _identity(clip),
        "weights": _identity(weights),
        "input": EXTRACTOR_INPUT[kind],
        "max_frames_per_clip": str(config.max_frames_per_clip),
    }
    if kind == "arcface":
        recipe["arcface_backbone"] = config.arcface_backbone
    if kind == "syncnet":
        recipe["audio"] = _identity(audio_from) if audio_from is not None else "the clip's own"
        recipe["lse_vshift"] = str(config.lse_vshift)
        recipe["lse_min_frames"] = str(config.lse_min_frames)
        if clip.is_dir():
            recipe["frame_folder_fps"] = repr(float(config.frame_folder_fps))
    return recipe


RECIPE_KEY = "recipe"


def _load_npz(path: Path) -> dict[str, np.ndarray] | None:
    try:
        with np.load(path, allow_pickle=False) as data:
            return {k: data[k] for k in data.files}
    except (OSError, ValueError, EOFError):
        return None  # missing or corrupt: recompute


def _save_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    with atomic_write(path) as tmp, open(tmp, "wb") as handle:
        np.savez(handle, **arrays)


# ---------------------------------------------------------------------------------- the run


@dataclass(frozen=True)
class _Job:
    kind: str
    clip: Path
    audio_from: Path | None = None


def _jobs(index: ResultsIndex, config: EvalConfig) -> list[_Job]:
    dist = {"fid": "inception", "fad": "arcface"}[config.distribution_metric]
    jobs: dict[tuple, _Job] = {}

    def add(kind: str, clip: Path, audio_from: Path | None = None) -> None:
        jobs.setdefault((kind, clip), _Job(kind, clip, audio_from))

    for clip in index.clips:
        if config.use_distribution:
            add(dist, clip.path)
            for source in index.sources.get(clip.emotion, {}).values():
                add(dist, source)
        if "csim" in config.metrics and clip.source is not None:
            add("arcface", clip.path)
            add("arcface", clip.source)
        if "lse" in config.metrics:
            add("syncnet", clip.path, _audio_source(clip))
    return list(jobs.values())


def _audio_source(clip: ResultClip) -> Path | None:
    """The result's own audio, else its source's (frame folders and silent videos)."""
    if clip.path.is_dir() or not _has_audio(clip.path):
        return clip.source
    return None


def _has_audio(path: Path) -> bool:
    import av

    try:
        with av.open(str(path)) as container:
            return bool(container.streams.audio)
    except (av.FFmpegError, OSError):
        return False  # unreadable: the video read reports it


def _extract_all(
    jobs: list[_Job], extractors: Extractors, config: EvalConfig, summary: EvalSummary
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


def _frechet(real: list[np.ndarray], fake: list[np.ndarray]) -> float:
    from asccl.evaluation.frechet import FrechetStats, frechet_distance

    if not real or not fake:
        return float("nan")
    real_stats = FrechetStats.of(torch.from_numpy(np.concatenate(real)))
    fake_stats = FrechetStats.of(torch.from_numpy(np.concatenate(fake)))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # few samples: noted in the report
        mu1, s1 = real_stats.mean_cov("source frames")
        mu2, s2 = fake_stats.mean_cov("result frames")
        return float(frechet_distance(mu1, s1, mu2, s2))


def _emotion_scores(
    clips: list[ResultClip],
    index: ResultsIndex,
    features: dict,
    config: EvalConfig,
    summary: EvalSummary,
) -> dict[str, float]:
    scores: dict[str, float] = {}
    if config.use_distribution:
        kind = {"fid": "inception", "fad": "arcface"}[config.distribution_metric]
        sources = index.sources.get(clips[0].emotion, {}).values()
        real = [features[(kind, p)]["features"] for p in sources if (kind, p) in features]
        fake = [features[(kind, c.path)]["features"] for c in clips if (kind, c.path) in features]
        n_real, n_fake = sum(map(len, real)), sum(map(len, fake))
        where = f"{clips[0].method}/{clips[0].setting}/{clips[0].emotion}"
        dim = real[0].shape[1] if real else 0
        try:
            scores[config.distribution_metric] = _frechet(real, fake)
            if min(n_real, n_fake) <= dim:
                summary.problems.append(
                    f"{where}: {config.distribution_metric} from {n_real} source and {n_fake} "
                    f"result frames for {dim} dimensions: singular covariance, unreliable"
                )
        except ValueError as err:
            summary.problems.append(
                f"{where}: no {config.distribution_metric} ({err}); "
                f"{n_real} source and {n_fake} result frames: a Frechet distance needs more "
                "frames than feature dimensions (raise max_frames_per_clip or add clips)"
            )
            scores[config.distribution_metric] = float("nan")
    if "csim" in config.metrics:
        from asccl.evaluation.identity import cosine_similarities

        total, count = 0.0, 0
        for c in clips:
            a = features.get(("arcface", c.source))
            b = features.get(("arcface", c.path))
            if a is None or b is None:
                if b is not None and c.source is not None:
                    summary.fail(c.path, f"CSIM not scored: its source {c.source} is unreadable")
                continue
            n = min(len(a["features"]), len(b["features"]))
            if len(b["features"]) > n:  # longer than its source: not frame-aligned with it
                summary.problems.append(
                    f"{c.path}: {len(b['features'])} frames, its source {len(a['features'])}; "
                    f"CSIM compares the first {n} (a result should be as long as its source)"
                )
            sims = cosine_similarities(
                torch.from_numpy(a["features"][:n]), torch.from_numpy(b["features"][:n])
            )
            total, count = total + float(sims.sum()), count + n
        scores["csim"] = total / count if count else float("nan")
    if "lse" in config.metrics:
        d, conf = [], []
        for c in clips:
            r = features.get(("syncnet", c.path))
            if r is None:
                continue
            if str(r["dropped"]):
                summary.fail(c.path, f"LSE not scored: {r['dropped']}")
                continue
            d.append(float(r["lse_d"]))
            conf.append(float(r["lse_c"]))
        scores["lse_d"] = float(np.mean(d)) if d else float("nan")
        scores["lse_c"] = float(np.mean(conf)) if conf else float("nan")
    return scores


def _average(per_emotion: dict[str, dict[str, float]]) -> dict[str, float]:
    names = {k for row in per_emotion.values() for k in row}
    average = {}
    for name in names:
        values = [
            row[name] for row in per_emotion.values() if math.isfinite(row.get(name, math.nan))
        ]
        average[name] = float(np.mean(values)) if values else float("nan")
    return average


def _grid(
    index: ResultsIndex, methods: list[str], setting: str, config: EvalConfig, path: Path
) -> Path | None:
    methods = [m for m in methods if index.select(method=m, setting=setting)]
    names = sorted({(c.emotion, c.name) for c in index.select(setting=setting)})
    # one clip per emotion first (the paper's figures show every emotion), then the next
    rank: dict[tuple[str, str], int] = {}
    per_emotion: dict[str, int] = {}
    for emotion, name in names:
        rank[emotion, name] = per_emotion.get(emotion, 0)
        per_emotion[emotion] = rank[emotion, name] + 1
    names.sort(key=lambda key: (rank[key], key))
    rows, labels = [], []

    def frame(p: Path | None):
        if p is None:
            return None
        try:
            frames = read_frames(p, max(1, min(config.max_frames_per_clip or 8, 8)))
        except DataError:
            return None
        return frames[len(frames) // 2]

    for emotion, name in names[: config.grid_clips]:
        by_method = {
            c.method: c for c in index.select(setting=setting, emotion=emotion) if c.name == name
        }
        any_clip = next(iter(by_method.values()))
        row = [frame(any_clip.reference), frame(any_clip.source)]
        row += [frame(by_method[m].path) if m in by_method else None for m in methods]
        rows.append(row)
        labels.append(f"{emotion}/{name}")
    if not rows:
        return None
    columns = ["Reference", "Source", *methods]
    if all(row[0] is None for row in rows):  # no reference input (e.g. GANmut): no column
        rows, columns = [row[1:] for row in rows], columns[1:]
    return qualitative_grid(rows, columns, path, labels)


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
    features = _extract_all(_jobs(index, config), extractors, config, summary)

    metrics = config.table_metrics
    long_rows = []
    for setting in index.settings:
        scores: dict[str, dict[str, dict[str, float]]] = {}
        for method in methods:
            per_emotion = {}
            for emotion in index.emotions:
                clips = index.select(method, setting, emotion)
                if clips:
                    per_emotion[emotion] = _emotion_scores(clips, index, features, config, summary)
            if per_emotion:
                scores[method] = {**per_emotion, AVERAGE: _average(per_emotion)}
        for method, rows in scores.items():
            for row, values in rows.items():
                long_rows += [(setting, method, row, k, values[k]) for k in metrics if k in values]
        stem = out / "tables" / setting
        md, csv_path, tex = write_tables(scores, metrics, stem, caption=f"Setting: {setting}")
        outputs |= {f"table_{setting}_md": md, f"table_{setting}_csv": csv_path}
        outputs[f"table_{setting}_tex"] = tex
        outputs[f"plot_{setting}"] = plot_scores(
            scores, metrics, out / "plots" / f"{setting}.png", title=setting
        )
        if config.grid_clips > 0:
            grid = _grid(index, methods, setting, config, out / "grids" / f"{setting}.png")
            if grid is not None:
                outputs[f"grid_{setting}"] = grid

    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(["setting", "method", "emotion", "metric", "value"])
    writer.writerows(long_rows)
    outputs["scores"] = write_text_atomic(out / "scores.csv", buffer.getvalue())
    summary_json = {
        "computed": summary.computed,
        "redone": summary.redone,
        "cached": summary.cached,
        "problems": summary.problems,
        "failures": summary.failures,
        "methods": index.methods,
        "settings": index.settings,
        "emotions": index.emotions,
    }
    outputs["summary"] = write_text_atomic(
        out / "summary.json", json.dumps(summary_json, indent=2) + "\n"
    )
    outputs["report"] = write_text_atomic(out / "report.txt", summary.report())
    save_config(config, outputs["config"])
    _remove_stale_outputs(out, outputs)
    return outputs


def _remove_stale_outputs(out: Path, outputs: dict[str, Path]) -> None:
    """Remove the tables, plots and grids an earlier run wrote that this one did not (a
    setting or method no longer evaluated), so ``out`` holds only this run's results."""
    kept = {Path(p).resolve() for p in outputs.values()}
    for folder in ("tables", "plots", "grids"):
        for path in sorted((out / folder).glob("*")) if (out / folder).is_dir() else []:
            stale = path.resolve() not in kept
            if stale and path.is_file() and path.suffix in (".md", ".csv", ".tex", ".png"):
                path.unlink()
