"""What the evaluation networks compute per clip: :class:`Extractors` (Inception, ArcFace,
SyncNet, loaded once; features or LSE of one clip's framed frames, see
:mod:`~asccl.evaluation.framing`), :func:`extractor_input` (the cache recipe's words for an
input), :func:`paired_features` (CSIM's frame pairs) and :func:`feature_jobs` (which clip
goes through which extractor, with which audio). ``square_resize`` is re-exported."""

from __future__ import annotations

import json
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from asccl.data.config import TRACKER_RULE
from asccl.data.errors import DataError
from asccl.data.landmarks import FAN_WEIGHTS_ENV
from asccl.evaluation.config import EvalConfig
from asccl.evaluation.framing import (
    FID_WORDS,
    SYNCNET_FPS,
    BoxTracker,
    FaceTrack,
    arcface_input,
    inception_input,
    make_tracker,
    square_resize,
    track_faces,
)
from asccl.evaluation.results import ResultClip, ResultsIndex, read_frames

__all__ = [
    "Extractors",
    "FeatureJob",
    "extractor_input",
    "feature_jobs",
    "frame_count",
    "frame_rate",
    "paired_features",
    "rates_differ",
    "square_resize",
]

# ------------------------------------------------------------------------------ extraction

#: bump when what a framing cache entry holds changes
TRACK_VERSION = 1


def extractor_input(config: EvalConfig, kind: str) -> str:
    """How a clip's frames become extractor ``kind``'s input, with every framing setting it
    depends on: the cache recipe's ``"input"`` (another framing recomputes the features)."""
    if kind == "inception":
        return f"fid_preprocess={config.fid_preprocess}: {FID_WORDS[config.fid_preprocess]}"
    framing = config.framing_of(kind)
    words = {
        "arcface": "112x112 RGB / 127.5 - 1",
        "syncnet": "224x224 uint8 RGB at 25 fps (run_pipeline's frame pick: ffmpeg -r 25 into "
        "AVI, then image2; a frame folder's rate: its source video's, else frame_folder_fps)",
    }[kind]
    text = f"framing={framing}: {words}"
    if kind == "syncnet" and framing == "track":
        text += f", crop_scale={config.crop_scale!r}"
    if framing == "track":
        text += f"; {track_settings(config)}"
    return text


def track_settings(config: EvalConfig) -> str:
    """The settings a clip's face track depends on (its cache recipe, also in features')."""
    fan = config.fan_weights or os.environ.get(FAN_WEIGHTS_ENV, "")
    backend = config.landmark_backend + (f" ({fan})" if config.landmark_backend == "fan" else "")
    rule = ", ".join(f"{k}={v}" for k, v in TRACKER_RULE.items())  # the tracker's own rule
    return (
        f"landmarks={backend}, detect_every={config.detect_every}, "
        f"landmark_every={config.landmark_every}, {rule}"
    )


