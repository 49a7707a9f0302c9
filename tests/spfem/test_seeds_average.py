"""The seeds' Average row: one set of emotions (``E*``) across every method and seed, its
footnote, and ``comparison.*`` from the same averages (:mod:`asccl.spfem.seeds`)."""

from __future__ import annotations

import csv
import math

import pytest

from asccl.spfem.experiment import ExperimentConfig
from asccl.spfem.seeds import seed_averages, write_seed_outputs

BASE, OURS = "ganmut", "ganmut_asccl"


def _seed(rows: dict[tuple[str, str], float], metric: str = "lme_mouth") -> dict:
    """One seed's scores.csv of setting ``single``: ``rows[(method, emotion)]`` and each
    method's ``average`` as scoring writes it: the plain mean over the emotions where every
    method has a finite value in this seed."""
    out = {("single", m, e, metric): v for (m, e), v in rows.items()}
    emotions = sorted({e for _, e in rows})
    common = [
        e for e in emotions if all(math.isfinite(rows.get((m, e), math.nan)) for m in (BASE, OURS))
    ]
    for m in (BASE, OURS):
        vals = [rows[(m, e)] for e in common]
        out[("single", m, "average", metric)] = sum(vals) / len(vals) if vals else math.nan
    return out


def _write(tmp_path, per_seed, caps=None):
    config = ExperimentConfig(out=tmp_path, models=("ganmut",), seeds=tuple(range(len(per_seed))))
    paths = write_seed_outputs(config, per_seed, *([] if caps is None else [caps]))
    with open(paths["comparison_csv"], newline="") as handle:
        rows = list(csv.DictReader(handle))
    return paths, rows


def _average_line(text: str) -> str:
    (line,) = [x for x in text.splitlines() if x.startswith("| Average")]
    return line


def test_an_emotion_missing_in_one_seed_leaves_the_average_of_every_seed(tmp_path):
    """The audit's case: sad has no baseline value in seed 1. Seed 0's own average covers
    happy and sad (0.125 / 0.08), seed 1's happy only (0.05 / 0.06): their mean (0.0875) is
    no average of the rows shown. Over E* = {happy}: 0.05 and 0.06 in both seeds, std 0."""
    seed0 = _seed(
        {(BASE, "happy"): 0.05, (OURS, "happy"): 0.06, (BASE, "sad"): 0.20, (OURS, "sad"): 0.10}
    )
    seed1 = _seed({(BASE, "happy"): 0.05, (OURS, "happy"): 0.06, (BASE, "sad"): math.nan,
                   (OURS, "sad"): 0.10})  # fmt: skip
    recomputed, notes = seed_averages([seed0, seed1])
    for scores in recomputed:
        assert scores[("single", BASE, "average", "lme_mouth")] == 0.05
        assert scores[("single", OURS, "average", "lme_mouth")] == 0.06
    assert "over happy only" in notes[("single", "lme_mouth")]
    assert "sad" in notes[("single", "lme_mouth")]

    paths, (row,) = _write(tmp_path, [seed0, seed1])
    # the csv writes 4 decimals: 0.05 and 0.06 exactly, std 0 (equal values)
    assert (row["baseline_mean"], row["baseline_std"]) == ("0.0500", "0.0000")
    assert (row["asccl_mean"], row["asccl_std"]) == ("0.0600", "0.0000")
    assert row["difference"] == "+0.0100" and row["asccl_better_seeds"] == "0"
    assert "over happy only" in row["note"]
    table = paths["seeds_table_single_md"].read_text()
    assert _average_line(table) == "| Average | **0.050** [1] | 0.060 [1] |"
    assert "[1] each seed's average over happy only" in table
    spread = paths["seeds_spread_single"].read_text()
    assert _average_line(spread) == "| Average | **0.050 ± 0.000** [1] | 0.060 ± 0.000 [1] |"
    assert "[1] each seed's average over happy only" in spread
    comparison = paths["comparison_md"].read_text()
    assert "| Mouth-LME↓ [1] | 0.050 ± 0.000 | 0.060 ± 0.000 |" in comparison
    assert "[1] each seed's average over happy only" in comparison
    assert "0.087" not in table + spread + comparison  # the old mean of mixed averages
    assert "0.088" not in table + spread + comparison


