"""Vote analysis: statistics against references, attention exclusion, tables, report."""

import json
import math

import numpy as np
import pytest
from scipy import stats

from asccl.study.analysis import (
    agreement,
    agreement_detail,
    binomial_test_two_sided,
    exclude_failed_attention,
    fleiss_kappa,
    share_table,
    to_csv,
    to_latex,
    to_markdown,
    wilson_interval,
    write_report,
)
from asccl.study.store import StudyStore

PAIR = ("baseline", "asccl")


@pytest.mark.parametrize(("k", "n", "p"), [(0, 0, 0.5), (3, 10, 0.5), (17, 20, 0.5),
                                           (50, 100, 0.5), (0, 7, 0.3), (9, 40, 0.2),
                                           (123, 200, 0.5), (5, 5, 0.5)])  # fmt: skip
def test_binomial_test_matches_scipy(k, n, p):
    expected = 1.0 if n == 0 else stats.binomtest(k, n, p).pvalue
    assert binomial_test_two_sided(k, n, p) == pytest.approx(expected, rel=1e-9)


@pytest.mark.parametrize(("k", "n"), [(0, 10), (3, 10), (10, 10), (57, 100), (1, 3)])
def test_wilson_matches_scipy(k, n):
    ci = stats.binomtest(k, n).proportion_ci(confidence_level=0.95, method="wilson")
    low, high = wilson_interval(k, n, z=stats.norm.ppf(0.975))
    assert (low, high) == pytest.approx((ci.low, ci.high), abs=1e-12)
    assert wilson_interval(0, 0) == (0.0, 1.0)
    with pytest.raises(ValueError):
        wilson_interval(4, 3)


def test_fleiss_kappa_textbook_example():
    # The worked example of Fleiss' kappa (10 items, 14 raters, 5 categories), kappa 0.210:
    # P-bar = 0.378, P-bar-e = 0.213.
    table = [[0, 0, 0, 0, 14], [0, 2, 6, 4, 2], [0, 0, 3, 5, 6], [0, 3, 9, 2, 0],
             [2, 2, 8, 1, 1], [7, 7, 0, 0, 0], [3, 2, 6, 3, 0], [2, 5, 3, 2, 2],
             [6, 5, 2, 1, 0], [0, 2, 2, 3, 7]]  # fmt: skip
    assert fleiss_kappa(table) == pytest.approx(0.2099, abs=1e-4)


def test_fleiss_kappa_by_hand():
    # Two raters always agree (P_i = 1, p = (.5, .5), Pe = .5): kappa 1; always split: -1.
    assert fleiss_kappa([[2, 0], [0, 2]]) == 1.0
    assert fleiss_kappa([[1, 1], [1, 1]]) == -1.0
    # 3 raters, 2 items: rows (3,0), (1,2): P = (1, 1/3), p = (4/6, 2/6), Pe = 5/9;
    # kappa = (2/3 - 5/9) / (4/9) = 1/4.
    assert fleiss_kappa(np.array([[3, 0], [1, 2]])) == pytest.approx(0.25)
    assert math.isnan(fleiss_kappa([[2, 0], [2, 0]]))
    with pytest.raises(ValueError, match="same number"):
        fleiss_kappa([[2, 0], [1, 0]])


def vote(token, item, emotion, question, method, methods=PAIR, expected=None, check_q=None):
    return {
        "token": token,
        "item_id": item,
        "emotion": emotion,
        "question": question,
        "method": method,
        "methods": methods,
        "expected": expected,
        "check_question": check_q,
    }


def check_vote(token, method):
    return vote(
        token,
        "check/1",
        "happy",
        "emotion",
        method,
        ("sources", "references"),
        "references",
        "emotion",
    )


