"""Scores from cached features: per method x setting x emotion (:func:`emotion_scores`:
FID/FAD by :func:`~asccl.evaluation.frechet.frechet_distance`, CSIM, LSE-D/LSE-C) and the
``average`` row (:func:`average_scores`)."""

from __future__ import annotations

import math
import warnings

import numpy as np
import torch

from asccl.evaluation.config import EvalConfig, EvalSummary
from asccl.evaluation.results import ResultClip, ResultsIndex
from asccl.evaluation.tables import AVERAGE


def _frechet(real: list[np.ndarray], fake: list[np.ndarray]) -> float:
    """FID/FAD between pooled ``(N, D)`` source and result features; NaN if either is empty."""
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


def emotion_scores(
    clips: list[ResultClip],
    index: ResultsIndex,
    features: dict,
    config: EvalConfig,
    summary: EvalSummary,
) -> dict[str, float]:
    """``{metric: value}`` of one method/setting/emotion (``clips``); what is not scored is
    recorded in ``summary``."""
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


def average_scores(per_emotion: dict[str, dict[str, float]]) -> dict[str, float]:
    """The ``average`` row: per metric, the mean over the emotions with a finite value."""
    names = {k for row in per_emotion.values() for k in row}
    average = {}
    for name in names:
        values = [
            row[name] for row in per_emotion.values() if math.isfinite(row.get(name, math.nan))
        ]
        average[name] = float(np.mean(values)) if values else float("nan")
    return average


def setting_scores(
    index: ResultsIndex,
    setting: str,
    methods: list[str],
    features: dict,
    config: EvalConfig,
    summary: EvalSummary,
) -> dict[str, dict[str, dict[str, float]]]:
    """``{method: {emotion or "average": {metric: value}}}`` of one setting; a method
    without clips in it is left out."""
    scores: dict[str, dict[str, dict[str, float]]] = {}
    for method in methods:
        per_emotion = {}
        for emotion in index.emotions:
            clips = index.select(method, setting, emotion)
            if clips:
                per_emotion[emotion] = emotion_scores(clips, index, features, config, summary)
        if per_emotion:
            scores[method] = {**per_emotion, AVERAGE: average_scores(per_emotion)}
    return scores