def test_all_emotions_in_every_seed_give_the_plain_mean_of_averages(tmp_path):
    """No emotion missing: the same numbers as each seed's own average, no footnote.
    Baseline happy 0.1/0.2/0.3, sad 0.3/0.4/0.5 -> seed averages 0.2, 0.3, 0.4: mean 0.3,
    sample std 0.1; +ASCCL happy 0.05 x3, sad 0.15/0.25/0.35 -> 0.1, 0.15, 0.2: mean 0.15,
    std 0.05. 0.3 - 0.15 = 0.15 > 0.1 (the larger std): +ASCCL better, in all 3 seeds."""
    per_seed = [
        _seed({(BASE, "happy"): bh, (BASE, "sad"): bs, (OURS, "happy"): 0.05, (OURS, "sad"): os_})
        for bh, bs, os_ in [(0.1, 0.3, 0.15), (0.2, 0.4, 0.25), (0.3, 0.5, 0.35)]
    ]
    recomputed, notes = seed_averages(per_seed)
    assert notes == {}
    for old, new in zip(per_seed, recomputed, strict=True):
        for m in (BASE, OURS):  # the same float64 values averaged: equal to ~1 ulp
            key = ("single", m, "average", "lme_mouth")
            assert new[key] == pytest.approx(old[key], rel=1e-15)
    paths, (row,) = _write(tmp_path, per_seed)
    assert (row["baseline_mean"], row["baseline_std"]) == ("0.3000", "0.1000")
    assert (row["asccl_mean"], row["asccl_std"]) == ("0.1500", "0.0500")
    assert (row["better"], row["asccl_better_seeds"], row["note"]) == ("+ASCCL", "3", "")
    table = paths["seeds_table_single_md"].read_text()
    assert _average_line(table) == "| Average | 0.300 | **0.150** |"
    assert "[1]" not in table + paths["comparison_md"].read_text()


def test_no_emotion_in_every_seed_gives_no_average(tmp_path):
    """Happy only in seed 0, sad only in seed 1: each seed has its own average, but over no
    common emotion; the seeds' Average is '-' with a footnote and no comparison row."""
    seed0 = _seed({(BASE, "happy"): 0.1, (OURS, "happy"): 0.2})
    seed1 = _seed({(BASE, "sad"): 0.3, (OURS, "sad"): 0.4})
    paths, rows = _write(tmp_path, [seed0, seed1])
    assert rows == []
    table = paths["seeds_table_single_md"].read_text()
    assert _average_line(table) == "| Average | - [1] | - [1] |"
    assert "[1] no average: no emotion has a value of every method in every seed" in table


def test_a_seed_average_that_left_out_a_shown_emotion_gives_no_average(tmp_path):
    """Seed 1 shows happy and sad for both methods, but its scoring averaged happy alone
    (sad over different clips: not comparable). Which emotion it left out is not in
    scores.csv, so the seeds' Average is '-' with a footnote naming the seed."""
    seed0 = _seed(
        {(BASE, "happy"): 0.1, (OURS, "happy"): 0.2, (BASE, "sad"): 0.3, (OURS, "sad"): 0.4}
    )
    seed1 = _seed(
        {(BASE, "happy"): 0.1, (OURS, "happy"): 0.2, (BASE, "sad"): 0.3, (OURS, "sad"): 0.4}
    )
    seed1[("single", BASE, "average", "lme_mouth")] = 0.1
    seed1[("single", OURS, "average", "lme_mouth")] = 0.2
    paths, rows = _write(tmp_path, [seed0, seed1])
    assert rows == []
    table = paths["seeds_table_single_md"].read_text()
    assert _average_line(table) == "| Average | - [1] | - [1] |"
    assert "[1] no average over seeds: seed 1's own average leaves out an emotion" in table


