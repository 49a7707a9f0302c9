"""The ground-truth rows of a setting's table (metric group ``"ground_truth"``): the mouth and
face landmark errors (LME, against the exact landmarks) and landmark distances (LMD, against
the ground truth's tracked landmarks), PSNR and SSIM of each method against the ground
truth, from the per-clip cache entries of :mod:`asccl.evaluation.ground_truth_features`;
called by :func:`asccl.evaluation.scoring.setting_scores`, which owns the rest of the table.

**Common frames.** The landmark errors go one level below the clips every method scored: in
each clip, every method is scored over the frames where every method's result and the
ground truth have a face (a method that loses the face on its worst frames must not come
out better); a footnote says over how many frames and counts each method's frames without a
face (:func:`face_note`; the ``average`` row sums its emotions' counts:
:func:`average_face_note`). The LMD columns take the frames of those where the tracker also
finds the ground truth's face, their footnote counting the ground-truth frames it does not
(:func:`lmd_note`). PSNR and SSIM need no face and take every frame.

**The PSNR cap.** A frame identical to its ground truth (infinite PSNR) counts as
:data:`~asccl.evaluation.ground_truth_features.PSNR_CAP` in the mean, so the cap stands in
for infinity and can decide a ranking: a PSNR row with such frames gets a footnote counting
them (:func:`cap_note`) and no winner mark (:func:`psnr_caps`). ``scores.csv`` carries the
counts in two extra columns, :data:`CAPPED_FRAMES` and :data:`PSNR_FRAMES`, filled on PSNR
rows (:func:`cap_columns`; read back by :func:`read_caps`), so the seeds' tables and the
comparisons built from it (:mod:`asccl.spfem.seeds`, :mod:`asccl.spfem.comparison`) mark no
PSNR winner where a seed's frames were capped; a reader that takes the named columns
(``csv.DictReader``) reads the file as before.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

import numpy as np
import torch
from torchmetrics import Metric

from asccl.evaluation.tables import AVERAGE, METRICS

if TYPE_CHECKING:
    from asccl.evaluation.results import ResultClip
    from asccl.evaluation.scoring import SettingScores

#: ``scores.csv`` column: a PSNR row's frames at the cap (an integer; empty on other rows)
CAPPED_FRAMES = "psnr_capped_frames"
#: ``scores.csv`` column: the frames a PSNR row's value is the mean over (an integer)
PSNR_FRAMES = "psnr_frames"
#: ``{(setting, method, row): (frames at the PSNR cap, frames)}``
Caps = dict[tuple[str, str, str], tuple[int, int]]


class FaceFrames(NamedTuple):
    """A row's landmark-error frames: ``frames`` compared (per clip the shortest result's),
    ``common`` with a face in every result and the ground truth, ``truth`` without one in
    the ground truth, ``lost[method]`` without one in that method's result; the LMD
    columns': ``lmd_common`` of ``common`` where the tracker also finds the ground truth's
    face, ``tracked`` where it does not."""

    frames: int
    common: int
    truth: int
    lost: dict[str, int]
    lmd_common: int = 0
    tracked: int = 0


class _Counts(Metric):
    """``(n,)`` integer counts, summed over updates and processes."""

    full_state_update = False

    def __init__(self, n: int, **kwargs) -> None:
        super().__init__(**kwargs)
        self.add_state("counts", torch.zeros(n, dtype=torch.long), dist_reduce_fx="sum")

    def update(self, counts: list[int]) -> None:
        """Add ``counts`` (``n`` integers)."""
        self.counts += torch.as_tensor(counts, dtype=torch.long).to(self.counts.device)

    def compute(self) -> torch.Tensor:
        return self.counts.clone()


def _label(metric: str) -> str:
    return METRICS[metric][0]


def ground_truth_row(
    clips: list[ResultClip],
    features: dict,
    summary,
    peers: dict[str, dict[str, Path]] | None = None,
    methods: list[str] | None = None,
) -> tuple[dict[str, float], FaceFrames, tuple[int, int]]:
    """``(values, face_frames, capped)`` of one method's ``clips``: the mouth/face landmark
    errors, over the frames of each clip where every result in ``peers[clip name]``
    (``{method: path}`` of every method's namesake scored here, this one's among them; by
    default this one alone) and the ground truth have a face, the mouth/face landmark
    distances over those where the tracked ground truth has one too, and PSNR and SSIM over
    every frame. ``face_frames``: :class:`FaceFrames` (``lost`` of each of ``methods``);
    ``capped``: ``(frames at the PSNR cap, frames)``. Counts are summed over processes."""
    from asccl.evaluation.ground_truth import (
        FACE,
        MOUTH,
        FramePSNR,
        FrameSSIM,
        LandmarkDistance,
        LandmarkError,
    )
    from asccl.evaluation.ground_truth_features import KIND, PSNR_CAP, face_frames, has_face
    from asccl.evaluation.scoring import _compute

    peers, methods = peers or {}, list(methods or [])
    mouth, face = LandmarkError(MOUTH), LandmarkError(FACE)
    lmd_mouth, lmd_face = LandmarkDistance(MOUTH), LandmarkDistance(FACE)
    peak, structure = FramePSNR(), FrameSSIM()
    frames, capped = _Counts(5 + len(methods)), _Counts(2)
    for c in clips:
        g = features[(KIND, c.path)]
        ok = face_frames(g)
        if not ok.all():
            summary.problems.append(f"{c.path}: {int((~ok).sum())} of {len(ok)} frame(s) "
                                    "without a face in it or its ground truth: no landmark "
                                    "error there")  # fmt: skip
        paths = peers.get(c.name, {})
        entries = [features[(KIND, p)] for p in dict.fromkeys([c.path, *paths.values()])]
        t = min(len(e["landmarks"]) for e in entries)
        common = np.logical_and.reduce([face_frames(e)[:t] for e in entries])
        truth_lost = np.logical_or.reduce([np.isnan(e["truth_landmarks"][:t]).any(axis=(1, 2))
                                           for e in entries])  # fmt: skip
        tracked_lost = np.logical_or.reduce([~has_face(e["truth_tracked"][:t])
                                             for e in entries])  # fmt: skip
        near = common & ~tracked_lost  # the LMD columns' frames
        missed = int((~has_face(g["truth_tracked"])).sum())
        if missed:
            summary.problems.append(f"{c.path}: the tracker finds no face in {missed} of "
                                    f"{len(ok)} frame(s) of its ground truth: no landmark "
                                    "distance (LMD) there")  # fmt: skip
        lost = {m: 0 for m in methods}
        for m, p in ((m, p) for m, p in paths.items() if m in lost):
            lost[m] = int(np.isnan(features[(KIND, p)]["landmarks"][:t]).any(axis=(1, 2)).sum())
        frames.update([t, int(common.sum()), int(truth_lost.sum()), int(near.sum()),
                       int(tracked_lost.sum()), *lost.values()])  # fmt: skip
        mouth.update(g["landmarks"][:t][common], g["truth_landmarks"][:t][common])
        face.update(g["landmarks"][:t][common], g["truth_landmarks"][:t][common])
        for metric in (lmd_mouth, lmd_face):
            metric.update(g["landmarks"][:t][near], g["truth_tracked"][:t][near],
                          g["truth_landmarks"][:t][near])  # fmt: skip
        peak.update_values(torch.from_numpy(g["psnr"]))
        structure.update_values(torch.from_numpy(g["ssim"]))
        capped.update([int((g["psnr"] >= PSNR_CAP).sum()), len(g["psnr"])])
    values = {"lme_mouth": float(_compute(mouth)), "lme_face": float(_compute(face)),
              "lmd_mouth": float(_compute(lmd_mouth)), "lmd_face": float(_compute(lmd_face)),
              "psnr": float(_compute(peak)), "ssim": float(_compute(structure))}  # fmt: skip
    n = _compute(frames).tolist()
    counts = FaceFrames(*n[:3], dict(zip(methods, n[5:], strict=True)), *n[3:5])
    k, total = _compute(capped).tolist()
    return values, counts, (k, total)


def _frames_note(
    counts: FaceFrames,
    methods: list[str],
    columns: str,
    compared: int,
    where: str,
    tracked: str = "",
) -> str:
    """A landmark footnote (``""`` when ``compared`` is every frame): ``columns`` are over
    the ``compared`` frames where ``where`` have a face; counts each method's (and the
    ground truth's) frames without one."""
    if compared == counts.frames:
        return ""
    lost = ", ".join(f"{m} {counts.lost.get(m, 0)}" for m in methods)
    truth = f"; ground truth {counts.truth}" if counts.truth else ""
    return (f"{columns} over the {compared} of {counts.frames} frame(s) where {where} have a "
            f"face (frames without a face: {lost}{truth}{tracked})")  # fmt: skip


