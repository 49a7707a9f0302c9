"""Load (loopback only, bounded): 50 raters at once each answer a whole study through uvicorn;
afterwards every vote is in the database exactly once, and the report runs on it."""

from __future__ import annotations

import json
import random
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import pytest

pytest.importorskip("starlette")
pytest.importorskip("uvicorn")

from tests.study.conftest import LoopbackServer, form_values

from asccl.study.commands import invite, make_app, open_store, report

RATERS = 50
# a liveness bound (a hung server fails), not a speed target: ~7 s on 2 idle cores; speed
# belongs in benchmarks, and a busy machine must not fail this test
TIME_LIMIT_S = 300.0
QUESTIONS = ("realism", "emotion", "mouth")


def _rater_session(url: str, token: str, seed: int, deadline: float) -> dict:
    """One rater: page, answers, next page... until done; each item's form is also sent a
    second time (a double click), which must be refused. Returns what was sent."""
    rng = random.Random(seed)
    sent, duplicates_refused = {}, 0
    while time.monotonic() < deadline:
        with urllib.request.urlopen(f"{url}/r/{token}", timeout=30) as reply:
            html = reply.read().decode()
        if 'id="done"' in html:
            return {"sent": sent, "duplicates_refused": duplicates_refused, "done": True}
        fields = form_values(html)
        answers = {f"q_{q}": rng.choice(["left", "right"]) for q in QUESTIONS}
        body = urllib.parse.urlencode({**fields, **answers}).encode()
        for attempt in range(2):
            try:  # 303 -> GET /r/<token> is followed by urllib
                with urllib.request.urlopen(f"{url}/r/{token}/vote", body, timeout=30) as r:
                    r.read()
                assert attempt == 0, "a repeated form was accepted"
            except urllib.error.HTTPError as err:
                assert attempt == 1 and err.code == 409, (attempt, err.code)
                duplicates_refused += 1
        for q in QUESTIONS:
            sent[(fields["item"], q)] = answers[f"q_{q}"]
    return {"sent": sent, "duplicates_refused": duplicates_refused, "done": False}


def test_fifty_concurrent_raters_lose_and_double_nothing(study_toml, tmp_path):
    app = make_app(study_toml)
    handlers = app.handlers
    tokens = [link.rsplit("/", 1)[1] for link in invite(study_toml, RATERS)]
    n_items = len(handlers.items)
    start = time.monotonic()
    deadline = start + TIME_LIMIT_S
    barrier = threading.Barrier(RATERS)

    def run(i: int) -> dict:
        barrier.wait(timeout=30)  # everyone starts together
        return _rater_session(server.url, tokens[i], i, deadline)

    with LoopbackServer(app) as server, ThreadPoolExecutor(RATERS) as pool:
        sessions = list(pool.map(run, range(RATERS)))
    elapsed = time.monotonic() - start
    assert all(s["done"] for s in sessions), f"not finished within {TIME_LIMIT_S} s"
    assert all(s["duplicates_refused"] == n_items for s in sessions)

    store = open_store(study_toml)
    votes = store.export_votes()
    expected = {}
    for token, session in zip(tokens, sessions, strict=True):
        keys = {handlers.item_key(token, item_id): item_id for item_id in handlers.items}
        for (key, question), choice in session["sent"].items():
            expected[(store.token_hash(token), keys[key], question)] = choice
    stored = [(v["token"], v["item_id"], v["question"]) for v in votes]
    assert len(expected) == RATERS * n_items * len(QUESTIONS)
    assert len(stored) == len(set(stored)), "a vote was stored twice"
    assert set(stored) == set(expected), "votes lost or unexpected"  # 0 lost, 0 doubled
    assert all(v["choice"] == expected[(v["token"], v["item_id"], v["question"])] for v in votes)
    print(f"{RATERS} raters x {n_items} items x {len(QUESTIONS)} questions = {len(votes)} "
          f"votes (+{RATERS * n_items} refused repeats) in {elapsed:.1f} s")  # fmt: skip

    # the report runs on the database the load filled
    paths = report(study_toml, tmp_path / "report")
    for name in ("markdown", "csv", "latex", "stats", "summary"):
        assert paths[name].is_file() and paths[name].stat().st_size > 0, name
    for q in QUESTIONS:
        assert paths[f"plot_{q}"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    table = paths["markdown"].read_text()
    assert "| Happy |" in table and "| Sad |" in table and "| Average |" in table
    summary = json.loads(paths["summary"].read_text())
    assert summary["raters"] == RATERS  # (those who failed the attention check are excluded)
    assert summary["votes_analysed"] == (RATERS - summary["raters_excluded"]) * (n_items - 1) * 3


def test_racing_forms_of_one_rater_never_mix_answers(study_toml):
    """The same item sent 12 times at once with different answers (tabs, double clicks):
    one form is recorded whole, the others get 409."""
    app = make_app(study_toml)
    (token,) = [link.rsplit("/", 1)[1] for link in invite(study_toml, 1)]
    variants = [
        {f"q_{q}": ["left", "right"][(i >> k) & 1] for k, q in enumerate(QUESTIONS)}
        for i in range(12)
    ]
    with LoopbackServer(app) as server:
        with urllib.request.urlopen(f"{server.url}/r/{token}", timeout=30) as reply:
            fields = form_values(reply.read().decode())
        barrier = threading.Barrier(len(variants))

        def post(answers: dict) -> int:
            body = urllib.parse.urlencode({**fields, **answers}).encode()
            barrier.wait(timeout=30)
            try:
                with urllib.request.urlopen(f"{server.url}/r/{token}/vote", body, timeout=30):
                    return 303
            except urllib.error.HTTPError as err:
                return err.code

        with ThreadPoolExecutor(len(variants)) as pool:
            codes = list(pool.map(post, variants))
    assert sorted(codes) == [303] + [409] * (len(variants) - 1)
    votes = open_store(study_toml).export_votes()
    stored = {f"q_{v['question']}": v["choice"] for v in votes}
    assert len(votes) == 3 and stored == variants[codes.index(303)]
