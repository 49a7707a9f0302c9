"""Analysis of forced-choice votes: shares per emotion and question, tests, agreement, report.

Votes are the dicts of :meth:`asccl.study.store.StudyStore.export_votes` (keys used here:
``token``, ``item_id``, ``emotion``, ``question``, ``method`` (the chosen one), ``methods``
(the pair shown), ``expected`` and ``check_question`` (set on attention-check items)).

Tables follow the seed's Tables 3-5: one row per emotion plus Average; per question two
columns, the baseline's and ASCCL's share of the votes (the larger marked). The Average row
pools every vote (with equal items per emotion this is the mean of the emotion rows). The
binomial test and Wilson interval treat votes as independent; votes of one rater are not
quite, so read them as descriptive.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from statistics import NormalDist

import numpy as np

from asccl.data.clips import PAPER_EMOTIONS
from asccl.evaluation.tables import AVERAGE, tex_escape
from asccl.figures import pyplot, save_figure
from asccl.io import write_text_atomic

# --- pure maths ---------------------------------------------------------------------------


#: the standard normal's 97.5 % quantile (1.959964...): a two-sided 95 % interval
Z_95 = NormalDist().inv_cdf(0.975)


def wilson_interval(k: int, n: int, z: float = Z_95) -> tuple[float, float]:
    """Wilson score interval for a proportion ``k / n``:
    ``(p + z²/2n ± z·sqrt(p(1-p)/n + z²/4n²)) / (1 + z²/n)``; ``(0, 1)`` when ``n == 0``.
    ``z``: by default the exact 95 % quantile (as ``scipy``'s ``proportion_ci``), not 1.96."""
    if not 0 <= k <= n:
        raise ValueError(f"need 0 <= k <= n, got k={k}, n={n}")
    if n == 0:
        return 0.0, 1.0
    p = k / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z / denom * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return max(0.0, centre - half), min(1.0, centre + half)


def binomial_test_two_sided(k: int, n: int, p: float = 0.5) -> float:
    """Exact two-sided binomial test: the probability, under ``Binomial(n, p)``, of every
    outcome no more likely than ``k`` (the rule of ``scipy.stats.binomtest``)."""
    if not 0 <= k <= n:
        raise ValueError(f"need 0 <= k <= n, got k={k}, n={n}")
    if not 0 <= p <= 1:
        raise ValueError(f"p must be in [0, 1], got {p}")
    if n == 0:
        return 1.0
    if p in (0.0, 1.0):
        return 1.0 if k == round(p * n) else 0.0
    i = np.arange(n + 1)
    log_pmf = (
        math.lgamma(n + 1)
        - np.array([math.lgamma(j + 1) + math.lgamma(n - j + 1) for j in i])
        + i * math.log(p)
        + (n - i) * math.log1p(-p)
    )
    pmf = np.exp(log_pmf)
    return float(min(1.0, pmf[pmf <= pmf[k] * (1 + 1e-7)].sum()))


def fleiss_kappa(table: Sequence[Sequence[int]] | np.ndarray) -> float:
    """Fleiss' kappa of an ``(items, categories)`` count table, every row summing to the same
    number of raters ``n >= 2``: ``(P̄ - P̄e) / (1 - P̄e)`` with
    ``P_i = (Σ_j n_ij² - n) / (n(n-1))`` and ``P̄e = Σ_j p_j²``. NaN when ``P̄e == 1``."""
    counts = np.asarray(table, dtype=np.float64)
    if counts.ndim != 2 or counts.shape[0] == 0:
        raise ValueError(f"need a non-empty (items, categories) table, got shape {counts.shape}")
    n = counts.sum(axis=1)
    if not np.all(n == n[0]) or n[0] < 2:
        raise ValueError(f"every item needs the same number (>= 2) of ratings, got {n.tolist()}")
    n = n[0]
    p_i = ((counts**2).sum(axis=1) - n) / (n * (n - 1))
    p_j = counts.sum(axis=0) / counts.sum()
    p_bar, p_e = p_i.mean(), float((p_j**2).sum())
    return float("nan") if p_e == 1 else float((p_bar - p_e) / (1 - p_e))


# --- votes --------------------------------------------------------------------------------


def exclude_failed_attention(
    votes: Iterable[Mapping],
    checks: Mapping[str, tuple[str, str]] | None = None,
    min_pass: float = 1.0,
) -> tuple[list[dict], set[str]]:
    """Drop raters whose share of passed attention checks is below ``min_pass``.

    ``checks``: ``item id -> (question, expected method)``; by default read from the votes'
    ``expected``/``check_question``. Raters who answered no check are kept. Returns the votes
    on non-check items of the kept raters, and the excluded tokens.
    """
    votes = [dict(v) for v in votes]
    if checks is None:
        checks = {
            v["item_id"]: (v["check_question"], v["expected"])
            for v in votes
            if v.get("expected") is not None
        }
    passed: dict[str, list[bool]] = defaultdict(list)
    for v in votes:
        check = checks.get(v["item_id"])
        if check is not None and v["question"] == check[0]:
            passed[v["token"]].append(v["method"] == check[1])
    failed = {t for t, ok in passed.items() if sum(ok) / len(ok) < min_pass}
    kept = [v for v in votes if v["token"] not in failed and v["item_id"] not in checks]
    return kept, failed


@dataclass(frozen=True)
class ShareCell:
    """Votes of one (emotion, question): each method's count and share; the CI and the
    two-sided test (H0: 50 %) are for ``methods[1]`` (ours)."""

    methods: tuple[str, str]
    counts: tuple[int, int]
    ci: tuple[float, float]
    p_value: float

    @property
    def n(self) -> int:
        return sum(self.counts)

    @property
    def shares(self) -> tuple[float, float]:
        n = self.n
        return (self.counts[0] / n, self.counts[1] / n) if n else (math.nan, math.nan)


ShareTable = dict[str, dict[str, ShareCell]]  # row (emotion or "average") -> question -> cell


def _cell(methods: tuple[str, str], chosen: Counter) -> ShareCell:
    counts = (chosen[methods[0]], chosen[methods[1]])
    n = sum(counts)
    return ShareCell(
        methods, counts, wilson_interval(counts[1], n), binomial_test_two_sided(counts[1], n)
    )


def share_table(votes: Iterable[Mapping], methods: tuple[str, str] | None = None) -> ShareTable:
    """Per emotion (paper order) and ``average``, per question: a :class:`ShareCell`.

    Only votes on items showing exactly ``methods`` count (attention checks never do);
    ``methods`` defaults to the pair of the first such vote.
    """
    votes = [v for v in votes if v.get("expected") is None]
    if methods is None:
        if not votes:
            return {}
        methods = tuple(votes[0]["methods"])
    pair = set(methods)
    counts: dict[tuple[str, str], Counter] = defaultdict(Counter)
    questions: list[str] = []
    for v in votes:
        if set(v["methods"]) != pair:
            continue
        if v["question"] not in questions:
            questions.append(v["question"])
        counts[v["emotion"], v["question"]][v["method"]] += 1
        counts[AVERAGE, v["question"]][v["method"]] += 1
    rows = [e for e in PAPER_EMOTIONS if any((e, q) in counts for q in questions)]
    rows += sorted({e for e, _ in counts} - set(PAPER_EMOTIONS) - {AVERAGE})
    if not rows:
        return {}
    return {row: {q: _cell(methods, counts[row, q]) for q in questions} for row in [*rows, AVERAGE]}


@dataclass(frozen=True)
class Agreement:
    """Fleiss' kappa of one question: ``kappa`` over ``items_used`` of the ``items_rated``
    items, those with ``ratings`` ratings each (kappa needs one count per item)."""

    kappa: float
    items_used: int
    items_rated: int
    ratings: int

    def note(self, question: str) -> str | None:
        """A line saying kappa left items out (``None`` when it used every rated item)."""
        if self.items_used == self.items_rated:
            return None
        return (
            f"{question}: Fleiss' kappa over {self.items_used} of {self.items_rated} items "
            f"(those with {self.ratings} ratings)"
        )


def agreement_detail(
    votes: Iterable[Mapping], question: str, methods: tuple[str, str]
) -> Agreement:
    """Fleiss' kappa of one question over the items with the most common number of ratings
    (the larger on a tie), and how many items that is of those rated; NaN (over 0 items)
    when that number is below two."""
    per_item: dict[str, Counter] = defaultdict(Counter)
    for v in votes:
        if v["question"] == question and v.get("expected") is None:
            per_item[v["item_id"]][v["method"]] += 1
    sizes = Counter(sum(c.values()) for c in per_item.values())
    if not sizes:
        return Agreement(math.nan, 0, 0, 0)
    n = max(sizes, key=lambda s: (sizes[s], s))
    if n < 2:
        return Agreement(math.nan, 0, len(per_item), n)
    rows = [[c[m] for m in methods] for c in per_item.values() if sum(c.values()) == n]
    return Agreement(fleiss_kappa(rows), len(rows), len(per_item), n)


def agreement(votes: Iterable[Mapping], question: str, methods: tuple[str, str]) -> float:
    """Fleiss' kappa of one question (:func:`agreement_detail`, which also says over how many
    items)."""
    return agreement_detail(votes, question, methods).kappa


# --- tables -------------------------------------------------------------------------------


def _header_cells(table: ShareTable) -> tuple[list[str], tuple[str, str]]:
    first = next(iter(table.values()))
    return list(first), next(iter(first.values())).methods


def _body(table: ShareTable, digits: int, mark) -> list[list[str]]:
    questions, _ = _header_cells(table)
    body = []
    for row, cells in table.items():
        out = [row.capitalize()]
        for q in questions:
            cell = cells.get(q)
            shares = cell.shares if cell else (math.nan, math.nan)
            for i, s in enumerate(shares):
                text = "-" if not math.isfinite(s) else f"{100 * s:.{digits}f}"
                better = math.isfinite(s) and s >= shares[1 - i] and s > 0.5 - 1e-12
                out.append(mark(text) if better and shares[0] != shares[1] else text)
        body.append(out)
    return body


def to_markdown(table: ShareTable, digits: int = 1) -> str:
    """Share of votes in %, header cells ``question method`` (the larger share in bold)."""
    questions, methods = _header_cells(table)
    header = ["Emotion"] + [f"{q.capitalize()} {m}" for q in questions for m in methods]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(c) + " |" for c in _body(table, digits, lambda t: f"**{t}**")]
    return "\n".join(lines) + "\n"


