"""What the evaluation networks see and compute per clip: :func:`square_resize` (frames to
a network's input), :class:`Extractors` (Inception, ArcFace, SyncNet, loaded once; features
or LSE of one clip) and :func:`feature_jobs` (which clip goes through which extractor, with
which audio)."""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from asccl.data.errors import DataError
from asccl.evaluation.config import EvalConfig
from asccl.evaluation.results import ResultClip, ResultsIndex, read_frames

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