def test_a_method_missing_from_a_seed_is_no_mixed_average(tmp_path):
    """+ASCCL has no results in seed 1 (seed 1's scoring averaged the baseline alone, as
    scoring does over the methods present): E* is empty, the Average '-' with the 'no
    emotion in every seed' footnote, not the one blaming seed 1's own average."""
    seed0 = _seed({(BASE, "happy"): 0.1, (OURS, "happy"): 0.2})
    seed1 = {
        ("single", BASE, "happy", "lme_mouth"): 0.3,
        ("single", BASE, "average", "lme_mouth"): 0.3,
    }
    _, notes = seed_averages([seed0, seed1])
    assert notes == {("single", "lme_mouth"): "no average: no emotion has a value of every "
                     "method in every seed"}  # fmt: skip


def test_means_that_round_to_zero_print_without_a_sign(tmp_path):
    """A mean of -0.0004 prints ``0.000`` in the spread table and ``comparison.md``, as the
    per-seed tables print it (``format_value``): ``-0.000`` would read as a different value.
    Seeds -0.0003 and -0.0005 (baseline) and 0.0002, 0.0004 (+ASCCL) on one emotion: means
    -0.0004 and 0.0003, difference +0.0007, which prints ``+0.001``."""
    metric = "lse_c"
    seeds = [
        _seed({(BASE, "happy"): -0.0003, (OURS, "happy"): 0.0002}, metric),
        _seed({(BASE, "happy"): -0.0005, (OURS, "happy"): 0.0004}, metric),
    ]
    paths, _ = _write(tmp_path, seeds)
    spread = paths["seeds_spread_single"].read_text()
    comparison = paths["comparison_md"].read_text()
    assert "-0.000" not in spread + comparison
    assert _average_line(spread).startswith("| Average | 0.000 ± 0.000 | 0.000 ± 0.000")
    assert "| 0.000 ± 0.000 | 0.000 ± 0.000 | +0.001 |" in comparison


def _psnr_seeds(capped: int | None) -> tuple[list[dict], list[dict] | None]:
    """Two seeds' PSNR of setting ``single``, happy and sad, 20 frames per row: baseline
    happy 30/31, sad 28/29 (averages 29, 30); +ASCCL happy 37/38, sad 33/34 (averages 35,
    36); and their cap counts as scores.csv gives them (:func:`read_seed_caps`), each
    average's the sum of its emotions'. Seed 1's +ASCCL happy has ``capped`` frames at the
    100 dB cap (``None``: no counts, a scores.csv of an older asccl)."""
    values = [{(BASE, "happy"): 30.0, (BASE, "sad"): 28.0, (OURS, "happy"): 37.0,
               (OURS, "sad"): 33.0},
              {(BASE, "happy"): 31.0, (BASE, "sad"): 29.0, (OURS, "happy"): 38.0,
               (OURS, "sad"): 34.0}]  # fmt: skip
    per_seed = [_seed(rows, "psnr") for rows in values]
    if capped is None:
        return per_seed, None
    caps = []
    for i in range(len(values)):
        seed = {}
        for m in (BASE, OURS):
            k = {e: capped if (i, m, e) == (1, OURS, "happy") else 0 for e in ("happy", "sad")}
            seed |= {("single", m, e): (k[e], 20) for e in k}
            seed[("single", m, "average")] = (sum(k.values()), 40)
        caps.append(seed)
    return per_seed, caps


def _row_line(text: str, row: str) -> str:
    (line,) = [x for x in text.splitlines() if x.startswith(f"| {row} |")]
    return line


