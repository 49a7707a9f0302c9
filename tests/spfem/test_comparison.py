"""``comparison.{md,csv}`` (step 3 of ``asccl experiment``) from a hand-written
``scores.csv``: the ``better`` column and the printed values."""

from __future__ import annotations

import csv
from types import SimpleNamespace

from asccl.spfem.comparison import compare


def _config(out):
    evaluation = SimpleNamespace(real_set="sources", use_distribution=False)
    return SimpleNamespace(models=("ganmut",), out=out, eval=evaluation, test_speakers=("W903",),
                           asccl_weight=1.0, seed=0)  # fmt: skip


def _scores(path, values):
    rows = ["setting,method,emotion,metric,value"]
    rows += [f"single,{method},average,{metric},{value!r}" for (method, metric), value in
             values.items()]  # fmt: skip
    path.write_text("\n".join(rows) + "\n")
    return path


def test_values_equal_at_three_decimals_are_a_tie_even_across_zero(tmp_path):
    """+0.0004 and -0.0004 both print as 0.000 (3 decimals, as in the table): a tie, not a
    win for either, and neither prints as -0.000; 0.9 against 0.8 is a clear win."""
    values = {("ganmut", "csim"): -0.0004, ("ganmut_asccl", "csim"): 0.0004,
              ("ganmut", "ssim"): 0.8, ("ganmut_asccl", "ssim"): 0.9}  # fmt: skip
    paths = compare(_config(tmp_path), _scores(tmp_path / "scores.csv", values))
    with open(paths["comparison_csv"], newline="") as handle:
        better = {r["metric"]: r["better"] for r in csv.DictReader(handle)}
    assert better == {"CSIM↑": "tie", "SSIM↑": "+ASCCL"}
    md = paths["comparison_md"].read_text()
    assert "| ganmut | single | CSIM↑ | 0.000 | 0.000 | +0.001 | tie |" in md
    assert "-0.000" not in md
