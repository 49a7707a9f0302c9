"""``asccl groundtruth`` end to end at a tiny size (slow): synth (2 speakers) -> prepare ->
metric -> metric evaluate -> experiment (GANmut-style, seeds [1]: the seeds path) with the
ground-truth columns -> resumed rerun. The seed arithmetic is tested on its own in
tests/spfem/test_ground_truth.py."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from asccl.cli import main

TINY = [
    "--synth.speakers", "2", "--experiment.test-speakers", '["M902"]',
    "--synth.sentences", "1", "--synth.size", "96", "--synth.duration", "0.5",
    "--synth.workers", "0", "--data.crop-size", "64", "--data.workers", "0",
    "--train.metric.image-size", "64", "--train.metric.num-anchors", "[8, 4, 2, 1]",
    "--train.max-steps", "2", "--train.val-every", "2", "--train.val-batches", "1",
    "--train.checkpoint-every", "2", "--train.workers", "0",
    "--health.max-pairs", "1", "--health.max-frames", "2", "--experiment.models", '["ganmut"]',
    "--experiment.seeds", "[1]", "--experiment.ganmut.steps", "1",
    "--experiment.ganmut.checkpoint-every", "1", "--experiment.ganmut.sample-every", "1",
    "--experiment.ganmut.asccl-every", "1", "--experiment.ganmut.image-size", "32",
    "--experiment.max-clips-per-emotion", "1", "--experiment.eval.grid-clips", "0",
]  # fmt: skip


@pytest.mark.slow
def test_groundtruth_runs_end_to_end_and_resumes(tmp_path, capsys):
    out = tmp_path / "gt"
    args = ["groundtruth", "--config", "configs/experiments/groundtruth.toml", "--out", str(out),
            "--synth.out", str(tmp_path / "synth"), *TINY]  # fmt: skip
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "ground-truth benchmark outputs:" in printed and "comparison_md" in printed
    experiment = out / "experiment"
    truth = experiment / "seed_1" / "results" / "ground_truth" / "single"
    # one test clip per emotion (6), each with its landmarks beside it
    assert len(list(truth.glob("*/*.mp4"))) == len(list(truth.glob("*/*.landmarks.npy"))) == 6
    with open(experiment / "comparison.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    metrics = {r["metric"] for r in rows}
    assert {"Mouth-LME↓", "Face-LME↓", "Mouth-LMD↓", "Face-LMD↓", "PSNR↑", "SSIM↑"} <= metrics
    assert all(r["seeds"] == "1" for r in rows)
    assert (experiment / "seeds" / "plots" / "single.png").is_file()
    assert (out / "metric_health").is_dir()
    assert main(args) == 0  # resumed: every stage finds its outputs
    again = capsys.readouterr().out
    assert "0 written" in again


@pytest.mark.parametrize(
    ("flag", "value", "key"),
    [("--experiment.seeds", "[0, 0]", "seeds"), ("--experiment.seeds", "[-1]", "seeds"),
     ("--synth.speakers", "0", "speakers")],
)  # fmt: skip
def test_bad_settings_are_one_line_errors_naming_the_key(tmp_path, capsys, flag, value, key):
    out = tmp_path / "gt"
    args = ["groundtruth", "--config", "configs/experiments/groundtruth.toml", "--out", str(out),
            flag, value]  # fmt: skip
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("asccl: error:") and key in err and "\n" not in err
    assert not out.exists()  # nothing written


def test_a_stage_that_cannot_resume_names_its_own_flag():
    """Inside ``asccl groundtruth`` a training stage's resume refusal names the flag that
    reaches it (``--train.resume false``, ``--experiment.resume false``), not the stand-alone
    command's ``--resume false``; other errors pass through unchanged."""
    from asccl.config import ConfigError
    from asccl.groundtruth import _stage_keys
    from asccl.training.resume import check_resume

    for table in ("train", "experiment"):
        with pytest.raises(ConfigError) as info, _stage_keys(table):
            check_resume(Path("runs/x/checkpoints/step_25"), {"a": "1"}, {"a": "2"}, 25, None)
        message = str(info.value)
        assert f"use --{table}.resume false" in message and " --resume" not in message
        assert "a 1 -> 2" in message and "\n" not in message
    with pytest.raises(ConfigError, match=r"^other problem$"), _stage_keys("train"):
        raise ConfigError("other problem")