def to_csv(table: ShareTable, digits: int = 1) -> str:
    """Two-line header (question, method); shares in %, the larger ending in ``*``."""
    questions, methods = _header_cells(table)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["emotion"] + [q for q in questions for _ in methods])
    writer.writerow([""] + [m for _ in questions for m in methods])
    for cells in _body(table, digits, lambda t: f"{t}*"):
        writer.writerow([cells[0].lower(), *cells[1:]])
    return out.getvalue()


def to_latex(table: ShareTable, digits: int = 1, caption: str = "") -> str:
    """``table`` + ``tabular`` with a ``\\multicolumn`` per question (needs booktabs)."""
    questions, methods = _header_cells(table)
    groups = " & ".join(
        rf"\multicolumn{{2}}{{c}}{{{tex_escape(q.capitalize())}}}" for q in questions
    )
    rules = " ".join(rf"\cmidrule(lr){{{2 + 2 * i}-{3 + 2 * i}}}" for i in range(len(questions)))
    labels = " & ".join(tex_escape(m) for _ in questions for m in methods)
    lines = [
        r"\begin{table}[t]",
        r"\centering",
        rf"\begin{{tabular}}{{l{'|'.join('cc' for _ in questions)}}}",
        r"\toprule",
        rf" & {groups} \\",
        rules,
        rf"Emotion & {labels} \\",
        r"\midrule",
    ]
    body = _body(table, digits, lambda t: rf"\textbf{{{t}}}")
    for i, cells in enumerate(body):
        if cells[0].lower() == AVERAGE and i > 0:
            lines.append(r"\midrule")
        lines.append(" & ".join([tex_escape(cells[0]), *cells[1:]]) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}"]
    if caption:
        lines.append(rf"\caption{{{tex_escape(caption)}}}")
    lines.append(r"\end{table}")
    return "\n".join(lines) + "\n"


