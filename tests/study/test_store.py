"""Vote store: tokens, side assignment, vote validation, duplicates, concurrent writers."""

import sqlite3
import threading

import pytest

from asccl.study.definition import Question, StudyDefinition, StudyItem
from asccl.study.store import DuplicateVote, StudyError, StudyStore

QUESTIONS = (Question("realism", "?"), Question("emotion", "?"), Question("mouth", "?"))


def make_study(n_items: int = 6) -> StudyDefinition:
    items = [
        StudyItem(
            id=f"happy/c{i}",
            emotion="happy",
            clip=f"c{i}",
            methods=("baseline", "asccl"),
            videos=(f"baseline/inter_id/happy/c{i}.mp4", f"asccl/inter_id/happy/c{i}.mp4"),
        )
        for i in range(n_items)
    ]
    items.append(
        StudyItem(
            id="check/happy/c0",
            emotion="happy",
            clip="c0",
            methods=("sources", "references"),
            videos=("sources/happy/c0.mp4", "references/inter_id/happy/c0.mp4"),
            expected="references",
            check_question="emotion",
        )
    )
    return StudyDefinition(
        ("baseline", "asccl"), "inter_id", n_items, 0, "", QUESTIONS, tuple(items)
    )


@pytest.fixture
def store(tmp_path):
    s = StudyStore(tmp_path / "study.sqlite")
    s.load_study(make_study())
    return s


def test_setup(store, tmp_path):
    with sqlite3.connect(store.path) as con:
        assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    tokens = store.create_tokens(5)
    assert len(set(tokens)) == 5 and all(len(t) == 32 for t in tokens)
    assert store.is_token(tokens[0]) and not store.is_token("guess")
    assert store.questions == ["realism", "emotion", "mouth"]
    assert store.methods == ("baseline", "asccl")
    assert store.attention_checks() == {"check/happy/c0": ("emotion", "references")}
    store.load_study(make_study())  # same study again: no-op
    with pytest.raises(StudyError, match="different study"):
        store.load_study(make_study(3))
    # reopening keeps the salt, hence the assignments
    again = StudyStore(tmp_path / "study.sqlite")
    assert again.assignment(tokens[0], "happy/c1") == store.assignment(tokens[0], "happy/c1")


def test_assignment_is_deterministic_and_mixed(store):
    tokens = store.create_tokens(40)
    sides = [store.assignment(t, "happy/c1") for t in tokens]
    assert set(sides) == {("baseline", "asccl"), ("asccl", "baseline")}
    assert [store.assignment(t, "happy/c1") for t in tokens] == sides
    with pytest.raises(StudyError, match="unknown item"):
        store.assignment(tokens[0], "nope")


def test_salt_is_secret_per_study(tmp_path):
    a, b = StudyStore(tmp_path / "a.db"), StudyStore(tmp_path / "b.db")
    for s in (a, b):
        s.load_study(make_study(40))
    items = [f"happy/c{i}" for i in range(40)]
    assert [a.assignment("t", i) for i in items] != [b.assignment("t", i) for i in items]


def test_record_vote_maps_side_to_method(store):
    (token,) = store.create_tokens(1)
    left, right = store.assignment(token, "happy/c2")
    assert store.record_vote(token, "happy/c2", "realism", "left") == "ok"
    store.record_vote(token, "happy/c2", "mouth", "right")
    votes = store.export_votes()
    assert [(v["question"], v["choice"], v["method"]) for v in votes] == [
        ("realism", "left", left),
        ("mouth", "right", right),
    ]
    assert votes[0]["left_method"] == left and votes[0]["methods"] == ("baseline", "asccl")
    assert votes[0]["emotion"] == "happy" and votes[0]["expected"] is None
    assert store.progress(token) == {"answered": 2, "total": 21, "items_done": 0}
    store.record_vote(token, "happy/c2", "emotion", "left")
    assert store.progress(token)["items_done"] == 1


def test_record_vote_validates(store):
    (token,) = store.create_tokens(1)
    with pytest.raises(StudyError, match="unknown token"):
        store.record_vote("forged", "happy/c0", "realism", "left")
    with pytest.raises(StudyError, match="unknown item"):
        store.record_vote(token, "happy/zz", "realism", "left")
    with pytest.raises(StudyError, match="unknown question"):
        store.record_vote(token, "happy/c0", "beauty", "left")
    with pytest.raises(StudyError, match="choice must be"):
        store.record_vote(token, "happy/c0", "realism", "asccl")
    with pytest.raises(StudyError, match="unknown token"):
        store.progress("forged")
    assert store.export_votes() == []


def test_duplicate_vote_changes_nothing(store):
    (token,) = store.create_tokens(1)
    store.record_vote(token, "happy/c0", "realism", "left")
    before = store.export_votes()
    with pytest.raises(DuplicateVote, match="already answered"):
        store.record_vote(token, "happy/c0", "realism", "right")
    assert store.export_votes() == before


def test_concurrent_writers_every_vote_once(store):
    tokens = store.create_tokens(8)
    items = store.item_ids()
    errors: list[BaseException] = []
    duplicates = []

    def rater(token):
        try:
            for item in items:
                for q in store.questions:
                    store.record_vote(token, item, q, "left")
                    try:  # a double submit from the same rater must be refused
                        store.record_vote(token, item, q, "right")
                    except DuplicateVote:
                        duplicates.append(1)
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=rater, args=(t,)) for t in tokens]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    votes = store.export_votes()
    keys = [(v["token"], v["item_id"], v["question"]) for v in votes]
    expected = {(t, i, q) for t in tokens for i in items for q in store.questions}
    assert len(keys) == len(expected) == len(duplicates) and set(keys) == expected
    assert all(v["choice"] == "left" for v in votes)


def test_video_path_follows_the_side(store):
    (token,) = store.create_tokens(1)
    left, right = store.assignment(token, "happy/c3")
    video, reference = store.video_path(token, "happy/c3", "left")
    assert video == f"{left}/inter_id/happy/c3.mp4" and reference is None
    assert store.video_path(token, "happy/c3", "right")[0].startswith(right)
    with pytest.raises(StudyError, match="side must be"):
        store.video_path(token, "happy/c3", "middle")


def test_next_item_walks_a_per_rater_order(store):
    a, b = store.create_tokens(2)
    orders = {}
    for token in (a, b):
        seen = []
        while (item := store.next_item(token)) is not None:
            assert item not in seen
            seen.append(item)
            for q in store.questions:
                store.record_vote(token, item, q, "left")
        orders[token] = seen
    assert sorted(orders[a]) == sorted(store.item_ids())
    assert orders[a] != orders[b]  # 7! orders; equal with probability 1/5040
    assert store.progress(a)["items_done"] == len(store.item_ids())


def test_next_item_stays_on_a_half_answered_item(store):
    (token,) = store.create_tokens(1)
    first = store.next_item(token)
    store.record_vote(token, first, "realism", "right")
    assert store.next_item(token) == first
    with pytest.raises(StudyError, match="unknown token"):
        store.next_item("forged")
