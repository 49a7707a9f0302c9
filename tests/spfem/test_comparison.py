"""``comparison.{md,csv}`` (step 3 of ``asccl experiment``) from a hand-written
``scores.csv``: the ``better`` column and the printed values."""

from __future__ import annotations

import csv
from types import SimpleNamespace

import pytest

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


def _psnr_scores(path, capped: int | None):
    """Baseline PSNR average 30.0, +ASCCL 37.0 (30 dB on 18 of 20 frames, 100 dB on 2:
    (18 * 30 + 2 * 100) / 20 = 37); ``capped``: +ASCCL's frames at the cap in the columns
    the evaluation writes (``None``: without those columns, an older asccl's scores.csv)."""
    if capped is None:
        rows = ["setting,method,emotion,metric,value", "single,ganmut,average,psnr,30.0",
                "single,ganmut_asccl,average,psnr,37.0"]  # fmt: skip
    else:
        rows = ["setting,method,emotion,metric,value,psnr_capped_frames,psnr_frames",
                "single,ganmut,average,psnr,30.0,0,20", "single,ganmut,average,ssim,0.8,,",
                f"single,ganmut_asccl,average,psnr,37.0,{capped},20",
                "single,ganmut_asccl,average,ssim,0.9,,"]  # fmt: skip
    path.write_text("\n".join(rows) + "\n")
    return path


def test_a_psnr_average_with_capped_frames_names_no_better_variant(tmp_path):
    paths = compare(_config(tmp_path), _psnr_scores(tmp_path / "scores.csv", 2))
    with open(paths["comparison_csv"], newline="") as handle:
        rows = {r["metric"]: r for r in csv.DictReader(handle)}
    assert rows["SSIM↑"]["better"] == "+ASCCL"  # no PSNR column there: ranked as ever
    row = rows["PSNR↑"]
    note = ("PSNR↑: frames identical to the ground truth (infinite PSNR) are counted as 100 dB "
            "(ganmut 0 of 20, ganmut_asccl 2 of 20); the cap can decide the ranking, so no "
            "winner is marked")  # fmt: skip
    assert (row["metric"], row["better"], row["note"]) == ("PSNR↑", "not ranked", note)
    md = paths["comparison_md"].read_text()
    assert "| ganmut | single | PSNR↑ [1] | 30.000 | 37.000 | +7.000 | not ranked |" in md
    assert f"[1] {note}" in md


@pytest.mark.parametrize("capped", [0, None], ids=["no-capped-frame", "older-scores-csv"])
def test_a_psnr_average_without_capped_frames_keeps_its_better_variant(tmp_path, capped):
    paths = compare(_config(tmp_path), _psnr_scores(tmp_path / "scores.csv", capped))
    with open(paths["comparison_csv"], newline="") as handle:
        row = next(r for r in csv.DictReader(handle) if r["metric"] == "PSNR↑")
    assert (row["better"], row["note"]) == ("+ASCCL", "")
    md = paths["comparison_md"].read_text()
    assert "| ganmut | single | PSNR↑ | 30.000 | 37.000 | +7.000 | +ASCCL |" in md
    assert "[1]" not in md
