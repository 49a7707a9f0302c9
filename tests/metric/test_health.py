"""``asccl metric evaluate``: coherence scores, DTW-partner retrieval, baselines, outputs."""

from __future__ import annotations

import json
from math import comb
from pathlib import Path

import numpy as np
import pytest
import torch

from asccl.cli import main
from asccl.config import ConfigError
from asccl.data.clips import AlignedPair
from asccl.data.crop_store import crop_path, write_clip_crops
from asccl.data.crops import ClipCrops
from asccl.data.errors import DataError
from asccl.data.pair_files import write_pairs_table
from asccl.metric import ASCCLMetric, retrieval, save_metric
from asccl.metric.health import MetricEvalConfig, evaluate_metric

SIZE = 64  # crops and metric input: the smallest side whose stage-4 map (4x4) holds anchors


def _tiny_metric(**changes) -> ASCCLMetric:
    torch.manual_seed(0)
    return ASCCLMetric(backbone="iresnet18", image_size=SIZE, **changes).eval()


def _frames(n: int, seed: int) -> np.ndarray:
    """``(n, SIZE, SIZE, 3)`` distinct smooth uint8 frames."""
    g = torch.Generator().manual_seed(seed)
    coarse = torch.rand(n, 3, 8, 8, generator=g)
    up = torch.nn.functional.interpolate(coarse, size=(SIZE, SIZE), mode="bilinear")
    return (up * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()


def _store(frames: np.ndarray) -> ClipCrops:
    n = len(frames)
    landmarks = np.zeros((n, 68, 2), np.float32)
    return ClipCrops(frames=frames, landmarks=landmarks, source_landmarks=landmarks,
                     boxes=np.tile(np.array([0, 0, SIZE, SIZE], np.float32), (n, 1)),
                     valid=np.ones(n, bool), fps=30.0, frame_size=(SIZE, SIZE))  # fmt: skip


def _identity_data(root: Path, frames: int = 12) -> Path:
    """One held-out clip pair (S1, angry) whose emotional clip is the neutral clip, frame
    for frame, with the identity as its DTW path."""
    neutral, emotional = "S1/neutral/level_1/001", "S1/angry/level_3/001"
    images = _frames(frames, seed=1)
    for clip in (neutral, emotional):
        write_clip_crops(_store(images), crop_path(root, clip, "npy"), format="npy")
    path = np.arange(frames)
    write_pairs_table([AlignedPair("S1", "angry", neutral, emotional, path, path, 0.0)],
                      root / "pairs.csv")  # fmt: skip
    return root


@pytest.mark.parametrize(
    "changes",
    [{}, {"negatives": "random", "num_random_negatives": 8, "adaptive": "authors"}],
)
def test_coherence_losses_are_the_metrics_loss(changes):
    # float64 metric: the pair-by-pair contrast and the per-frame embeddings run the same
    # maths in other batch shapes (other BLAS blockings): agreement to ~1e-15 relative
    metric = _tiny_metric(**changes).double()
    g = torch.Generator().manual_seed(3)
    x = torch.rand(2, 3, SIZE, SIZE, generator=g, dtype=torch.float64) * 2 - 1
    y = torch.rand(3, 3, SIZE, SIZE, generator=g, dtype=torch.float64) * 2 - 1
    regions = metric.sample_regions(1, generator=torch.Generator().manual_seed(0))
    partner = [2, 0]
    scores = retrieval.coherence_losses(
        metric,
        retrieval.embed_frames(metric, x, regions),
        retrieval.embed_frames(metric, y, regions),
        partner,
    )
    assert scores.losses.shape == (2, 3, 4)
    close = dict(rtol=1e-12, atol=1e-12)
    with torch.no_grad():
        fx, fy = metric.features(x), metric.features(y)
        for i in range(2):
            query = [f[i : i + 1].expand(3, -1, -1, -1) for f in fx]  # x_i against each y_j
            expected = metric.contrast(query, fy, regions).per_stage
            torch.testing.assert_close(scores.losses[i], expected, **close)
            j = partner[i]
            health = metric.contrast([f[i : i + 1] for f in fx], [f[j : j + 1] for f in fy],
                                     regions, health=True).health  # fmt: skip
            torch.testing.assert_close(scores.positive_cosine[i], health.positive_cosine, **close)
            torch.testing.assert_close(scores.negative_cosine[i], health.negative_cosine, **close)


def test_an_identity_metric_retrieves_every_partner():
    # features = the frame's pixels: distance 0 to the same frame, > 0 to every other
    frames = torch.from_numpy(_frames(10, seed=2)).permute(0, 3, 1, 2)
    distances = retrieval.pixel_distances(frames, frames)
    candidates = np.arange(10)
    partners = [np.array([i]) for i in range(10)]
    hits = retrieval.retrieval_hits(distances, candidates, partners, tolerance=0)
    assert hits.all()  # top-1 and top-5: 100 %


def test_pixel_l2_baseline_by_hand():
    # constant grey frames: distance = (a - b)^2 per pixel, so the mean is (a - b)^2
    neutral = torch.tensor([12, 52, 88]).view(3, 1, 1, 1).expand(3, 3, 4, 4)
    emotional = torch.tensor([0, 20, 40, 60, 80, 100]).view(6, 1, 1, 1).expand(6, 3, 4, 4)
    distances = retrieval.pixel_distances(neutral, emotional)
    expected = (
        torch.tensor([12.0, 52, 88])[:, None] - torch.tensor([0.0, 20, 40, 60, 80, 100])
    ) ** 2
    torch.testing.assert_close(distances, expected.double(), rtol=0, atol=0)
    # nearest: 12 -> frame 1 (20), 52 -> frame 3 (60), 88 -> frame 4 (80). Partners 1, 5, 4:
    # query 1 ranks 3, 2, 4, 1, 5, 0 (distances 64, 144, 784, 1024, 2304, 2704): its
    # partner 5 is 2 frames from the first, within top 5
    partners = [np.array([1]), np.array([5]), np.array([4])]
    hits = retrieval.retrieval_hits(distances, np.arange(6), partners, tolerance=1)
    np.testing.assert_array_equal(hits, [[1.0, 1.0], [0.0, 1.0], [1.0, 1.0]])
    # chance: m candidates within 1 frame of the partner among 6; top-1 m / 6
    chance = retrieval.chance_hits(np.arange(6), partners, tolerance=1)
    m = np.array([3, 2, 3])  # {0, 1, 2}, {4, 5}, {3, 4, 5}
    np.testing.assert_allclose(chance[:, 0], m / 6)
    np.testing.assert_allclose(chance[:, 1], [1 - comb(6 - k, 5) / comb(6, 5) for k in m])


def test_command_prints_the_table_and_writes_the_png(tmp_path, capsys):
    data = _identity_data(tmp_path / "data")
    checkpoint = save_metric(_tiny_metric(), tmp_path / "metric.safetensors")
    out = tmp_path / "health"
    code = main(["metric", "evaluate", "--checkpoint", str(checkpoint), "--data", str(data),
                 "--out", str(out), "--val-speakers", '["S1"]', "--crop-format", "npy",
                 "--device", "cpu", "--max-frames", "6"])  # fmt: skip
    printed = capsys.readouterr().out
    assert code == 0
    assert "| Stage |" in printed and "pixel L2" in printed and "Stage 4" in printed
    assert "untrained (random init, seed 0)" in printed
    png = out / "metric_health.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and f"plot_png: {png}" in printed
    summary = json.loads((out / "metric_health.json").read_text())
    assert summary["clip_pairs"] == 1 and summary["neutral_frames"] == 6
    # emotional frames = neutral frames, identity path: pixel L2 finds every partner
    assert summary["scores"]["pixel L2"]["average"] == {"top1": 1.0, "top5": 1.0}
    # chance: 12 candidates, 2 or 3 of them within a frame of the partner
    chance = summary["scores"]["chance"]["average"]["top1"]
    assert 2 / 12 <= chance <= 3 / 12
    for method in ("trained", "untrained (random init, seed 0)"):
        row = summary["scores"][method]["average"]
        assert 0 <= row["top1"] <= row["top5"] <= 1 and np.isfinite(row["gap"])
    # a frame with its own copy: every positive cosine is 1
    assert summary["cosines"]["trained"]["stage 1"]["positive"] == pytest.approx(1, abs=1e-5)
    assert (out / "metric_health.csv").read_text().startswith("stage,")
    assert "Stage &" in (out / "metric_health.tex").read_text()


def test_bad_settings_and_data(tmp_path):
    with pytest.raises(ConfigError, match="max_frames"):
        MetricEvalConfig(max_frames=-1)
    with pytest.raises(ConfigError, match="crop_format"):
        MetricEvalConfig(crop_format="png")
    data = _identity_data(tmp_path / "data", frames=4)
    checkpoint = save_metric(_tiny_metric(), tmp_path / "metric.safetensors")
    with pytest.raises(DataError, match="W021"):
        evaluate_metric(MetricEvalConfig(checkpoint=checkpoint, data=data, crop_format="npy",
                                         out=tmp_path / "h"))  # fmt: skip


def test_the_demo_evaluates_its_metric(tmp_path, capsys):
    from asccl.config import load_config
    from asccl.data.config import DataConfig
    from asccl.demo import DemoConfig, _health_stage
    from asccl.training.config import TrainConfig

    bundled = load_config(DemoConfig, "configs/demo.toml")
    assert bundled.health is not None and bundled.health.max_pairs == 1
    data = _identity_data(tmp_path / "data", frames=6)
    checkpoint = save_metric(_tiny_metric(), tmp_path / "metric.safetensors")
    config = DemoConfig(
        out=tmp_path / "demo",
        data=DataConfig(out=data, crop_format="npy"),
        train=TrainConfig(val_speakers=["S1"]),  # the demo's held-out speakers
        health=bundled.health,
    )
    paths = _health_stage(config, checkpoint)
    assert paths["metric_health_png"] == tmp_path / "demo" / "metric_health" / "metric_health.png"
    assert paths["metric_health_png"].is_file() and paths["metric_health_md"].is_file()
    assert "| Stage |" in capsys.readouterr().out
