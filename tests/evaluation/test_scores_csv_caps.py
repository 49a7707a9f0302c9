"""``asccl evaluate``'s ``scores.csv`` carries the PSNR cap counts (columns
``psnr_capped_frames`` and ``psnr_frames``, filled on PSNR rows), on the runner's
ground-truth clips of ``test_ground_truth_runner``: ``perfect`` is bit-equal to its ground
truth on all 3 frames (each at the 100 dB cap), ``other`` differs on every frame."""

from __future__ import annotations

import csv

from tests.evaluation.test_ground_truth_runner import results  # noqa: F401  (the fixture)

from asccl.evaluation.config import GROUND_TRUTH_METRICS, EvalConfig
from asccl.evaluation.ground_truth_scoring import CAPPED_FRAMES, PSNR_FRAMES
from asccl.evaluation.runner import run_evaluation


def test_the_runner_writes_each_psnr_value_s_cap_counts(results, tmp_path):  # noqa: F811
    config = EvalConfig(results=results["root"], out=tmp_path / "eval", metrics=("ground_truth",),
                        framing="none", grid_clips=0, methods=("perfect", "other"))  # fmt: skip
    outputs = run_evaluation(config)
    with open(outputs["scores"], newline="") as handle:
        rows = list(csv.DictReader(handle))
    counts = {(r["method"], r["emotion"], r["metric"]): (r[CAPPED_FRAMES], r[PSNR_FRAMES])
              for r in rows}  # fmt: skip
    for row in ("happy", "average"):
        assert counts[("perfect", row, "psnr")] == ("3", "3")
        assert counts[("other", row, "psnr")] == ("0", "3")
        for metric in ("lme_mouth", "lme_face", "ssim"):  # other metrics: empty cells
            assert counts[("perfect", row, metric)] == counts[("other", row, metric)] == ("", "")
    assert len(rows) == 2 * 2 * len(GROUND_TRUTH_METRICS)  # one per method, row and metric
