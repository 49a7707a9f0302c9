"""Vote store: tokens, side assignment, vote validation, duplicates, concurrent writers."""

import re
import sqlite3
import threading
from dataclasses import replace

import pytest

from asccl.study.definition import Question, StudyDefinition, StudyItem
from asccl.study.store import DuplicateVote, StudyError, StudyStore

QUESTIONS = (Question("realism", "?"), Question("emotion", "?"), Question("mouth", "?"))
KEY = bytes(range(32))  # the study's key (study.secret.json in a real study)


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
    s = StudyStore(tmp_path / "study.sqlite", KEY)
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
    again = StudyStore(tmp_path / "study.sqlite", KEY)
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
    expected = {(store.token_hash(t), i, q) for t in tokens for i in items for q in store.questions}
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


# --- tokens at rest: keyed hashes, the key checked, old databases migrated -----------------


def _db_bytes(path) -> bytes:
    return b"".join(p.read_bytes() for p in path.parent.glob(f"{path.name}*"))


def test_tokens_are_stored_as_keyed_hashes(store):
    import hashlib
    import hmac

    tokens = store.create_tokens(3)
    store.record_vote(tokens[0], "happy/c0", "realism", "left")
    with sqlite3.connect(store.path) as con:
        stored = {r[0] for r in con.execute("SELECT token FROM raters")}
        voted = {r[0] for r in con.execute("SELECT token FROM votes")}
    con.close()
    expected = {
        hmac.new(KEY, b"rater\x00" + t.encode(), hashlib.sha256).hexdigest() for t in tokens
    }
    assert stored == expected and voted == {store.token_hash(tokens[0])}
    assert not any(t.encode() in _db_bytes(store.path) for t in tokens)
    # a stored hash is not a token: presenting it opens nothing
    assert not store.is_token(store.token_hash(tokens[0]))
    with pytest.raises(StudyError, match="unknown token"):
        store.record_vote(store.token_hash(tokens[1]), "happy/c0", "realism", "left")
    # without the key, nothing that takes a token works (reading the votes does)
    keyless = StudyStore(store.path)
    with pytest.raises(StudyError, match="need the study's key"):
        keyless.is_token(tokens[0])
    assert keyless.export_votes() == store.export_votes()


def test_another_key_is_refused(store):
    (token,) = store.create_tokens(1)
    before = _db_bytes(store.path)
    with pytest.raises(StudyError, match=r"another key than study\.secret\.json"):
        StudyStore(store.path, bytes(32), key_name="study.secret.json")
    assert _db_bytes(store.path) == before
    assert StudyStore(store.path, KEY).is_token(token)


def _legacy_database(path, study, n_raters: int) -> tuple[list[str], list[tuple]]:
    """A database as versions before token hashing wrote it: the same schema, raw tokens in
    ``raters`` and ``votes``, no ``token_hash``/``key_check`` meta. Returns the tokens and
    the votes (token, item, question, choice, left method, method)."""
    import secrets

    keyless = StudyStore(path)
    keyless.load_study(study)
    tokens = [secrets.token_urlsafe(24) for _ in range(n_raters)]
    votes = []
    for n, token in enumerate(tokens):
        for item in keyless.item_ids()[: n + 1]:
            left, right = keyless.assignment(token, item)  # the salt HMAC of the raw token
            for q, choice in zip(keyless.questions, ["left", "right", "left"], strict=True):
                votes.append((token, item, q, choice, left, left if choice == "left" else right))
    with sqlite3.connect(path) as con:
        con.execute("DELETE FROM meta WHERE key = 'token_hash'")
        con.executemany("INSERT INTO raters VALUES (?, 1.0)", [(t,) for t in tokens])
        con.executemany(
            "INSERT INTO votes (token, item_id, question, choice, left_method, method, created)"
            " VALUES (?, ?, ?, ?, ?, ?, 2.0)",
            votes,
        )
    con.close()
    assert all(t.encode() in _db_bytes(path) for t in tokens)
    return tokens, votes


def test_a_database_with_raw_tokens_is_migrated_on_open(tmp_path):
    path = tmp_path / "study.sqlite"
    tokens, votes = _legacy_database(path, make_study(), 4)
    keyless = StudyStore(path)  # without the key: read as it is, nothing migrated
    sides = {(t, i): keyless.assignment(t, i) for t in tokens for i in keyless.item_ids()}
    orders = []
    assert {v["token"] for v in keyless.export_votes()} == set(tokens)

    store = StudyStore(path, KEY)
    on_disk = _db_bytes(path)
    assert not any(t.encode() in on_disk for t in tokens), "a raw token is left on disk"
    # every rater and vote kept, under the token's hash; the same sides, order and progress
    exported = store.export_votes()
    assert [(v["token"], v["item_id"], v["question"], v["choice"], v["left_method"],
             v["method"]) for v in exported] == [
        (store.token_hash(v[0]), *v[1:]) for v in votes
    ]  # fmt: skip
    for n, token in enumerate(tokens):
        assert store.is_token(token)
        assert store.progress(token) == {"answered": 3 * (n + 1), "total": 21,
                                         "items_done": n + 1}  # fmt: skip
        for item in store.item_ids():
            assert store.assignment(token, item) == sides[(token, item)]
        orders.append(store.next_item(token))
    # one vote per token/item/question still holds across the migration
    with pytest.raises(DuplicateVote):
        store.record_vote(tokens[0], store.item_ids()[0], "realism", "right")
    assert store.record_vote(tokens[0], orders[0], "realism", "right") == "ok"
    assert len(store.export_votes()) == len(votes) + 1
    # opened again (another process, the same key): nothing to migrate, nothing changes
    again = StudyStore(path, KEY)
    assert again.export_votes() == store.export_votes() and again.is_token(tokens[3])
    with pytest.raises(StudyError, match="another key"):
        StudyStore(path, bytes(32))