def test_exclude_failed_attention():
    votes = [
        check_vote("good", "references"),
        vote(
            "good",
            "check/1",
            "happy",
            "realism",
            "sources",
            ("sources", "references"),
            "references",
            "emotion",
        ),
        check_vote("bad", "sources"),
        vote("good", "i1", "happy", "realism", "asccl"),
        vote("bad", "i1", "happy", "realism", "asccl"),
        vote("nochecks", "i1", "happy", "realism", "baseline"),
    ]
    kept, failed = exclude_failed_attention(votes)
    assert failed == {"bad"}
    assert [(v["token"], v["item_id"]) for v in kept] == [("good", "i1"), ("nochecks", "i1")]
    kept, failed = exclude_failed_attention(votes, checks={}, min_pass=1.0)
    assert failed == set() and len(kept) == len(votes)


def test_share_table_counts_and_average():
    votes = [
        vote(f"r{i}", "h1", "happy", "realism", "asccl" if i < 3 else "baseline") for i in range(4)
    ]
    votes += [vote(f"r{i}", "a1", "angry", "realism", "asccl") for i in range(2)]
    votes += [vote("r0", "a1", "angry", "mouth", "baseline"), check_vote("r0", "references")]
    table = share_table(votes)
    assert list(table) == ["angry", "happy", "average"]
    assert list(table["happy"]) == ["realism", "mouth"]
    cell = table["happy"]["realism"]
    assert cell.counts == (1, 3) and cell.n == 4 and cell.shares == (0.25, 0.75)
    assert cell.p_value == pytest.approx(stats.binomtest(3, 4).pvalue)
    assert table["average"]["realism"].counts == (1, 5)
    assert table["happy"]["mouth"].n == 0 and math.isnan(table["happy"]["mouth"].shares[0])
    md = to_markdown(table)
    assert md.splitlines()[0] == (
        "| Emotion | Realism baseline | Realism asccl | Mouth baseline | Mouth asccl |"
    )
    assert "| Happy | 25.0 | **75.0** | - | - |" in md
    assert "| Average | 16.7 | **83.3** | **100.0** | 0.0 |" in md
    csv_lines = to_csv(table).splitlines()
    assert csv_lines[:2] == [
        "emotion,realism,realism,mouth,mouth",
        ",baseline,asccl,baseline,asccl",
    ]
    assert csv_lines[3] == "happy,25.0,75.0*,-,-"
    tex = to_latex(table, caption="Realism & co")
    assert r"\multicolumn{2}{c}{Realism}" in tex and r"Happy & 25.0 & \textbf{75.0}" in tex
    assert r"Realism \& co" in tex and tex.count(r"\midrule") == 2
    assert share_table([]) == {}


def test_write_report_from_store(tmp_path):
    from tests.study.test_store import KEY, make_study

    store = StudyStore(tmp_path / "study.sqlite", KEY)
    store.load_study(make_study(4))
    tokens = store.create_tokens(5)
    for n, token in enumerate(tokens):
        for item in store.item_ids():
            left, _ = store.assignment(token, item)
            for q in store.questions:
                if item.startswith("check/"):  # the last rater fails the check
                    good = (left == "references") != (n == 4)
                    choice = "left" if good else "right"
                else:  # everyone but one prefers asccl
                    choice = "left" if (left == "asccl") == (n != 0) else "right"
                store.record_vote(token, item, q, choice)
    paths = write_report(store.path, tmp_path / "report")
    assert {
        "markdown",
        "csv",
        "latex",
        "stats",
        "summary",
        "plot_realism",
        "plot_emotion",
        "plot_mouth",
    } == set(paths)
    for path in paths.values():
        assert path.is_file() and path.stat().st_size > 0
    summary = json.loads(paths["summary"].read_text())
    assert summary["raters"] == 5 and summary["raters_excluded"] == 1
    assert summary["votes_analysed"] == 4 * 4 * 3
    # 4 raters: 3 agree on asccl, 1 on baseline, on every item: P_i = 1/2, Pe = 10/16
    assert summary["fleiss_kappa"]["realism"] == pytest.approx(-1 / 3, abs=1e-4)
    assert "| Happy | 25.0 | **75.0** |" in paths["markdown"].read_text()
    assert paths["plot_mouth"].read_bytes()[:4] == b"\x89PNG"
    for token in tokens:  # invite tokens are secrets; no report file holds one
        assert all(token not in p.read_text() for k, p in paths.items() if "plot" not in k)
    # the same from a list of votes
    again = write_report(store.export_votes(), tmp_path / "again", min_pass=0.0)
    assert json.loads(again["summary"].read_text())["raters_excluded"] == 0


