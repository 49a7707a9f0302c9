"""Scores from cached features, with the project's own torchmetrics metrics: per method x
setting x emotion FID/FAD (:class:`~asccl.evaluation.frechet.FrechetDistance`), CSIM
(:class:`~asccl.evaluation.identity.CSIM`) and LSE-D/LSE-C
(:class:`~asccl.evaluation.lip_sync.LipSync`), and the ``average`` row.

Each process updates the metrics with the clips it holds (:func:`scored_units` says which
it can score); ``compute()`` sums the metric states over the processes (torchmetrics' sync
under ``torch.distributed``), so one process and ``torchrun`` give the same numbers. The
real set's Frechet statistics are accumulated once per emotion (and setting, for
references and ground truth) and shared by every method.

**Honest comparisons.** A row is computed, for every method, over the same clips: the ones
every method that has the emotion scored (:func:`common_clips`); a method that lost clips
makes the others drop them too, and the table's footnote says so. The ``average`` row is
the mean over the emotions where every method has a value over a common set; the
emotions left out are named in a footnote. Only such rows are *comparable*: a table marks
a winner in those alone (:mod:`asccl.evaluation.tables`).

The ground-truth rows (landmark errors over the frames where every method has a face, PSNR
with frames at the 100 dB cap left without a winner) are
:mod:`asccl.evaluation.ground_truth_scoring`'s.
"""

from __future__ import annotations

import copy
import math
import warnings
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from asccl.evaluation.config import EvalConfig, EvalSummary
from asccl.evaluation.ground_truth_scoring import (
    FaceFrames,
    average_face_note,
    ground_truth_row,
    landmark_notes,
    psnr_caps,
)
from asccl.evaluation.results import ResultClip, ResultsIndex
from asccl.evaluation.tables import AVERAGE, METRICS

#: metric group -> the table metrics it gives
GROUP_METRICS = {"fid": ("fid",), "fad": ("fad",), "kid": ("kid",), "csim": ("csim",),
                 "lse": ("lse_d", "lse_c"),
                 "ground_truth": ("lme_mouth", "lme_face", "lmd_mouth", "lmd_face", "psnr",
                                  "ssim")}  # fmt: skip
#: distribution metric -> its extractor
DIST_KIND = {"fid": "inception", "fad": "arcface"}
#: metric groups against a real set -> their extractor
REAL_KIND = {**DIST_KIND, "kid": "inception"}
#: one scorable unit: (group, setting, method, emotion, clip name)
Unit = tuple[str, str, str, str, str]


@dataclass
class SettingScores:
    """One setting's table: ``scores[method][row][metric]`` (NaN: no value), ``notes``
    (``(method, row, metric) -> why``: a footnote), ``comparable`` (``(row, metric)``
    pairs whose values all exist and come from the same clips and may have a winner),
    ``unmarked`` (pairs comparable but left without a winner: PSNR rows with capped
    frames), ``capped`` (``(method, row) -> (frames at the PSNR cap, frames)``) and
    ``face_frames`` (``row ->`` :class:`FaceFrames`: the landmark errors' frame counts)."""

    scores: dict[str, dict[str, dict[str, float]]] = field(default_factory=dict)
    notes: dict[tuple[str, str, str], list[str]] = field(default_factory=dict)
    comparable: set[tuple[str, str]] = field(default_factory=set)
    unmarked: set[tuple[str, str]] = field(default_factory=set)
    capped: dict[tuple[str, str], tuple[int, int]] = field(default_factory=dict)
    face_frames: dict[str, FaceFrames] = field(default_factory=dict)

    def note(self, method: str, row: str, metric: str, text: str) -> None:
        """Add footnote ``text`` to a cell (a cell may have several)."""
        texts = self.notes.setdefault((method, row, metric), [])
        if text not in texts:
            texts.append(text)

    @property
    def any_average(self) -> bool:
        """Whether any metric has a comparable ``average``."""
        return any(row == AVERAGE for row, _ in self.comparable | self.unmarked)