def face_note(counts: FaceFrames, methods: list[str]) -> str:
    """The landmark errors' footnote (``""`` when every compared frame has a face)."""
    return _frames_note(counts, methods, f"{_label('lme_mouth')}/{_label('lme_face')}",
                        counts.common, "every method's result and the ground truth")  # fmt: skip


def lmd_note(counts: FaceFrames, methods: list[str]) -> str:
    """The landmark distances' footnote (``""`` when every compared frame has a face in
    every result, the ground truth and the tracked ground truth)."""
    return _frames_note(counts, methods, f"{_label('lmd_mouth')}/{_label('lmd_face')}",
                        counts.lmd_common, "every method's result, the ground truth and the "
                        "ground truth as the tracker finds it",
                        f"; tracked ground truth {counts.tracked}")  # fmt: skip


#: landmark metric -> its footnote's maker
LANDMARK_NOTES = {"lme_mouth": face_note, "lme_face": face_note, "lmd_mouth": lmd_note,
                  "lmd_face": lmd_note}  # fmt: skip


def landmark_notes(counts: FaceFrames, methods: list[str]) -> dict[str, str]:
    """``{metric: footnote}`` of the landmark columns whose frames miss some (see
    :func:`face_note`, :func:`lmd_note`)."""
    texts = {k: make(counts, methods) for k, make in LANDMARK_NOTES.items()}
    return {k: text for k, text in texts.items() if text}


