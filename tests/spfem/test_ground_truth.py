"""The experiment's ground truth framed like the generators' outputs, and the seed
aggregation (mean, spread, winner rule with the spread)."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np
import pytest

from asccl.data.crop_store import open_clip_crops, write_clip_crops
from asccl.data.crops import crop_clip
from asccl.data.video import write_video
from asccl.evaluation.results import read_frames
from asccl.spfem.data import clip_tensors
from asccl.spfem.ground_truth import frame_ground_truth, write_ground_truth
from asccl.spfem.results import _to_uint8
from asccl.spfem.seeds import aggregate, write_seed_outputs

DEMO = Path(__file__).resolve().parents[2] / "demo_data" / "MEAD" / "W901" / "video" / "front"


@pytest.fixture(scope="module")
def neutral(tmp_path_factory) -> tuple[Path, Path]:
    """An 8-frame neutral clip of the demo data and its crop store (dlib, 112 px crops)."""
    folder = tmp_path_factory.mktemp("gt")
    video = folder / "neutral.mp4"
    write_video(video, read_frames(DEMO / "neutral" / "level_1" / "001.mp4", 8), fps=30)
    store = write_clip_crops(crop_clip(video, 112, detect_every=4), folder / "neutral.npz")
    return video, store


@pytest.mark.parametrize("size", [64, 112])
def test_ground_truth_of_the_neutral_target_is_the_source_crop(neutral, size):
    """The neutral clip as its own ground truth goes the source's way bit for bit: its crop
    boxes, the store's JPEG round trip, the generators' resize."""
    video, store = neutral
    reader = open_clip_crops(store)
    source = _to_uint8(clip_tensors(reader, size)[0])
    frames, marks = frame_ground_truth(reader, video, np.asarray(reader.source_landmarks), size)
    assert frames.shape == source.shape == (8, size, size, 3)
    np.testing.assert_array_equal(frames, source)
    # landmarks: the store's crop landmarks (same box rule) taken to the output's pixel
    # centres; both sides are float32 of ~100-px values: ~1e-5 px apart at most
    crop = np.asarray(reader.landmarks, np.float64)
    expected = (crop + 0.5) * (size / reader.size) - 0.5
    np.testing.assert_allclose(marks, expected, atol=1e-3)


def test_written_ground_truth_has_its_landmarks_beside_it(neutral, tmp_path):
    video, store = neutral
    reader = open_clip_crops(store)
    np.save(video.with_name("neutral.landmarks.npy"), np.asarray(reader.source_landmarks))
    out = write_ground_truth(reader, video, 64, 30.0, tmp_path / "single" / "happy" / "x.mp4")
    marks = np.load(out.with_name("x.landmarks.npy"))
    assert marks.shape == (8, 68, 2) and len(read_frames(out)) == 8
    video.with_name("neutral.landmarks.npy").unlink()


def test_seed_mean_and_spread_are_the_sample_statistics():
    key = ("single", "ganmut", "average", "lme_mouth")
    other = ("single", "ganmut", "happy", "psnr")
    stats = aggregate([{key: 1.0, other: 20.0}, {key: 2.0, other: math.nan}, {key: 4.0}])
    mean, std, n = stats[key]
    # mean 7/3; squared deviations 16/9 + 1/9 + 25/9 = 42/9 over n - 1 = 2: 7/3
    assert (mean, n) == (pytest.approx(7 / 3, rel=1e-15), 3)
    assert std == pytest.approx(math.sqrt(7 / 3), rel=1e-15)
    assert stats[other] == (20.0, 0.0, 1)  # one seed has it: std 0, n 1


def _per_seed(base: list[float], ours: list[float]) -> list[dict]:
    return [{("single", "ganmut", "average", "lme_mouth"): a,
             ("single", "ganmut_asccl", "average", "lme_mouth"): b,
             ("single", "ganmut", "happy", "lme_mouth"): a,
             ("single", "ganmut_asccl", "happy", "lme_mouth"): b}
            for a, b in zip(base, ours, strict=True)]  # fmt: skip


@pytest.mark.parametrize(
    ("base", "ours", "better", "wins"),
    [
        ([0.10, 0.11, 0.12], [0.05, 0.06, 0.07], "+ASCCL", 3),  # apart by 0.05, std 0.01
        ([0.10, 0.20, 0.30], [0.09, 0.19, 0.31], "within spread", 2),  # 0.003 apart, std 0.1
    ],
)
def test_comparison_feeds_the_seed_spread_to_the_winner_rule(tmp_path, base, ours, better, wins):
    from asccl.spfem.experiment import ExperimentConfig

    config = ExperimentConfig(out=tmp_path, models=("ganmut",), seeds=(0, 1, 2))
    paths = write_seed_outputs(config, _per_seed(base, ours))
    with open(paths["comparison_csv"], newline="") as handle:
        (row,) = list(csv.DictReader(handle))
    assert row["better"] == better and int(row["asccl_better_seeds"]) == wins
    assert float(row["baseline_mean"]) == pytest.approx(np.mean(base), abs=5e-5)
    assert float(row["baseline_std"]) == pytest.approx(np.std(base, ddof=1), abs=5e-5)
    table = paths["seeds_table_single_md"].read_text()
    spread = paths["seeds_spread_single"].read_text()
    assert ("**" in table.split("|---")[-1]) == (better == "+ASCCL")  # bold only with a winner
    assert f"{np.mean(ours):.3f} ± {np.std(ours, ddof=1):.3f}" in spread
    assert paths["seeds_plot_single"].is_file()