def metric_groups(config: EvalConfig) -> list[str]:
    """The switched-on metric groups, in table order."""
    groups = [config.distribution_metric] if config.use_distribution else []
    return groups + [g for g in ("kid", "csim", "lse", "ground_truth") if g in config.metrics]


def scored_units(
    clips: Iterable[ResultClip], features: dict, config: EvalConfig, summary: EvalSummary
) -> set[Unit]:
    """The units this process holds the features of (every feature is held by one process);
    a result not scored for a reason of its own is listed in ``summary``."""
    from asccl.evaluation.features import paired_features

    units: set[Unit] = set()
    groups = metric_groups(config)
    for c in clips:
        key = (c.setting, c.method, c.emotion, c.name)
        for group in (g for g in groups if g in REAL_KIND):
            f = features.get((REAL_KIND[group], c.path))
            if f is not None and len(f["features"]):
                units.add((group, *key))
            elif f is not None:
                summary.fail(c.path, f"{group.upper()} not scored: no frame with a face")
        if "csim" in groups:
            a, b = features.get(("arcface", c.source)), features.get(("arcface", c.path))
            other_rate = ""
            if a is not None and b is not None:
                other_rate = _source_rate_mismatch(c, a, b, config)
            if other_rate:
                summary.fail(c.path, f"CSIM not scored: {other_rate}")
            elif a is not None and b is not None and len(paired_features(a, b)[0]):
                units.add(("csim", *key))
            elif a is not None and b is not None:
                summary.fail(c.path, "CSIM not scored: no frame with a face in both it and "
                             "its source")  # fmt: skip
            elif b is not None and c.source is not None:
                summary.fail(c.path, f"CSIM not scored: its source {c.source} is unreadable")
        if "lse" in groups:
            r = features.get(("syncnet", c.path))
            if r is not None and str(r["dropped"]):
                summary.fail(c.path, f"LSE not scored: {r['dropped']}")
            elif r is not None:
                units.add(("lse", *key))
                gap = _audio_gap(c, str(r["audio"]), config)
                if gap:
                    summary.problems.append(f"{c.path}: {gap}")
        if "ground_truth" in groups:
            from asccl.evaluation.ground_truth_features import face_frames

            g = features.get(("ground_truth", c.path))
            if g is not None and face_frames(g).any():
                units.add(("ground_truth", *key))
            elif g is not None:
                summary.fail(c.path, "ground-truth metrics not scored: no frame with a face "
                             "in both it and its ground truth")  # fmt: skip
    return units


def _source_rate_mismatch(c: ResultClip, a: dict, b: dict, config: EvalConfig) -> str:
    """``""`` when result ``c`` and its source have the same frame rate over the frames
    CSIM pairs (:func:`~asccl.evaluation.features.rates_differ`), else why not, naming
    both rates; ``a``, ``b``: the source's and the result's ArcFace entries."""
    from asccl.data.errors import DataError
    from asccl.evaluation.features import frame_rate, rates_differ

    assert c.source is not None
    try:
        rate, source_rate = frame_rate(c.path, c.source, config), frame_rate(c.source, None, config)
    except DataError as err:
        return f"frame rate unreadable ({err})"
    frames = min(int(a.get("frames", len(a["features"]))), int(b.get("frames", len(b["features"]))))
    if not rates_differ(rate, source_rate, frames):
        return ""
    return (f"{rate:g} fps, its source {c.source} {source_rate:g} fps: frames are paired by "
            "index, so both must have the same rate")  # fmt: skip


