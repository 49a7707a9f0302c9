import math

import pytest

from asccl.evaluation.tables import (
    best_methods,
    format_value,
    plot_scores,
    qualitative_grid,
    table_rows,
    to_csv,
    to_latex,
    to_markdown,
    write_tables,
)

NAN = math.nan
# hand-made numbers: baseline better on FAD (lower) in happy, asccl better on CSIM (higher)
SCORES = {
    "baseline": {
        "sad": {"fad": 2.0, "lse_d": 9.0, "csim": 0.80},
        "happy": {"fad": 1.0, "lse_d": 9.5, "csim": 0.70},
        "average": {"fad": 1.5, "lse_d": 9.25, "csim": 0.75},
    },
    "asccl": {
        "sad": {"fad": 1.5, "lse_d": 9.0, "csim": 0.90},
        "happy": {"fad": 3.0, "lse_d": NAN, "csim": 0.95},
        "average": {"fad": 2.25, "lse_d": 9.0, "csim": 0.925},
    },
}
METRICS = ["fad", "lse_d", "csim"]


def test_rows_are_emotions_in_paper_order_then_average():
    assert table_rows(SCORES) == ["happy", "sad", "average"]


def test_best_methods_respects_direction_ties_and_nan():
    assert best_methods(SCORES, "happy", "fad") == {"baseline"}  # lower is better
    assert best_methods(SCORES, "happy", "csim") == {"asccl"}  # higher is better
    assert best_methods(SCORES, "sad", "lse_d") == set()  # a tie: no winner
    assert best_methods(SCORES, "happy", "lse_d") == set()  # a method without a value: none
    with pytest.raises(ValueError, match="unknown metric"):
        best_methods(SCORES, "happy", "bleu")  # (psnr is a ground-truth metric now)


def test_no_winner_below_the_displayed_precision_or_the_seed_spread():
    """0.9994 and 0.9986 both show as 0.999 at 3 decimals: no winner (issue #19); at 4
    decimals they differ. A spread of 0.001 (e.g. over seeds) swallows their 0.0008."""
    scores = {"a": {"happy": {"csim": 0.9994}}, "b": {"happy": {"csim": 0.9986}}}
    assert best_methods(scores, "happy", "csim") == set()
    assert best_methods(scores, "happy", "csim", digits=4) == {"a"}
    spread = {("b", "happy", "csim"): 0.001}
    assert best_methods(scores, "happy", "csim", digits=4, spread=spread) == set()
    md = to_markdown(scores, ["csim"])
    assert "**" not in md and md.count("0.999") == 2
    assert "*" not in to_csv(scores, ["csim"])


def test_values_that_round_to_zero_print_and_compare_alike():
    """+0.0004 and -0.0004 both round to zero at 3 decimals: the table prints ``0.000``
    for both (no ``-0.000``) and marks no winner; at 4 decimals they differ."""
    scores = {"trained": {"average": {"gap": 0.0004}}, "untrained": {"average": {"gap": -0.0004}}}
    assert best_methods(scores, "average", "gap") == set()
    assert best_methods(scores, "average", "gap", digits=4) == {"trained"}
    md = to_markdown(scores, ["gap"])
    assert "-0.000" not in md and md.count("| 0.000") == 2 and "**" not in md
    assert "-0.000" not in to_csv(scores, ["gap"])
    assert format_value(-0.0004) == "0.000" and format_value(-0.0004, signed=True) == "+0.000"
    assert format_value(-0.0006) == "-0.001" and format_value(0.0006, signed=True) == "+0.001"
    assert format_value(math.nan) == "-" and format_value(-0.0, 2) == "0.00"


def test_caption_footnotes_and_rows_not_comparable():
    notes = {("asccl", "happy", "lse_d"): "no clip scored", ("baseline", "average", "fad"):
             "over sad only", ("asccl", "average", "fad"): "over sad only"}  # fmt: skip
    comparable = {("happy", "csim"), ("sad", "fad")}  # happy FAD: other clips, say
    md = to_markdown(SCORES, METRICS, caption="inter_id: FAD (real set: sources)", notes=notes,
                     comparable=comparable)  # fmt: skip
    lines = md.splitlines()
    assert lines[0] == "**inter_id: FAD (real set: sources)**"
    rows = [[c.strip() for c in line.strip("|").split("|")] for line in lines if line[:1] == "|"]
    happy, sad, average = rows[2:]
    assert happy[1] == "1.000" and happy[6] == "**0.950**"  # FAD not comparable there
    assert happy[5] == "- [1]" and average[1] == "1.500 [2]" and average[4] == "2.250 [2]"
    assert sad[4] == "**1.500**"
    assert "**" not in " ".join(average)  # no average row is comparable here
    assert lines[-2:] == ["[1] no clip scored  ", "[2] over sad only  "]
    tex = to_latex(SCORES, METRICS, caption="x", notes=notes, comparable=comparable)
    assert r"-$^{1}$" in tex and r"\par{\footnotesize $^{2}$ over sad only}" in tex
    assert tex.count("{") == tex.count("}")


def test_markdown_layout_and_bold_marks():
    lines = to_markdown(SCORES, METRICS).splitlines()
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    assert header == ["Emotion", "baseline FAD↓", "baseline LSE-D↓", "baseline CSIM↑",
                      "asccl FAD↓", "asccl LSE-D↓", "asccl CSIM↑"]  # fmt: skip
    rows = [[c.strip() for c in line.strip("|").split("|")] for line in lines[2:]]
    assert [r[0] for r in rows] == ["Happy", "Sad", "Average"]
    happy = rows[0]
    assert happy[1] == "**1.000**" and happy[4] == "3.000"
    assert happy[3] == "0.700" and happy[6] == "**0.950**"
    assert happy[5] == "-"  # missing value


