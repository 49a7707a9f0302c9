"""Robustness corpus of training run folders and of the metric commands not covered by
``test_weights.py``: nothing a user already has is lost to a damaged file.

* A finished ``asccl train-metric`` or ``asccl spfem train`` run whose every checkpoint is
  damaged (model file truncated, empty or garbage; or the newest truncated and the older's
  ``state.json`` garbage), run again with more steps: refused in one line naming the
  newest checkpoint's damaged file and ``--resume false``; the run folder byte for byte as
  it was (before, the run took the folder for a fresh start and deleted the earlier run).
  The fallback to an older checkpoint when only the newest is damaged is
  ``tests/training/test_train_metric.py::test_a_broken_newest_checkpoint_resumes_from_the_one_before``.
* ``asccl metric export CKPT OUT/``, ``asccl metric evaluate --checkpoint CKPT`` and
  ``asccl spfem train --asccl-checkpoint CKPT --asccl-weight 0.5`` on an empty, truncated,
  NaN-tensor and garbage metric file (``test_weights.py``'s builders): one line naming the
  file; the file and every earlier output unchanged.

The runs are real, tiny CLI runs on ``tests/spfem/test_data.py``'s synthetic stage-1
output (two speakers, 32 px crops).
"""

from __future__ import annotations

import os
import random
import re
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from asccl.cli import main
from tests.robustness.conftest import one_line_error, snapshot
from tests.robustness.test_weights import EXPECT, _build
from tests.spfem.test_data import write_stage1

#: the tiny metric (the smallest backbone; 64 px: the 32 px crops are resized up)
METRIC = ["--init", "random", "--device", "cpu", "--workers", "0", "--metric.backbone",
          "iresnet18", "--metric.image_size", "64", "--metric.num_anchors", "[8, 4, 4, 2]",
          "--val-speakers", '["B02"]', "--batch-size", "4", "--checkpoint-every", "1",
          "--val-every", "0", "--val-batches", "1"]  # fmt: skip
#: tests/spfem/test_train.py's TINY GANmut, as flags
SPFEM = ["--model", "ganmut", "--batch-size", "4", "--n-critic", "2", "--image-size", "32",
         "--workers", "0", "--device", "cpu", "--sample-every", "2", "--checkpoint-every", "1",
         "--log-every", "1", "--ganmut.image-size", "32", "--ganmut.g-channels", "8",
         "--ganmut.g-res-blocks", "1", "--ganmut.d-channels", "8", "--ganmut.d-layers", "3",
         "--ganmut.num-random", "1"]  # fmt: skip
MODEL_FILE = {"train-metric": "metric.safetensors", "spfem": "generator.safetensors"}


def train_argv(trainer: str, data: Path, out: Path, steps: int) -> list:
    if trainer == "train-metric":
        return ["train-metric", "--data", data, "--out", out, "--max-steps", steps, *METRIC]
    return ["spfem", "train", "--data", data, "--out", out, "--steps", steps, *SPFEM]


@pytest.fixture(scope="module")
def stage1(tmp_path_factory) -> Path:
    return write_stage1(tmp_path_factory.mktemp("stage1"))


@pytest.fixture(scope="module")
def finished(stage1, tmp_path_factory) -> Callable[[str], Path]:
    """``finished(trainer)``: a finished 2-step run, checkpoints at steps 1 and 2 (read
    only), run once per module through the command line."""
    runs: dict[str, Path] = {}

    def get(trainer: str) -> Path:
        if trainer not in runs:
            out = tmp_path_factory.mktemp(trainer) / "run"
            assert main([str(a) for a in train_argv(trainer, stage1, out, 2)]) == 0
            assert (out / MODEL_FILE[trainer]).is_file() and (out / "log.csv").is_file()
            runs[trainer] = out
        return runs[trainer]

    return get


def rewrite(file: Path, data: bytes) -> None:
    """Replace ``file``'s contents by a new file (the copies below are hard links)."""
    file.unlink()
    file.write_bytes(data)


#: damage -> (what is done to step_N/<model file>, what the error says)
DAMAGES: dict[str, tuple[Callable[[Path], None], str]] = {
    "truncated": (lambda f: rewrite(f, f.read_bytes()[:1000]),
                  "truncated safetensors file: its header needs"),
    "empty": (lambda f: rewrite(f, b""), r"empty file \(0 bytes\)"),
    "garbage": (lambda f: rewrite(f, random.Random(f.name).randbytes(4096)),
                "not a readable safetensors file"),
}  # fmt: skip
TRAINERS = [pytest.param("train-metric", marks=pytest.mark.slow), "spfem"]