def _audio_gap(c: ResultClip, audio: str, config: EvalConfig) -> str:
    """``""`` when the frames LSE reads (count / rate, a frame folder at its source's rate)
    last as long as the audio it pairs them with, within the data stage's rule
    (:func:`asccl.data.clip_index.duration_tolerance`: 2 frames + 0.07 s), else the gap."""
    from asccl.data.clip_index import AUDIO_SLACK_S, duration_tolerance
    from asccl.data.errors import DataError
    from asccl.data.video import probe_audio
    from asccl.evaluation.features import frame_count, frame_rate

    try:
        fps, frames = frame_rate(c.path, c.source, config), frame_count(c.path)
        audio_s = probe_audio(audio).duration
    except DataError as err:
        return f"LSE: frame or audio length unreadable ({err})"
    video_s, tolerance = frames / fps, duration_tolerance(fps)
    if abs(video_s - audio_s) <= tolerance:
        return ""
    how = "a frame folder at its source's rate" if c.path.is_dir() and c.source else ""
    how = how or ("a frame folder at frame_folder_fps" if c.path.is_dir() else "")
    return (f"{frames} frames at {fps:g} fps{f' ({how})' if how else ''} = {video_s:.3f} s, "
            f"its audio {audio} {audio_s:.3f} s: {abs(video_s - audio_s):.3f} s apart, more "
            f"than the {tolerance:.3f} s allowed (2 frames + {AUDIO_SLACK_S:g} s); LSE pairs "
            "frame i with the audio at i / fps")  # fmt: skip


def common_clips(by_method: dict[str, set[str]]) -> set[str]:
    """The clip names every method with clips scored (empty if none or disjoint)."""
    sets = [s for s in by_method.values() if s]
    return set.intersection(*sets) if sets else set()


def _label(metric: str) -> str:
    return METRICS[metric][0]


class RealStats:
    """The real set's state per (metric group, real set, setting, emotion): a
    :class:`~asccl.evaluation.frechet.FrechetDistance` or :class:`~asccl.evaluation.kid.KID`
    updated once from this process's real clips and copied for each method (the copy takes
    the method's results). ``dims``: feature size per extractor."""

    def __init__(
        self, index: ResultsIndex, features: dict, config: EvalConfig, dims: dict[str, int]
    ):
        self.index, self.features, self.config, self.dims = index, features, config, dims
        self._real: dict[tuple[str, str, str], nn.Module] = {}

    def real(self, group: str, setting: str, emotion: str):
        from asccl.evaluation.frechet import FrechetDistance
        from asccl.evaluation.kid import KID

        where = "*" if self.config.real_set == "sources" else setting
        kind, dim = REAL_KIND[group], self.dims[REAL_KIND[group]]
        if (group, where, emotion) not in self._real:
            if group == "kid":
                metric = KID(nn.Identity())
                for side in (True, False):  # a (0, d) entry per side: processes gather alike
                    metric.update(torch.zeros(0, dim, dtype=torch.float64), real=side)
            else:
                metric = FrechetDistance(nn.Identity(), num_features=dim)
            for path in self.index.real_clips(self.config.real_set, setting, emotion).values():
                f = self.features.get((kind, path))
                if f is not None and len(f["features"]):
                    metric.update(torch.from_numpy(f["features"]), real=True)
            self._real[group, where, emotion] = metric
        return self._real[group, where, emotion]