def average_face_note(out: SettingScores, present: list[str], emotions: list[str]) -> None:
    """The landmark columns' footnotes of the ``average`` row: its emotions' counts summed."""
    for k, make in LANDMARK_NOTES.items():
        rows = [out.face_frames[e] for e in emotions if (e, k) in out.comparable
                and e in out.face_frames]  # fmt: skip
        if not rows:
            continue
        lost = {m: sum(r.lost.get(m, 0) for r in rows) for m in present}
        sums = [sum(r[i] for r in rows) for i in range(len(FaceFrames._fields))
                if FaceFrames._fields[i] != "lost"]  # fmt: skip
        total = FaceFrames(*sums[:3], lost, *sums[3:])
        text = make(total, present)
        for method in present if text else ():
            out.note(method, AVERAGE, k, text)


def cap_note(counts: dict[str, tuple[int, int]], where: str = "") -> str:
    """The footnote of a PSNR cell whose row has frames at the cap: ``counts[method]`` =
    ``(frames at the cap, frames)``; ``where`` (e.g. ``"summed over seeds 0, 1"``) follows
    the counts."""
    from asccl.evaluation.ground_truth_features import PSNR_CAP

    each = ", ".join(f"{m} {k} of {n}" for m, (k, n) in counts.items())
    each += f"; {where}" if where else ""
    return (f"{_label('psnr')}: frames identical to the ground truth (infinite PSNR) are "
            f"counted as {PSNR_CAP:g} dB ({each}); the cap can decide the ranking, so no "
            "winner is marked")  # fmt: skip


def psnr_caps(out: SettingScores, present: list[str], emotions: list[str]) -> None:
    """A footnote on each PSNR row (the ``average`` summing its emotions) where a method
    has frames at the cap, counting them; such a row keeps no winner (``unmarked``): the
    cap is a stand-in for infinity and can decide a ranking."""
    averaged = [e for e in emotions if (e, "psnr") in out.comparable]
    for m in present:
        counts = [out.capped.get((m, e), (0, 0)) for e in averaged]
        out.capped[m, AVERAGE] = (sum(k for k, _ in counts), sum(n for _, n in counts))
    for row in [*emotions, AVERAGE]:
        counts = {m: out.capped[m, row] for m in present if (m, row) in out.capped}
        if not any(k for k, _ in counts.values()):
            continue
        if (row, "psnr") in out.comparable:
            out.comparable.discard((row, "psnr"))
            out.unmarked.add((row, "psnr"))
        for m in counts:
            out.note(m, row, "psnr", cap_note(counts))


def cap_columns(long_rows: list[tuple], results: dict[str, SettingScores]) -> list[tuple]:
    """``scores.csv``'s ``(setting, method, row, metric, value)`` rows with the columns
    :data:`CAPPED_FRAMES` and :data:`PSNR_FRAMES` appended: ``(k, n)`` on a PSNR row whose
    counts ``results[setting].capped`` has, ``("", "")`` elsewhere."""
    out = []
    for r in long_rows:
        setting, method, row, metric = r[:4]
        capped = results[setting].capped if setting in results else {}
        counts = capped.get((method, row)) if metric == "psnr" else None
        out.append((*r, *(("", "") if counts is None else map(int, counts))))
    return out


def read_caps(rows: Iterable[Mapping[str, str]]) -> Caps:
    """``{(setting, method, row): (frames at the cap, frames)}`` of ``scores.csv``'s rows
    (``csv.DictReader``'s); empty for a file of an asccl older than the counts (nothing
    then says a frame was capped)."""
    return {(r["setting"], r["method"], r["emotion"]): (int(r[CAPPED_FRAMES]),
                                                        int(r[PSNR_FRAMES] or 0))
            for r in rows if r["metric"] == "psnr" and r.get(CAPPED_FRAMES)}  # fmt: skip


__all__ = [
    "CAPPED_FRAMES",
    "PSNR_FRAMES",
    "FaceFrames",
    "average_face_note",
    "cap_columns",
    "cap_note",
    "face_note",
    "ground_truth_row",
    "landmark_notes",
    "lmd_note",
    "psnr_caps",
    "read_caps",
]