@pytest.mark.parametrize("damage", [*DAMAGES, "mixed"])
@pytest.mark.parametrize("trainer", TRAINERS)
def test_a_run_whose_every_checkpoint_is_damaged_is_refused_not_started_over(
    trainer, damage, finished, stage1, tmp_path, capsys
):
    # hard links: the finished run's 300 MB (train-metric) are not copied per case; a
    # command that wrote into a file in place would show in the snapshot all the same
    out = Path(shutil.copytree(finished(trainer), tmp_path / "run", copy_function=os.link))
    model = MODEL_FILE[trainer]
    newest = out / "checkpoints" / "step_00000002"
    if damage == "mixed":  # each damaged otherwise: the newest's problem is the one named
        DAMAGES["truncated"][0](newest / model)
        rewrite(out / "checkpoints" / "step_00000001" / "state.json", b'{"progress": {"st')
        expected = DAMAGES["truncated"][1]
    else:
        for folder in (newest, out / "checkpoints" / "step_00000001"):
            DAMAGES[damage][0](folder / model)
        expected = DAMAGES[damage][1]
    before = snapshot(out)
    assert {"log.csv", "config.json", model, "curves.png"} <= before.keys()

    line = one_line_error(train_argv(trainer, stage1, out, 3), capsys, newest / model)
    assert line.startswith(f"asccl: error: {newest / model}: "), line
    assert re.search(expected, line), line
    assert line.endswith(
        f"; none of the 2 checkpoints in {out / 'checkpoints'} loads, so the run cannot "
        "resume: use --resume false to train from scratch, or another --out (a fresh run "
        "deletes them)"
    ), line
    assert snapshot(out) == before


# ------------------------------------------------------- commands taking a metric file

CASES = ["empty", "truncated", "nan", "random"]  # random: garbage bytes


@pytest.fixture(scope="module")
def bad_metric(tmp_path_factory) -> Callable[[str], Path]:
    """``bad_metric(case)``: ``test_weights.py``'s bad metric file, built on first use."""
    root = tmp_path_factory.mktemp("bad_metrics")
    made: dict[str, Path] = {}

    def get(case: str) -> Path:
        if case not in made:
            (root / case).mkdir()
            made[case] = _build("metric", case, root / case / "weights.safetensors")
        return made[case]

    return get


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("command", ["export", "evaluate", "spfem-train"])
def test_a_bad_metric_file_is_one_line_naming_it(
    command, case, bad_metric, stage1, tmp_path, capsys
):
    file = bad_metric(case)
    before = snapshot(file.parent)
    from asccl.metric.export import MODULE_FILE, README_FILE, WEIGHTS_FILE

    work = tmp_path / "work"  # what earlier runs left: must stay as it was
    for name in (MODULE_FILE, README_FILE, WEIGHTS_FILE):  # an earlier export
        (work / "export").mkdir(parents=True, exist_ok=True)
        (work / "export" / name).write_text(f"an earlier export's {name}\n")
    (work / "health").mkdir()
    (work / "health" / "summary.json").write_text('{"an earlier": "evaluation"}\n')
    (work / "spfem" / "samples").mkdir(parents=True)  # what a fresh run would clear first
    (work / "spfem" / "generator.safetensors").write_bytes(b"an earlier run's generator")
    (work / "spfem" / "samples" / "step_00000000.png").write_bytes(b"an earlier sample")
    done = snapshot(work)

    argv = {
        "export": ["metric", "export", file, work / "export"],
        "evaluate": ["metric", "evaluate", "--checkpoint", file, "--data", stage1, "--out",
                     work / "health", "--val-speakers", '["B02"]', "--device", "cpu"],
        "spfem-train": [*train_argv("spfem", stage1, work / "spfem", 2),
                        "--asccl-checkpoint", file, "--asccl-weight", "0.5"],
    }[command]  # fmt: skip
    line = one_line_error(argv, capsys, file)
    assert line.startswith(f"asccl: error: {file}: "), line
    assert re.search(EXPECT[case], line), line
    if case == "nan":
        assert "backbone.layer2.0.conv1.weight" in line, line  # the NaN tensor is named
    assert snapshot(file.parent) == before
    assert snapshot(work) == done