def test_not_a_study_database_is_refused_unchanged(tmp_path):
    junk = tmp_path / "junk.sqlite"
    junk.write_bytes(b"this is not a database" * 100)
    with pytest.raises(StudyError, match=re.escape(f"{junk}: not a study database")):
        StudyStore(junk, KEY)
    assert junk.read_bytes() == b"this is not a database" * 100
    other = tmp_path / "other.sqlite"
    with sqlite3.connect(other) as con:
        con.execute("CREATE TABLE notes (x)")
    con.close()
    before = other.read_bytes()
    with pytest.raises(StudyError, match="not a study's"):
        StudyStore(other, KEY)
    assert other.read_bytes() == before
    with pytest.raises(FileNotFoundError, match="study database not found"):
        StudyStore(tmp_path / "absent.sqlite", create=False)
    assert not (tmp_path / "absent.sqlite").exists()


@pytest.mark.parametrize(
    ("change", "named"),
    [
        (lambda s: replace(s, setting="cross_id"), "setting 'inter_id', the definition's 'cross"),
        (lambda s: replace(s, methods=("dsm", "asccl")), "methods"),
        (lambda s: replace(s, questions=QUESTIONS[1:]), "questions"),
        (lambda s: replace(s, questions=(QUESTIONS[0], Question("emotion", "Which is sadder?"),
                                         QUESTIONS[2])),
         "question 'emotion' asked '?', the definition asks 'Which is sadder?'"),
        (lambda s: _edit_item(s, 2, videos=("baseline/cross_id/happy/c2.mp4", "x.mp4")),
         "item 'happy/c2': its video_a 'baseline/inter_id/happy/c2.mp4', the definition's "
         "'baseline/cross_id/happy/c2.mp4'"),
        (lambda s: _edit_item(s, 0, reference="references/inter_id/happy/c0.mp4"), "reference"),
        (lambda s: _edit_item(s, 6, expected="sources"), "'check/happy/c0': its expected"),
        (lambda s: _edit_item(s, 1, methods=("asccl", "baseline")), "method_a"),
        (lambda s: replace(s, items=s.items[:-1]), "7 items in the database, 6 in the def"),
    ],
)  # fmt: skip
def test_a_study_differing_in_any_field_is_refused(store, change, named):
    """Item ids alone are not enough: a database keeps the votes of the study it was made
    for, so another setting, methods, questions or any field of an item is refused, naming
    the first difference, and nothing changes."""
    before = list(sqlite3.connect(store.path).iterdump())
    with pytest.raises(StudyError, match=r"different study \(.*new study folder") as info:
        store.load_study(change(make_study()))
    assert named in str(info.value) and "\n" not in str(info.value)
    with pytest.raises(StudyError, match=re.escape(named)):
        store.check_study(change(make_study()))
    assert list(sqlite3.connect(store.path).iterdump()) == before
    store.check_study(make_study())  # its own study: fine


def test_database_without_a_stored_setting_compares_what_it_has(store):
    """A database written before the setting was stored: the items (whose paths name the
    setting) are still compared."""
    with sqlite3.connect(store.path) as con:
        con.execute("DELETE FROM meta WHERE key = 'setting'")
    store.load_study(replace(make_study(), setting="cross_id"))  # nothing to compare it with
    with pytest.raises(StudyError, match="video_a"):
        store.load_study(_edit_item(make_study(), 0, videos=("a.mp4", "b.mp4")))


def _edit_item(study: StudyDefinition, index: int, **changes) -> StudyDefinition:
    items = list(study.items)
    items[index] = replace(items[index], **changes)
    return replace(study, items=tuple(items))


def test_a_database_from_before_prompts_were_stored_is_compared_on_what_it_has(store):
    """A database written before the prompts were stored (no ``prompts`` row) still accepts
    its own study, whatever the wording: nothing recorded says what its raters read."""
    with sqlite3.connect(store.path) as con:
        con.execute("DELETE FROM meta WHERE key = 'prompts'")
    reworded = replace(make_study(), questions=(Question("realism", "More real?"), *QUESTIONS[1:]))
    store.check_study(reworded)
    store.load_study(reworded)
