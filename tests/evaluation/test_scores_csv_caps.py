"""``asccl evaluate``'s ``scores.csv`` carries the PSNR cap counts (metrics
``psnr_capped_frames`` and ``psnr_frames`` after each PSNR row), on the runner's
ground-truth clips of ``test_ground_truth_runner``: ``perfect`` is bit-equal to its ground
truth on all 3 frames (each at the 100 dB cap), ``other`` differs on every frame."""

from __future__ import annotations

import csv

from tests.evaluation.test_ground_truth_runner import results  # noqa: F401  (the fixture)

from asccl.evaluation.config import EvalConfig
from asccl.evaluation.ground_truth_scoring import CAPPED_FRAMES, PSNR_FRAMES
from asccl.evaluation.runner import run_evaluation


def test_the_runner_writes_each_psnr_value_s_cap_counts(results, tmp_path):  # noqa: F811
    config = EvalConfig(results=results["root"], out=tmp_path / "eval", metrics=("ground_truth",),
                        framing="none", grid_clips=0, methods=("perfect", "other"))  # fmt: skip
    outputs = run_evaluation(config)
    with open(outputs["scores"], newline="") as handle:
        rows = [
            (r["method"], r["emotion"], r["metric"], r["value"]) for r in csv.DictReader(handle)
        ]
    for method, capped in (("perfect", "3"), ("other", "0")):
        for row in ("happy", "average"):
            at = [r[:3] for r in rows].index((method, row, "psnr"))
            assert rows[at + 1] == (method, row, CAPPED_FRAMES, capped)
            assert rows[at + 2] == (method, row, PSNR_FRAMES, "3")
    # no other metric gets counts
    assert sum(r[2] == CAPPED_FRAMES for r in rows) == 4  # 2 methods x (happy, average)