def to_stats_csv(table: ShareTable) -> str:
    """Long format, one line per (emotion, question): counts, n, shares, CI, p-value."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(
        [
            "emotion",
            "question",
            "method_0",
            "method_1",
            "count_0",
            "count_1",
            "n",
            "share_1",
            "ci_low_1",
            "ci_high_1",
            "p_value",
        ]
    )
    for row, cells in table.items():
        for q, c in cells.items():
            writer.writerow(
                [
                    row,
                    q,
                    *c.methods,
                    *c.counts,
                    c.n,
                    f"{c.shares[1]:.4f}",
                    f"{c.ci[0]:.4f}",
                    f"{c.ci[1]:.4f}",
                    f"{c.p_value:.4g}",
                ]
            )
    return out.getvalue()


def plot_shares(table: ShareTable, question: str, path: str | os.PathLike) -> Path:
    """One PNG: a stacked bar per emotion (and Average), the baseline's share below, ours
    above, with ours' Wilson interval and the 50 % line."""
    plt = pyplot()
    rows = list(table)
    cells = [table[r].get(question) for r in rows]
    methods = next(c for c in cells if c is not None).methods
    base = np.array([c.shares[0] if c and c.n else 0.0 for c in cells])
    ours = np.array([c.shares[1] if c and c.n else 0.0 for c in cells])
    x = np.arange(len(rows))
    fig, ax = plt.subplots(figsize=(max(5, 0.9 * len(rows) + 2), 3.2))
    ax.bar(x, 100 * base, 0.6, label=methods[0], color="#9aa5b1")
    ax.bar(x, 100 * ours, 0.6, bottom=100 * base, label=methods[1], color="#2f6db5")
    for xi, c in zip(x, cells, strict=True):
        if c and c.n:
            lo, hi = c.ci
            ax.plot([xi, xi], [100 * (1 - hi), 100 * (1 - lo)], color="black", lw=1)
    ax.axhline(50, color="black", ls="--", lw=0.8)
    ax.set_xticks(x, [r.capitalize() for r in rows])
    ax.set_ylim(0, 100)
    ax.set_ylabel("share of votes (%)")
    ax.set_title(question.capitalize())
    ax.legend(loc="upper left", bbox_to_anchor=(1, 1), fontsize="small")
    fig.tight_layout()
    return save_figure(fig, path, dpi=120)