def test_capped_psnr_frames_in_one_seed_leave_the_psnr_rows_unmarked(tmp_path):
    """+ASCCL leads by 7 dB on happy and 6 dB on average (spread 0.707: sample std of two
    values 1 apart), a clear winner, but seed 1's +ASCCL happy has 2 frames at the cap: the
    happy and Average rows mark no winner and footnote the counts summed over both seeds
    (happy 2 of 40; the Average over happy and sad, 2 of 80); sad has none: still marked.
    The comparison names no better variant and counts no seeds."""
    paths, (row,) = _write(tmp_path, *_psnr_seeds(2))
    table = paths["seeds_table_single_md"].read_text()
    assert _row_line(table, "Happy") == "| Happy | 30.500 [1] | 37.500 [1] |"
    assert _row_line(table, "Sad") == "| Sad | 28.500 | **33.500** |"
    assert _average_line(table) == "| Average | 29.500 [2] | 35.500 [2] |"
    note = ("PSNR↑: frames identical to the ground truth (infinite PSNR) are counted as 100 dB "
            "(ganmut {} of {n}, ganmut_asccl {} of {n}; summed over seeds 0, 1); the cap can "
            "decide the ranking, so no winner is marked")  # fmt: skip
    assert f"[1] {note.format(0, 2, n=40)}" in table
    assert f"[2] {note.format(0, 2, n=80)}" in table
    spread = paths["seeds_spread_single"].read_text()
    assert _average_line(spread) == "| Average | 29.500 ± 0.707 [2] | 35.500 ± 0.707 [2] |"
    assert "**" not in _row_line(spread, "Happy") and "**" in _row_line(spread, "Sad")
    assert (row["better"], row["asccl_better_seeds"]) == ("not ranked", "-")
    assert row["note"] == note.format(0, 2, n=80)
    comparison = paths["comparison_md"].read_text()
    assert "| PSNR↑ [1] | 29.500 ± 0.707 | 35.500 ± 0.707 | +6.000 | not ranked | - |" in comparison
    assert f"[1] {note.format(0, 2, n=80)}" in comparison


def test_the_cap_footnote_names_the_seeds_its_counts_come_from(tmp_path):
    """Seed 0's scores.csv predates the counts (an older asccl), seed 1's has 2 frames at
    the cap: the footnote sums seed 1 only (happy 2 of 20 frames, not 40) and says seed 0 is
    not in the sums, in the tables and in the comparison."""
    per_seed, caps = _psnr_seeds(2)
    paths, (row,) = _write(tmp_path, per_seed, [{}, caps[1]])
    note = ("(ganmut 0 of {n}, ganmut_asccl 2 of {n}; summed over seeds 1; seed 0: scores.csv "
            "without the counts (an older asccl), not in the sums)")  # fmt: skip
    table = paths["seeds_table_single_md"].read_text()
    assert note.format(n=20) in table and note.format(n=40) in table
    assert "summed over seeds 0" not in table
    assert note.format(n=40) in row["note"] and row["better"] == "not ranked"
    assert note.format(n=40) in paths["comparison_md"].read_text()


@pytest.mark.parametrize("capped", [0, None], ids=["no-capped-frame", "older-scores-csv"])
def test_psnr_without_capped_frames_keeps_its_winner(tmp_path, capped):
    """The same numbers with no frame at the cap, or from a scores.csv without the counts
    (nothing says a frame was capped): +ASCCL wins every row, no footnote."""
    paths, (row,) = _write(tmp_path, *_psnr_seeds(capped))
    table = paths["seeds_table_single_md"].read_text()
    assert _row_line(table, "Happy") == "| Happy | 30.500 | **37.500** |"
    assert _average_line(table) == "| Average | 29.500 | **35.500** |"
    assert (row["better"], row["asccl_better_seeds"], row["note"]) == ("+ASCCL", "2", "")
    assert "[1]" not in table + paths["comparison_md"].read_text()