class Extractors:
    """Models built on first use (``run_evaluation`` loads them before any other work, so a
    bad weights file is refused at once); per-clip features of the framed frames
    (:mod:`~asccl.evaluation.framing`); each clip's face track computed once and cached
    under ``<out>/cache/framing/``."""

    def __init__(self, config: EvalConfig) -> None:
        self.config = config
        self._models: dict[str, torch.nn.Module] = {}
        self._tracker: BoxTracker | None = None
        self._tracks: dict[Path, FaceTrack] = {}
        self.track_stats = {"computed": 0, "cached": 0}

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

    def tracker(self) -> BoxTracker:
        """The landmark tracker (built once; a missing backend or weights: ConfigError)."""
        if self._tracker is None:
            from asccl.config import ConfigError
            from asccl.data.landmarks import make_landmarker

            c = self.config
            kwargs: dict = {}
            if c.landmark_backend == "fan":
                kwargs = {"weights_dir": c.fan_weights, "device": c.device}
            try:
                landmarker = make_landmarker(c.landmark_backend, **kwargs)
            except (ImportError, FileNotFoundError, ValueError) as err:
                raise ConfigError(f"landmark_backend: {err}") from None
            self._tracker = make_tracker(landmarker, c.detect_every)
        return self._tracker

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
        if not outs:
            return np.zeros((0, getattr(net, "num_features", 0)), np.float32)
        return torch.cat(outs).numpy()

    def face_track(self, clip: Path, frames: np.ndarray) -> FaceTrack:
        """``clip``'s face track: from memory, the framing cache (same recipe), or tracked."""
        if clip in self._tracks:
            return self._tracks[clip]
        from asccl.evaluation import cache

        c = self.config
        recipe = {
            "version": str(TRACK_VERSION),
            "clip": cache._identity(clip),
            "track": track_settings(c),
            "max_frames_per_clip": str(c.max_frames_per_clip),
        }
        path = cache.cache_path(c.out, "framing", clip)
        data = cache._load_npz(path)
        if (
            data is not None
            and cache._recipe_of(data) == recipe
            and len(data["boxes"]) == len(frames)
        ):
            track = FaceTrack(data["landmarks"], data["boxes"])
            self.track_stats["cached"] += 1
        else:
            track = track_faces(frames, self.tracker(), c.landmark_every)
            recipe_text = np.str_(json.dumps(recipe, sort_keys=True))
            arrays = {"landmarks": track.landmarks, "boxes": track.boxes}
            cache._save_npz(path, {**arrays, cache.RECIPE_KEY: recipe_text})
            self.track_stats["computed"] += 1
        self._tracks[clip] = track
        return track

    def compute(self, kind: str, clip: Path, audio_from: Path | None) -> dict[str, np.ndarray]:
        """Features of one clip; raises :class:`DataError` for an unreadable clip.

        ArcFace: ``features`` ``(M, D)`` of the frames ``frame_index`` ``(M,)`` (those with
        a face under ``"track"``), ``no_face`` (frame numbers), ``frames`` (N read).
        Inception: ``features`` ``(N, 2048)`` of every frame (``frame_index``: all).
        SyncNet: LSE-D/LSE-C and friends, ``no_face`` (25 fps frame numbers)."""
        frames = read_frames(clip, self.config.max_frames_per_clip)
        if kind == "inception":
            x = inception_input(frames, self.config.fid_preprocess)
            return {
                "features": self._batched(kind, x),
                "frame_index": np.arange(len(frames)),
                "no_face": np.zeros(0, np.int64),
                "frames": np.int64(len(frames)),
            }
        framing = self.config.framing_of(kind)
        track = self.face_track(clip, frames) if framing == "track" else None
        if kind == "arcface":
            framed = arcface_input(frames, framing, track)
            x = torch.from_numpy(framed.frames).permute(0, 3, 1, 2).float() / 127.5 - 1.0
            return {
                "features": self._batched(kind, x),
                "frame_index": framed.index,
                "no_face": np.asarray(framed.no_face, np.int64),
                "frames": np.int64(len(frames)),
            }
        return self._lip_sync(clip, frames, audio_from, framing, track)

    def _lip_sync(
        self,
        clip: Path,
        frames: np.ndarray,
        audio_from: Path | None,
        framing: str,
        track: FaceTrack | None,
    ) -> dict:
        from asccl.evaluation.lip_sync import evaluate_clip
        from asccl.evaluation.syncnet_pipeline import clip_frame_times, run_pipeline_input

        c = self.config
        fps = frame_rate(clip, audio_from, c)
        audio_path = audio_from if audio_from is not None else clip
        if audio_path.is_dir():
            raise DataError(clip, "frame folder without a matching source: no audio for LSE")
        times = clip_frame_times(clip, len(frames), fps)
        # syncnet_python's run_pipeline: 25 fps images, codecs, the scored run's audio
        fed = run_pipeline_input(frames, times, fps, clip, audio_path, framing, track,
                                 c.crop_scale, codecs=c.lse_codecs,
                                 ffmpeg=c.lse_ffmpeg)  # fmt: skip
        framed = fed.framed
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # a dropped clip is reported through `dropped`
            r = evaluate_clip(
                self.model("syncnet"),
                fed.crops,
                fed.audio,
                fps=SYNCNET_FPS,
                rgb=True,
                vshift=c.lse_vshift,
                min_frames=c.lse_min_frames,
                batch_size=c.batch_size,
            )
        dropped = r.dropped or ""
        if framed.no_face and not len(framed.index):
            dropped = "no face in any frame"
        return {
            "lse_d": np.float64(r.lse_d),
            "lse_c": np.float64(r.lse_c),
            "offset": np.int64(r.offset),
            "windows": np.int64(r.num_windows),
            "dropped": np.str_(dropped),
            "audio": np.str_(str(audio_path)),
            "frame_index": framed.index,
            "no_face": np.asarray(framed.no_face, np.int64),
            "frames": np.int64(len(fed.sources)),  # the 25 fps images
        }