def test_csv_marks_best_with_star():
    lines = to_csv(SCORES, METRICS).splitlines()
    assert lines[0].split(",") == ["emotion"] + ["baseline"] * 3 + ["asccl"] * 3
    assert lines[1].split(",") == ["", *METRICS, *METRICS]
    assert lines[2].split(",") == ["happy", "1.000*", "9.500", "0.700", "3.000", "-", "0.950*"]
    assert lines[-1].startswith("average,1.500*")


def test_latex_structure():
    tex = to_latex(SCORES, METRICS, caption="MEAD inter_id")
    assert tex.count(r"\begin{tabular}{lccc|ccc}") == 1
    assert r"\multicolumn{3}{c}{baseline} & \multicolumn{3}{c}{asccl}" in tex
    assert r"\cmidrule(lr){2-4} \cmidrule(lr){5-7}" in tex
    assert r"\textbf{1.000}" in tex and r"inter\_id" in tex
    body = [line for line in tex.splitlines() if line.endswith(r"\\")]
    assert all(line.count("&") == 6 for line in body[1:])  # label + 2 x 3 metrics
    assert tex.index(r"\midrule" + "\nAverage") > 0  # average separated by a rule
    for a, b in ((r"\begin{table}", r"\end{table}"), (r"\begin{tabular}", r"\end{tabular}")):
        assert tex.count(a) == tex.count(b) == 1
    assert tex.count("{") == tex.count("}")


def test_write_tables_and_plots(tmp_path):
    paths = write_tables(SCORES, METRICS, tmp_path / "tables" / "inter_id")
    assert [p.name for p in paths] == ["inter_id.md", "inter_id.csv", "inter_id.tex"]
    png = plot_scores(SCORES, METRICS, tmp_path / "plot.png", title="inter_id")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_plot_scores_draws_the_given_error_bars(tmp_path, monkeypatch):
    """errors[(method, row, metric)] reach matplotlib's bar(yerr=) for their bars only;
    a missing or NaN one is no bar, not a NaN that hides the plot."""
    from matplotlib.axes import Axes

    drawn = []
    bar = Axes.bar

    def spy(self, x, height, *args, **kwargs):
        drawn.append((kwargs.get("label"), kwargs.get("yerr")))
        return bar(self, x, height, *args, **kwargs)

    monkeypatch.setattr(Axes, "bar", spy)
    method, row = next(iter(SCORES)), next(iter(SCORES[next(iter(SCORES))]))
    metric = METRICS[0]
    errors = {(method, row, metric): 0.25, (method, "average", METRICS[1]): math.nan}
    plot_scores(SCORES, METRICS, tmp_path / "e.png", errors=errors)
    rows = list(table_rows(SCORES))
    first = next(yerr for label, yerr in drawn if label == method)  # the first metric's bars
    assert first[rows.index(row)] == 0.25
    assert all(e == 0.0 for i, e in enumerate(first) if i != rows.index(row))
    assert all(math.isfinite(e) for _, yerr in drawn for e in yerr)
    drawn.clear()
    plot_scores(SCORES, METRICS, tmp_path / "plain.png")
    assert all(yerr is None for _, yerr in drawn)


def test_the_row_labels_column_takes_its_own_header(tmp_path):
    md, csv, tex = write_tables(SCORES, METRICS, tmp_path / "t", row_header="Stage_1")
    assert md.read_text().splitlines()[0].startswith("| Stage_1 | baseline FAD")
    assert csv.read_text().splitlines()[0].startswith("stage_1,baseline,")
    assert "\nStage\\_1 & FAD" in tex.read_text()
    assert md.read_text().replace("| Stage_1 |", "| Emotion |", 1) == to_markdown(SCORES, METRICS)


def test_qualitative_grid(tmp_path):
    import numpy as np

    frame = np.zeros((16, 16, 3), np.uint8)
    rows = [[None, frame, frame, frame], [frame, frame, None, frame]]
    cols = ["Reference", "Source", "Baseline", "+ASCCL"]
    path = qualitative_grid(rows, cols, tmp_path / "grid.png", ["a", "b"])
    assert path.stat().st_size > 0
    with pytest.raises(ValueError, match="columns"):
        qualitative_grid([[frame]], cols, tmp_path / "bad.png")


@pytest.mark.parametrize(
    ("framing", "csim_words", "lse_words"),
    [
        ("none", "resized to 112 (given as aligned crops)", "resized to 224, 25 fps (given as"),
        ("track", "5-point aligned 112x112", "face-track crops (crop_scale 0.4"),
        ("center", "centre square resized to 112", "centre square resized to 224"),
    ],
)
def test_caption_names_the_framing_the_run_used(framing, csim_words, lse_words):
    """A table's caption says how each network's input was made, from the run's own
    framing setting (it once printed a fixed "centre square" text whatever the framing)."""
    from asccl.evaluation.config import EvalConfig
    from asccl.evaluation.report import table_caption

    caption = table_caption(EvalConfig(framing=framing), "inter_id")
    assert csim_words in caption and lse_words in caption
    assert "real set: sources" in caption
    other = {"none", "track", "center"} - {framing}
    assert not any(table_caption(EvalConfig(framing=f), "inter_id") == caption for f in other)