def _compute(metric):
    """``metric.compute()`` (synced over processes); the warning a process without updates
    gets is expected here: its states are zeros and add nothing."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        warnings.simplefilter("ignore", RuntimeWarning)  # few samples: noted in the report
        return metric.compute()


def _row_value(
    group: str,
    clips: list[ResultClip],
    setting: str,
    emotion: str,
    ctx: dict,
    out: SettingScores,
    method: str,
) -> dict[str, float]:
    """``{metric: value}`` of ``group`` over ``clips`` (this process's share of the row's
    clips); every process calls it for the same rows in the same order."""
    features, config, summary = ctx["features"], ctx["config"], ctx["summary"]
    if group == "kid":
        if not ctx["index"].real_clips(config.real_set, setting, emotion):
            out.note(
                method,
                emotion,
                group,
                (
                    f"KID↓: no real clips in the real set ({config.real_set} of "
                    f"{setting}/{emotion}): nothing to compare with"
                ),
            )
            return {"kid": math.nan}
        metric = copy.deepcopy(ctx["frechet"].real(group, setting, emotion))
        for c in clips:
            metric.update(torch.from_numpy(features[("inception", c.path)]["features"]), False)
        try:
            mean, _ = _compute(metric)
        except ValueError as err:
            summary.problems.append(f"{method}/{setting}/{emotion}: no kid ({err})")
            out.note(method, emotion, group, f"KID↓ cannot be computed: {err}")
            return {"kid": math.nan}
        return {"kid": float(mean)}
    if group in DIST_KIND:
        real_set = config.real_set
        if not ctx["index"].real_clips(real_set, setting, emotion):
            out.note(
                method,
                emotion,
                group,
                (
                    f"{_label(group)}: no real clips in the real set ({real_set} of "
                    f"{setting}/{emotion}): nothing to compare with"
                ),
            )
            return {group: math.nan}
        metric = copy.deepcopy(ctx["frechet"].real(group, setting, emotion))
        kind = DIST_KIND[group]
        for c in clips:
            metric.update(torch.from_numpy(features[(kind, c.path)]["features"]), real=False)
        where, dim = f"{method}/{setting}/{emotion}", ctx["frechet"].dims[kind]
        try:
            value = float(_compute(metric))
        except ValueError as err:
            n_real, n_fake = metric.counts
            summary.problems.append(
                f"{where}: no {group} ({err}); {n_real} real and {n_fake} result frames: a "
                "Frechet distance needs more frames than feature dimensions (raise "
                "max_frames_per_clip or add clips)"
            )
            out.note(
                method,
                emotion,
                group,
                (
                    f"{_label(group)} cannot be computed from so few frames (a covariance of "
                    f"{dim}-d features needs more; see report.txt)"
                ),
            )
            return {group: math.nan}
        n_real, n_fake = metric.counts
        if min(n_real, n_fake) <= dim:
            summary.problems.append(
                f"{where}: {group} from {n_real} real and {n_fake} result frames for {dim} "
                "dimensions: singular covariance, unreliable"
            )
            out.note(
                method,
                emotion,
                group,
                (
                    f"{_label(group)} from no more frames than its {dim} feature dimensions "
                    "(singular covariance): unreliable"
                ),
            )
        return {group: value}
    if group == "csim":
        from asccl.evaluation.identity import CSIM

        metric = CSIM(nn.Identity())
        from asccl.evaluation.features import paired_features

        for c in clips:
            a, b = features[("arcface", c.source)], features[("arcface", c.path)]
            length = (int(a.get("frames", len(a["features"]))),
                      int(b.get("frames", len(b["features"]))))  # fmt: skip
            if length[1] > length[0]:  # longer than its source: not frame-aligned with it
                summary.problems.append(
                    f"{c.path}: {length[1]} frames, its source {length[0]}; CSIM compares "
                    f"the first {length[0]} (a result should be as long as its source)"
                )
            elif length[1] < length[0]:  # shorter: compared with its source's first frames
                summary.problems.append(
                    f"{c.path}: {length[1]} frames, its source {length[0]}; CSIM compares "
                    f"the first {length[1]} of the source (a result should be as long as its "
                    "source)"
                )
            x, y = paired_features(a, b)  # frames with a face in both, by frame number
            metric.update(torch.from_numpy(x), torch.from_numpy(y))
        return {"csim": float(_compute(metric))}
    if group == "ground_truth":
        methods = list(out.scores)
        select, local = ctx["index"].select, ctx["local"]
        peers = {c.name: {m: p.path for m in methods for p in select(m, setting, emotion)
                          if p.name == c.name and (group, setting, m, emotion, c.name) in local}
                 for c in clips}  # fmt: skip
        values, counts, capped = ground_truth_row(clips, features, summary, peers, methods)
        out.capped[method, emotion] = capped
        out.face_frames[emotion] = counts
        for k, text in landmark_notes(counts, methods).items():
            out.note(method, emotion, k, text)
        return values
    from asccl.evaluation.lip_sync import LipSync

    metric = LipSync()
    for c in clips:
        r = features[("syncnet", c.path)]
        metric.update(float(r["lse_d"]), float(r["lse_c"]))
    result = _compute(metric)
    return {"lse_d": float(result["lse_d"]), "lse_c": float(result["lse_c"])}


def setting_scores(
    index: ResultsIndex,
    setting: str,
    methods: list[str],
    features: dict,
    config: EvalConfig,
    summary: EvalSummary,
    available: set[Unit],
    local: set[Unit],
    real: RealStats | None,
) -> SettingScores:
    """One setting's :class:`SettingScores` (methods without clips in it left out).

    ``features`` and ``local`` are this process's (its :func:`scored_units`), ``available``
    every process's (the same on all); each row is scored over :func:`common_clips`;
    ``real`` holds the real set's statistics (``None`` without FID/FAD)."""
    out = SettingScores()
    present = [m for m in methods if index.select(method=m, setting=setting)]
    ctx = {"features": features, "config": config, "summary": summary, "index": index,
           "frechet": real, "local": local}  # fmt: skip
    for method in present:
        out.scores[method] = {}
    for emotion in index.emotions:
        having = [m for m in present if index.select(m, setting, emotion)]
        for method in having:
            out.scores[method][emotion] = {}
        for group in metric_groups(config):
            metrics = GROUP_METRICS[group]
            scored = {
                m: {u[4] for u in available if u[:4] == (group, setting, m, emotion)}
                for m in having
            }
            common = common_clips(scored)
            same_set = bool(common) and all(scored[m] for m in having)
            for method in present:
                if method not in having:
                    for k in metrics:
                        out.note(method, emotion, k, f"{method} has no {emotion} results")
                    continue
                names = (common or scored[method]) if scored[method] else set()
                if not names:
                    for k in metrics:
                        out.scores[method][emotion][k] = math.nan
                        out.note(
                            method,
                            emotion,
                            k,
                            (
                                f"no {emotion} clip of {method} could be scored for {_label(k)} "
                                "(see the skipped clips in report.txt)"
                            ),
                        )
                    continue
                mine = [c for c in index.select(method, setting, emotion)
                        if c.name in names and (group, setting, method, emotion, c.name)
                        in ctx["local"]]  # fmt: skip
                out.scores[method][emotion] |= _row_value(
                    group, mine, setting, emotion, ctx, out, method
                )
                if not common:
                    for k in metrics:
                        out.note(
                            method,
                            emotion,
                            k,
                            (
                                "the methods' scored clips do not overlap: each over its own, "
                                "not compared"
                            ),
                        )
                elif any(len(index.select(m, setting, emotion)) > len(common) for m in having):
                    counts = ", ".join(
                        f"{m} {len(scored[m])} of {len(index.select(m, setting, emotion))}"
                        for m in having
                    )
                    for k in metrics:
                        out.note(
                            method,
                            emotion,
                            k,
                            (
                                f"over the {len(common)} clip(s) every method scored (scored: "
                                f"{counts}; the skipped ones are in report.txt)"
                            ),
                        )
            for k in metrics:
                values = [out.scores[m].get(emotion, {}).get(k, math.nan) for m in present]
                if same_set and len(having) == len(present) and all(map(math.isfinite, values)):
                    out.comparable.add((emotion, k))
    _average(out, present, index.emotions, config)
    if "ground_truth" in metric_groups(config):
        average_face_note(out, present, index.emotions)
        psnr_caps(out, present, index.emotions)
    return out


def _average(out: SettingScores, present: list[str], emotions: list[str], config) -> None:
    """The ``average`` row: per metric the mean over the emotions comparable for every
    method; a footnote names what it leaves out."""
    for method in present:
        out.scores[method][AVERAGE] = {}
    for k in config.table_metrics:
        common = [e for e in emotions if (e, k) in out.comparable]
        valued = [e for e in emotions
                  if any(math.isfinite(out.scores[m].get(e, {}).get(k, math.nan))
                         for m in present)]  # fmt: skip
        for method in present:
            rows = [out.scores[method][e][k] for e in common]
            out.scores[method][AVERAGE][k] = float(np.mean(rows)) if rows else math.nan
            if not common:
                out.note(method, AVERAGE, k, f"no average: no emotion has a {_label(k)} of "
                         "every method over the same clips")  # fmt: skip
            elif set(common) != set(valued):
                left = ", ".join(e for e in valued if e not in common)
                out.note(method, AVERAGE, k, f"over {', '.join(common)} only: {left} lack a "
                         "value of some method (or one over the same clips)")  # fmt: skip
        if common:
            out.comparable.add((AVERAGE, k))
