"""The LMD columns (Mouth-LMD, Face-LMD): each result's tracked landmarks against the ground
truth's tracked landmarks (same tracker, same framing), over the exact ground truth's
inter-ocular distance, so a tracker bias common to both cancels where the LME columns (against
the exact landmarks) keep it.

The tracker is a test double (tests/evaluation/known_faces.py) that knows every frame's
landmarks; here it misreads every face the same way, as dlib misreads expressive mouths:
it returns the exact landmarks with the mouth points (48-67) ``BIAS`` px lower. Frames are
lossless PNG folders, so each clip's tracked landmarks are exactly the ones set here.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from tests.evaluation.known_faces import KnownFaces, random_face, save_frames
from tests.evaluation.test_ground_truth_scoring import EMOTION, METRICS, _entry, _score, _truth

from asccl.evaluation import cache
from asccl.evaluation import features as features_module
from asccl.evaluation.config import EvalConfig
from asccl.evaluation.framing import make_tracker
from asccl.evaluation.ground_truth import landmark_error
from asccl.evaluation.ground_truth_features import KIND
from asccl.evaluation.runner import run_evaluation
from asccl.evaluation.tables import to_markdown
from asccl.spfem.reference_rows import score_references

T, SIZE, IOD = 3, 48, 20.0  # frames, frame side, inter-ocular distance (points 36-45) in px
NAME = "W903_001"
BIAS = 2.0  # the tracker reads every mouth 2 px lower than it is
D = 1.5  # the "offset" method's mouth sits 1.5 px lower than the ground truth's, truly


def _mouth(shift: float) -> np.ndarray:
    out = np.zeros((68, 2))
    out[48:68, 1] = shift
    return out


@pytest.fixture
def results(tmp_path, monkeypatch) -> Path:
    """``results/``: the ground truth (+ exact landmarks), its source, and ``offset`` (a
    result whose true mouth is ``D`` px below the truth's); the biased tracker in use."""
    rng = np.random.default_rng(0)
    truth = rng.integers(0, 256, (T, SIZE, SIZE, 3), dtype=np.uint8)
    offset = rng.integers(0, 256, (T, SIZE, SIZE, 3), dtype=np.uint8)
    marks = np.stack([random_face(rng, IOD) for _ in range(T)])
    known = KnownFaces(margin=(-4, -8, 4, 4))
    for t in range(T):  # what the tracker returns: the true points, mouth BIAS px lower
        known.add(truth[t], marks[t] + _mouth(BIAS))
        known.add(offset[t], marks[t] + _mouth(D) + _mouth(BIAS))
    root = tmp_path / "results"
    save_frames(root / "sources" / "happy" / NAME, truth)
    save_frames(root / "ground_truth" / "single" / "happy" / NAME, truth)
    np.save(root / "ground_truth" / "single" / "happy" / f"{NAME}.landmarks.npy", marks)
    save_frames(root / "offset" / "single" / "happy" / NAME, offset)
    tracker = make_tracker(known, detect_every=1)
    monkeypatch.setattr(features_module.Extractors, "tracker", lambda self: tracker)
    return root


def _config(results: Path, out: Path) -> EvalConfig:
    return EvalConfig(results=results, out=out, metrics=("ground_truth",), framing="none",
                      grid_clips=0, methods=("offset",))  # fmt: skip


def test_landmark_distance_divides_by_the_exact_truths_eyes():
    """Tracked result 3 px right of the tracked truth on every point; the exact truth's
    eyes 50 px apart, the tracked truth's 40: LMD = 3 / 50 (the exact normaliser), while
    landmark_error against the tracked truth would divide by 40."""
    from asccl.evaluation.ground_truth import landmark_distance

    exact = np.zeros((1, 68, 2))
    exact[0, 45, 0] = 50.0
    tracked = np.zeros((1, 68, 2))
    tracked[0, 45, 0] = 40.0
    result = tracked + np.array([3.0, 0.0])
    assert landmark_distance(result, tracked, exact).item() == pytest.approx(3 / 50, rel=1e-14)
    assert landmark_error(result, tracked).item() == pytest.approx(3 / 40, rel=1e-14)


def test_a_tracker_bias_cancels_in_lmd_and_stays_in_lme(results, tmp_path):
    """The truth, tracked: every mouth point BIAS px off the exact one, so its Mouth-LME is
    BIAS / IOD = 0.1 and its Face-LME 20 * BIAS / 68 / IOD; against itself tracked its LMD
    is exactly 0. The offset result, tracked: D + BIAS px off the exact mouth (LME mixes
    both: 0.175) but D px off the tracked truth's (LMD = D / IOD = 0.075 exactly: the
    bias cancels). Tolerance: float32 points near 40 px carry ~4e-6 px rounding, 2e-7 after
    / IOD; abs 1e-6."""
    scores, _ = score_references(_config(results, tmp_path / "eval"), ("truth",))
    table = scores["single"].scores
    for row in ("happy", "average"):
        truth, offset = table["truth"][row], table["offset"][row]
        assert truth["lmd_mouth"] == truth["lmd_face"] == 0.0
        assert truth["lme_mouth"] == pytest.approx(BIAS / IOD, abs=1e-6)
        assert truth["lme_face"] == pytest.approx(20 * BIAS / 68 / IOD, abs=1e-6)
        assert offset["lmd_mouth"] == pytest.approx(D / IOD, abs=1e-6)
        assert offset["lmd_face"] == pytest.approx(20 * D / 68 / IOD, abs=1e-6)
        assert offset["lme_mouth"] == pytest.approx((D + BIAS) / IOD, abs=1e-6)
    assert not any("LMD" in " ".join(v) for v in scores["single"].notes.values())  # all faces


def test_the_evaluation_writes_the_lmd_columns(results, tmp_path):
    """``metrics = ["ground_truth"]`` gives every ground-truth column, LMD among them, in
    the table, its caption and scores.csv."""
    import csv

    outputs = run_evaluation(_config(results, tmp_path / "eval"))
    with open(outputs["scores"], newline="") as handle:
        got = {(r["emotion"], r["metric"]): float(r["value"]) for r in csv.DictReader(handle)}
    assert got[("happy", "lmd_mouth")] == pytest.approx(D / IOD, abs=1e-6)
    assert got[("average", "lmd_face")] == pytest.approx(20 * D / 68 / IOD, abs=1e-6)
    table = outputs["table_single_md"].read_text()
    assert "Mouth-LMD↓" in table and "Face-LMD↓" in table and "as the same tracker" in table


def test_an_entry_cached_without_the_tracked_truth_is_recomputed(results, tmp_path):
    """A cache entry as version 1 wrote it (no ``truth_tracked``, recipe version 1) is
    redone, not used without the column; so is one with today's recipe but the array
    missing (an entry is only reused when it holds every array)."""
    config = _config(results, tmp_path / "eval")
    first = (run_evaluation(config)["scores"]).read_text()
    (path,) = (tmp_path / "eval" / "cache" / KIND).glob("*.npz")
    for version in ("1", None):
        data = dict(np.load(path, allow_pickle=False))
        recipe = json.loads(str(data.pop(cache.RECIPE_KEY)))
        recipe["version"] = version or recipe["version"]
        data.pop("truth_tracked")
        cache._save_npz(path, {**data, cache.RECIPE_KEY: np.str_(json.dumps(recipe))})
        outputs = run_evaluation(config)
        report = outputs["report"].read_text()
        assert "features computed: 1 (1 redone" in report
        assert ("version (1)" if version else "arrays (1)") in report
        assert outputs["scores"].read_text() == first  # LMD back, every value as before
        assert "truth_tracked" in np.load(path, allow_pickle=False)


def test_a_truth_frame_without_a_tracked_face_leaves_lmd_for_every_method(tmp_path):
    """The tracker loses the ground truth's face on frames 5-9 (the exact landmarks exist).
    A and B: tracked landmarks 0.6 px right of the tracked truth on frames 0-4, A 6 px and
    B 0.6 px on 5-9. LMD over frames 0-4 only, for both: 0.6 / 60 (eyes 60 px apart);
    the LME columns keep every frame (A: (0.01 + 0.1) / 2); the LMD footnote counts the 5
    frames, LME has none. Float32 points near 100 px: ~1e-5 px rounding, 2e-7 / 60."""
    t = 10
    tracked = _truth(t)
    tracked[5:] = np.nan
    shift_a, shift_b = np.zeros((t, 68, 2), np.float32), np.zeros((t, 68, 2), np.float32)
    shift_a[:5, :, 0], shift_a[5:, :, 0], shift_b[:, :, 0] = 0.6, 6.0, 0.6
    psnr = np.full(t, 30.0)
    out = _score(tmp_path, {"A": _entry(_truth(t) + shift_a, psnr, tracked),
                            "B": _entry(_truth(t) + shift_b, psnr, tracked)})  # fmt: skip
    for method in ("A", "B"):
        for k in ("lmd_mouth", "lmd_face"):
            assert out.scores[method][EMOTION][k] == pytest.approx(0.6 / 60, abs=1e-6)
    assert out.scores["A"][EMOTION]["lme_mouth"] == pytest.approx(0.11 / 2, abs=1e-6)
    note = ("Mouth-LMD↓/Face-LMD↓ over the 5 of 10 frame(s) where every method's result, the "
            "ground truth and the ground truth as the tracker finds it have a face (frames "
            "without a face: A 0, B 0; tracked ground truth 5)")  # fmt: skip
    for method in ("A", "B"):
        for row in (EMOTION, "average"):
            assert out.notes[(method, row, "lmd_mouth")] == [note]
            assert out.notes[(method, row, "lmd_face")] == [note]
            assert (method, row, "lme_mouth") not in out.notes
    assert note in to_markdown(out.scores, METRICS, notes=out.notes, comparable=out.comparable)