def _kappa_notes(kappas: Mapping[str, Agreement]) -> str:
    """The footnote of ``shares.md``: Fleiss' kappa per question, and over how many items
    when not every rated item."""
    values = ", ".join(
        f"{q} {'-' if math.isnan(a.kappa) else f'{a.kappa:.3f}'}" for q, a in kappas.items()
    )
    notes = [a.note(q) for q, a in kappas.items()]
    return (
        f"\nFleiss' kappa: {values}.\n"
        + "".join(f"\n- {n}" for n in notes if n)
        + ("\n" if any(notes) else "")
    )


def write_report(
    source: str | os.PathLike | Iterable[Mapping],
    out_dir: str | os.PathLike,
    methods: tuple[str, str] | None = None,
    min_pass: float = 1.0,
) -> dict[str, Path]:
    """Tables (``shares.md/.csv/.tex``; ``shares.md`` ends with Fleiss' kappa per question and
    over how many items, when not all), ``stats.csv``, ``summary.json`` (raters, exclusions,
    Fleiss' kappa per question and its ``[items used, items rated]``) and
    ``plots/<question>.png``, from a study database path or a list of votes. Returns
    ``name -> path``. Rater tokens are never written."""
    checks = None
    if isinstance(source, (str, os.PathLike)):
        from asccl.study.store import StudyStore

        store = StudyStore(source, create=False)  # no key: votes name raters by hash
        votes = store.export_votes()
        checks = store.attention_checks()
        methods = methods or store.methods
    else:
        votes = [dict(v) for v in source]
    kept, failed = exclude_failed_attention(votes, checks, min_pass)
    table = share_table(kept, methods)
    if not table:
        raise ValueError("no votes to analyse (after excluding failed attention checks)")
    questions, methods = _header_cells(table)
    out = Path(out_dir)
    kappas = {q: agreement_detail(kept, q, methods) for q in questions}
    paths = {
        "markdown": write_text_atomic(out / "shares.md", to_markdown(table) + _kappa_notes(kappas)),
        "csv": write_text_atomic(out / "shares.csv", to_csv(table)),
        "latex": write_text_atomic(out / "shares.tex", to_latex(table)),
        "stats": write_text_atomic(out / "stats.csv", to_stats_csv(table)),
    }
    summary = {
        "methods": list(methods),
        "raters": len({v["token"] for v in votes}),
        "raters_excluded": len(failed),
        "votes_analysed": len(kept),
        "fleiss_kappa": {
            q: None if math.isnan(a.kappa) else round(a.kappa, 4) for q, a in kappas.items()
        },
        # per question [items kappa used, items rated]: kappa uses the items with the most
        # common number of ratings only
        "fleiss_kappa_items": {q: [a.items_used, a.items_rated] for q, a in kappas.items()},
    }
    paths["summary"] = write_text_atomic(out / "summary.json", json.dumps(summary, indent=2) + "\n")
    for q in questions:
        paths[f"plot_{q}"] = plot_shares(table, q, out / "plots" / f"{q}.png")
    return paths