def frame_rate(clip: Path, source: Path | None, config: EvalConfig) -> float:
    """Frames per second of a clip: a video's own (its header); a frame folder's is its
    source video's when it has one (a result keeps its source's timing), else
    ``config.frame_folder_fps`` (also when ``source`` is a sound file: audio only)."""
    from asccl.data.video import probe_video

    if not clip.is_dir():
        return probe_video(clip).fps
    if source is not None and source.is_file() and _has_stream(source, "video"):
        return probe_video(source).fps
    return float(config.frame_folder_fps)


def frame_count(clip: Path) -> int:
    """Frames in a clip: a video's header count, a frame folder's image files."""
    from asccl.data.video import probe_video
    from asccl.evaluation.results import frame_files

    return len(frame_files(clip)) if clip.is_dir() else probe_video(clip).num_frames


def rates_differ(a: float, b: float, frames: int) -> bool:
    """Whether two clips at ``a`` and ``b`` fps drift apart by more than half a frame over
    ``frames`` frames compared by index: frame ``i`` is at ``i / a`` s in one, ``i / b`` s in
    the other, ``i * |a - b| / min(a, b)`` frames apart. 30000/1001 vs 30 fps (0.1%) stays
    under half a frame up to 499 frames (16.6 s; MEAD's and RAVDESS's sentences last 1.5-5
    s): equal; 15 vs 30 fps is a frame apart by frame 1: different."""
    return frames * abs(a - b) / min(a, b) > 0.5


def paired_features(source: dict, result: dict) -> tuple[np.ndarray, np.ndarray]:
    """ArcFace features of the frames both clips have a face in, paired by frame number:
    ``(K, D), (K, D)`` (CSIM compares source frame ``i`` with result frame ``i``)."""
    a_index = source.get("frame_index", np.arange(len(source["features"])))
    b_index = result.get("frame_index", np.arange(len(result["features"])))
    _, ia, ib = np.intersect1d(a_index, b_index, assume_unique=True, return_indices=True)
    return source["features"][ia], result["features"][ib]


# -------------------------------------------------------------------------------- the jobs


@dataclass(frozen=True)
class FeatureJob:
    kind: str
    clip: Path
    audio_from: Path | None = None


def feature_jobs(index: ResultsIndex, config: EvalConfig) -> list[FeatureJob]:
    """One job per (extractor, clip) the switched-on metrics need, each once."""
    dist = {"fid": "inception", "fad": "arcface"}[config.distribution_metric]
    jobs: dict[tuple, FeatureJob] = {}

    def add(kind: str, clip: Path, audio_from: Path | None = None) -> None:
        jobs.setdefault((kind, clip), FeatureJob(kind, clip, audio_from))

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
    if clip.path.is_dir() or not _has_stream(clip.path, "audio"):
        return clip.source
    return None


def _has_stream(path: Path, kind: str) -> bool:
    """Whether the media file ``path`` has a ``kind`` ("audio", "video") stream."""
    import av

    try:
        with av.open(str(path)) as container:
            return bool(getattr(container.streams, kind))
    except (av.FFmpegError, OSError):
        return False  # unreadable: the read that needs it reports it