def test_write_report_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="study database not found"):
        write_report(tmp_path / "missing.sqlite", tmp_path / "out")
    with pytest.raises(ValueError, match="no votes"):
        write_report([], tmp_path / "out")


@pytest.mark.parametrize("n", [1, 10, 57, 400])
def test_wilson_uses_the_exact_95_quantile(n):
    """k = 0 has the closed form (0, z²/(n + z²)); z = 1.959963984540054 (the standard
    normal's 97.5 % quantile to double precision). 1.96 would be off by about
    2·z·dz·n/(n + z²)² = 7e-6 at n = 10 (dz = 3.6e-5), far above the 1e-12 asked (a few
    rounding steps)."""
    z = 1.959963984540054
    assert wilson_interval(0, n) == pytest.approx((0.0, z * z / (n + z * z)), abs=1e-12)
    assert wilson_interval(n, n) == pytest.approx((n / (n + z * z), 1.0), abs=1e-12)


def _subset_votes() -> list[dict]:
    """10 items, 4 raters on all (items 0-4: all asccl; 5-9: 2-2), a 5th on items 4-9 only
    (asccl)."""
    votes = []
    for r in range(4):
        for i in range(10):
            method = "asccl" if i < 5 or r < 2 else "baseline"
            votes.append(_vote(f"r{r}", f"happy/c{i}", method))
    votes += [_vote("r4", f"happy/c{i}", "asccl") for i in range(4, 10)]
    return votes


def _vote(token: str, item: str, method: str) -> dict:
    return dict(token=token, item_id=item, emotion="happy", question="realism", method=method,
                methods=PAIR, expected=None, check_question=None)  # fmt: skip


def test_kappa_says_over_how_many_items(tmp_path):
    """Kappa needs one rating count per item: with the 5th rater, only the 6 items with 5
    ratings count, and the report says so. By hand over those 6: item 4 is 5-0 (P_i = 1),
    items 5-9 are 3-2 (P_i = (9 + 4 - 5)/20 = 0.4): P̄ = 0.5; asccl has 20 of 30 ratings:
    Pe = 4/9 + 1/9 = 5/9; kappa = (1/2 - 5/9)/(4/9) = -1/8."""
    detail = agreement_detail(_subset_votes(), "realism", PAIR)
    assert (detail.items_used, detail.items_rated, detail.ratings) == (6, 10, 5)
    assert detail.kappa == pytest.approx(-1 / 8, abs=1e-12)
    assert agreement(_subset_votes(), "realism", PAIR) == detail.kappa
    paths = write_report(_subset_votes(), tmp_path / "report")
    summary = json.loads(paths["summary"].read_text())
    assert summary["fleiss_kappa"] == {"realism": -0.125}
    assert summary["fleiss_kappa_items"] == {"realism": [6, 10]}
    md = paths["markdown"].read_text()
    assert "Fleiss' kappa: realism -0.125." in md
    assert "realism: Fleiss' kappa over 6 of 10 items (those with 5 ratings)" in md
    # the 4 full raters alone: every item used, no note. By hand: items 0-4 P_i = 1, 5-9
    # P_i = (4 + 4 - 4)/12 = 1/3: P̄ = 2/3; asccl 30 of 40: Pe = 10/16; kappa = 1/9
    full = [v for v in _subset_votes() if v["token"] != "r4"]
    detail = agreement_detail(full, "realism", PAIR)
    assert (detail.items_used, detail.items_rated, detail.ratings) == (10, 10, 4)
    assert detail.kappa == pytest.approx(1 / 9, abs=1e-12) and detail.note("realism") is None
    paths = write_report(full, tmp_path / "full")
    assert json.loads(paths["summary"].read_text())["fleiss_kappa_items"] == {"realism": [10, 10]}
    assert "items (those with" not in paths["markdown"].read_text()
