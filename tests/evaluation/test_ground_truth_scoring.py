"""Ground-truth rows of a setting's table (:func:`asccl.evaluation.scoring.setting_scores`)
from hand-made cache entries: the landmark errors compare every method over the same frames,
and PSNR rows with frames at the 100 dB cap are footnoted and left without a winner."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from asccl.evaluation.config import EvalConfig, EvalSummary
from asccl.evaluation.ground_truth_features import KIND, PSNR_CAP
from asccl.evaluation.results import ResultClip, ResultsIndex
from asccl.evaluation.scoring import scored_units, setting_scores
from asccl.evaluation.tables import best_methods, to_markdown

SETTING, EMOTION, CLIP = "single", "happy", "W903_001"
METRICS = ["lme_mouth", "lme_face", "lmd_mouth", "lmd_face", "psnr", "ssim"]


def _truth(t: int) -> np.ndarray:
    """``(t, 68, 2)`` landmarks; outer eye corners (36, 45) 60 px apart."""
    marks = np.random.default_rng(0).uniform(20, 100, (t, 68, 2)).astype(np.float32)
    marks[:, 36], marks[:, 45] = (30.0, 50.0), (90.0, 50.0)
    return marks


def _score(tmp_path: Path, entries: dict[str, dict[str, np.ndarray]]):
    """``setting_scores`` of one clip per method, its ground-truth entry given."""
    root = tmp_path / "results"
    clips = [ResultClip(m, SETTING, EMOTION, CLIP, root / m / SETTING / EMOTION / CLIP, None)
             for m in entries]  # fmt: skip
    truth = root / "ground_truth" / SETTING / EMOTION / CLIP
    index = ResultsIndex(root, clips, ground_truth={SETTING: {EMOTION: {CLIP: truth}}})
    config = EvalConfig(results=root, out=tmp_path / "eval", metrics=("ground_truth",),
                        framing="none")  # fmt: skip
    features = {(KIND, c.path): entries[c.method] for c in clips}
    summary = EvalSummary()
    units = scored_units(clips, features, config, summary)
    return setting_scores(index, SETTING, list(entries), features, config, summary, units,
                          units, None)  # fmt: skip


def _entry(
    marks: np.ndarray, psnr: np.ndarray, tracked: np.ndarray | None = None
) -> dict[str, np.ndarray]:
    """A cache entry; the tracked ground truth is the exact one unless ``tracked`` is given."""
    t, n = len(marks), np.int64(len(marks))
    return {"landmarks": marks, "truth_landmarks": _truth(t),
            "truth_tracked": _truth(t) if tracked is None else tracked, "psnr": psnr,
            "ssim": np.full(t, 0.9), "frames": n, "truth_frames": n}  # fmt: skip


def test_a_method_losing_the_face_on_its_worst_frames_is_not_better(tmp_path):
    """A and B put out the same landmarks: every point 0.6 px right of the truth on frames
    0-4, 6 px on frames 5-9; B's tracker lost the face on 5-9. Scored on its own frames B
    would get 0.6 / 60 = 0.01 and A (0.01 + 0.1) / 2 = 0.055; over the frames both have a
    face both get 0.01 (float32 points near 100 px: rounding ~1e-5 px, 2e-7 after / 60)."""
    t = 10
    shift = np.zeros((t, 68, 2), np.float32)
    shift[:5, :, 0], shift[5:, :, 0] = 0.6, 6.0
    a = _truth(t) + shift
    b = a.copy()
    b[5:] = np.nan
    psnr = np.full(t, 30.0)
    out = _score(tmp_path, {"A": _entry(a, psnr), "B": _entry(b, psnr)})
    for k in ("lme_mouth", "lme_face"):
        for method in ("A", "B"):
            assert out.scores[method][EMOTION][k] == pytest.approx(0.6 / 60, abs=1e-6)
        assert (EMOTION, k) in out.comparable
        assert best_methods(out.scores, EMOTION, k) == set()  # equal: no winner
    note = ("Mouth-LME↓/Face-LME↓ over the 5 of 10 frame(s) where every method's result and "
            "the ground truth have a face (frames without a face: A 0, B 5)")  # fmt: skip
    for method in ("A", "B"):
        for row in (EMOTION, "average"):  # the average: its one emotion's counts
            assert out.notes[(method, row, "lme_mouth")] == [note]
            assert out.notes[(method, row, "lme_face")] == [note]
    assert note in to_markdown(out.scores, METRICS, notes=out.notes, comparable=out.comparable)
    assert not any(k[2] in ("psnr", "ssim") for k in out.notes)


def test_every_frame_with_a_face_leaves_no_landmark_note(tmp_path):
    t = 4
    a, b = _truth(t) + 0.6, _truth(t) + 1.2  # 0.01 and 0.02 of the eye distance
    out = _score(tmp_path, {"A": _entry(a, np.full(t, 30.0)), "B": _entry(b, np.full(t, 31.0))})
    assert out.scores["A"][EMOTION]["lme_mouth"] == pytest.approx(0.6 * 2**0.5 / 60, abs=1e-6)
    assert best_methods(out.scores, EMOTION, "lme_mouth") == {"A"}
    assert best_methods(out.scores, EMOTION, "psnr") == {"B"}  # no capped frame: marked
    assert (EMOTION, "psnr") in out.comparable and not out.notes


def test_frames_at_the_psnr_cap_are_counted_and_leave_no_winner(tmp_path):
    """A: 2 of 20 frames identical to the truth (stored as 100 dB), 30 dB elsewhere, mean
    (2 * 100 + 18 * 30) / 20 = 37; B: 35 dB on every frame. The mean (kept, as in the
    papers) ranks A first only through the cap: no winner, and a footnote counts the frames."""
    t = 20
    a = np.full(t, 30.0)
    a[:2] = PSNR_CAP
    marks = _truth(t) + 0.6
    out = _score(tmp_path, {"A": _entry(marks, a), "B": _entry(marks.copy(), np.full(t, 35.0))})
    assert out.scores["A"][EMOTION]["psnr"] == pytest.approx(37.0, rel=1e-12)
    assert out.scores["B"][EMOTION]["psnr"] == pytest.approx(35.0, rel=1e-12)
    for row in (EMOTION, "average"):
        assert (row, "psnr") not in out.comparable and (row, "psnr") in out.unmarked
        note = ("PSNR↑: frames identical to the ground truth (infinite PSNR) are counted as "
                "100 dB (A 2 of 20, B 0 of 20); the cap can decide the ranking, so no winner "
                "is marked")  # fmt: skip
        assert out.notes[("A", row, "psnr")] == out.notes[("B", row, "psnr")] == [note]
        assert (row, "ssim") in out.comparable  # the other metrics keep their marks
    assert out.any_average
    md = to_markdown(out.scores, METRICS, notes=out.notes, comparable=out.comparable)
    assert "**37.000**" not in md and "37.000 [" in md


def test_scores_csv_carries_the_cap_counts_on_each_psnr_row(tmp_path):
    """The capped table above written as the runner writes it: each PSNR row has its
    ``psnr_capped_frames`` and ``psnr_frames`` (A 2 of 20, B 0 of 20, the average the sum
    over its one emotion), so readers of scores.csv alone know the cap decided the row;
    read back by ``read_caps``."""
    from asccl.evaluation.ground_truth_scoring import read_caps
    from asccl.evaluation.report import write_run_files

    t = 20
    a = np.full(t, 30.0)
    a[:2] = PSNR_CAP
    marks = _truth(t) + 0.6
    out = _score(tmp_path, {"A": _entry(marks, a), "B": _entry(marks.copy(), np.full(t, 35.0))})
    long_rows = [(SETTING, m, row, k, v[k]) for m, rows in out.scores.items()
                 for row, v in rows.items() for k in METRICS if k in v]  # fmt: skip
    index = ResultsIndex(tmp_path / "results", [], ground_truth={})
    paths = write_run_files(tmp_path / "eval", long_rows, EvalSummary(), index,
                            results={SETTING: out})  # fmt: skip
    with open(paths["scores"], newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == len(long_rows) == 2 * 2 * len(METRICS)  # no row added
    cells = {(r["method"], r["emotion"], r["metric"]): (r["psnr_capped_frames"],
             r["psnr_frames"]) for r in rows}  # fmt: skip
    for method, capped in (("A", "2"), ("B", "0")):
        for row in (EMOTION, "average"):
            assert cells[(method, row, "psnr")] == (capped, "20")
            assert cells[(method, row, "ssim")] == ("", "")
    assert read_caps(rows) == {(SETTING, m, row): (k, 20) for m, k in (("A", 2), ("B", 0))
                               for row in (EMOTION, "average")}  # fmt: skip
