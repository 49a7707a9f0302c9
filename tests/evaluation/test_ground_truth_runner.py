"""Ground-truth metrics through ``asccl evaluate`` (the runner): mouth/face landmark error,
PSNR and SSIM of each result against its ``ground_truth/`` namesake, equal to hand
computations on tiny frame-folder clips.

The face tracker is a backend that knows each frame's landmarks (by its bytes), so the
result's landmarks are exactly the ones set here; the ground truth's come from its
``.landmarks.npy``. Frame folders are PNG (lossless), so a result equal to its ground truth
reads back bit-equal: landmark error 0, SSIM 1, PSNR infinite, shown as the cap (100 dB).
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from tests.evaluation.known_faces import KnownFaces

from asccl.evaluation import features as features_module
from asccl.evaluation.config import EvalConfig
from asccl.evaluation.framing import make_tracker
from asccl.evaluation.ground_truth import ssim
from asccl.evaluation.ground_truth_features import PSNR_CAP
from asccl.evaluation.runner import run_evaluation

T, SIZE = 3, 48


def _face(rng: np.random.Generator) -> np.ndarray:
    """68 points inside a 48-px frame; outer eye corners (36, 45) 20 px apart."""
    pts = rng.uniform(10, 38, (68, 2))
    pts[36], pts[45] = (14.0, 18.0), (34.0, 18.0)
    return pts


def _save(folder: Path, frames: np.ndarray) -> None:
    folder.mkdir(parents=True)
    for i, frame in enumerate(frames):
        Image.fromarray(frame).save(folder / f"{i:03d}.png")


@pytest.fixture
def results(tmp_path, monkeypatch):
    rng = np.random.default_rng(0)
    truth = rng.integers(0, 256, (T, SIZE, SIZE, 3), dtype=np.uint8)
    other = truth.copy()
    other[:, 20:30, 10:30] = rng.integers(0, 256, (T, 10, 20, 3), dtype=np.uint8)  # the mouth
    truth_marks = np.stack([_face(rng) for _ in range(T)])
    shift = np.zeros((T, 68, 2))
    shift[:, 48:68, 1] = np.array([1.0, 2.0, 4.0])[:, None]  # mouth points down 1, 2, 4 px
    shift[:, 0:17, 0] = 3.0  # jaw points right 3 px
    known = KnownFaces(margin=(-4, -8, 4, 4))
    for t in range(T):
        known.add(truth[t], truth_marks[t])
        known.add(other[t], truth_marks[t] + shift[t])
    root = tmp_path / "results"
    _save(root / "sources" / "happy" / "W903_001", truth)
    _save(root / "ground_truth" / "single" / "happy" / "W903_001", truth)
    np.save(root / "ground_truth" / "single" / "happy" / "W903_001.landmarks.npy", truth_marks)
    _save(root / "perfect" / "single" / "happy" / "W903_001", truth)
    _save(root / "other" / "single" / "happy" / "W903_001", other)
    tracker = make_tracker(known, detect_every=1)
    monkeypatch.setattr(features_module.Extractors, "tracker", lambda self: tracker)
    return {"root": root, "truth": truth, "other": other, "shift": shift}


def _scores(path: Path) -> dict[tuple[str, str, str], float]:
    with open(path, newline="") as handle:
        return {(r["method"], r["emotion"], r["metric"]): float(r["value"])
                for r in csv.DictReader(handle)}  # fmt: skip


def test_ground_truth_metrics_equal_hand_computations(results, tmp_path):
    config = EvalConfig(results=results["root"], out=tmp_path / "eval", metrics=("ground_truth",),
                        framing="none", grid_clips=0, methods=("perfect", "other"))  # fmt: skip
    outputs = run_evaluation(config)
    scores = _scores(outputs["scores"])
    # a result equal to its ground truth: no landmark error, SSIM 1, PSNR infinite -> the cap
    for row in ("happy", "average"):
        assert scores[("perfect", row, "lme_mouth")] == 0.0
        assert scores[("perfect", row, "lme_face")] == 0.0
        assert scores[("perfect", row, "psnr")] == PSNR_CAP
        assert scores[("perfect", row, "ssim")] == pytest.approx(1.0, abs=1e-12)
    # the other result: mouth points moved 1, 2, 4 px vertically, inter-ocular distance 20 px;
    # mean over frames of mean over points (float64 sums of float32 points: ~1e-6 px)
    mouth = np.mean([1.0, 2.0, 4.0]) / 20
    face = np.mean([(20 * d + 17 * 3.0) / 68 for d in (1.0, 2.0, 4.0)]) / 20
    assert scores[("other", "happy", "lme_mouth")] == pytest.approx(mouth, abs=1e-6)
    assert scores[("other", "happy", "lme_face")] == pytest.approx(face, abs=1e-6)
    a, b = results["other"].astype(np.float64), results["truth"].astype(np.float64)
    mse = ((a - b) ** 2).reshape(T, -1).mean(1)
    assert scores[("other", "happy", "psnr")] == pytest.approx(
        float(np.mean(10 * np.log10(255**2 / mse))), rel=1e-12
    )
    assert scores[("other", "happy", "ssim")] == pytest.approx(
        float(ssim(results["other"], results["truth"]).mean()), rel=1e-12
    )
    assert scores[("other", "happy", "ssim")] < 1.0
    table = outputs["table_single_md"].read_text()
    for label in ("Mouth-LME↓", "Face-LME↓", "PSNR↑", "SSIM↑", "100 dB"):
        assert label in table
    assert "**0.000**" in table  # the perfect result wins the mouth error, marked
    assert outputs["plot_single"].is_file()
    assert "not a video" not in outputs["report"].read_text()  # the .landmarks.npy is no clip
    again = run_evaluation(config)  # cached: the same numbers, nothing recomputed
    assert _scores(again["scores"]) == scores
    assert "features computed: 0" in again["report"].read_text()


def test_ground_truth_switch_without_the_folder_is_a_one_line_error(results, tmp_path):
    import shutil

    from asccl.data.errors import DataError

    shutil.rmtree(results["root"] / "ground_truth")
    config = EvalConfig(results=results["root"], out=tmp_path / "eval", metrics=("ground_truth",),
                        framing="none", grid_clips=0)  # fmt: skip
    with pytest.raises(DataError, match=r"ground_truth.*missing"):
        run_evaluation(config)
