"""The study's vote store: one SQLite file, safe under a multi-threaded WSGI server.

Each call opens its own connection (``busy_timeout`` set, WAL journal), so threads never share
one. Raters are invite tokens (``secrets.token_urlsafe(24)``: 192 random bits), stored only as
keyed hashes (HMAC-SHA256 under the study's key, from ``study.secret.json``): the database
never holds a token, so a copy of it opens no rater's session. A presented token is hashed and
the stored hash compared in constant time. A database written before tokens were hashed is
migrated the first time it is opened with the key (in one transaction; the freed pages are
zeroed and the file rewritten, so no raw token stays on disk); the key's check value is kept,
so a database opened with another key is refused instead of turning every link invalid.

The client layer only ever sees ``left``/``right``: which method is on which side is derived
per rater and item from a secret salt kept in the database (HMAC-SHA256 of the token), and
:meth:`StudyStore.record_vote` maps the side to the method itself. A second vote for the same
(token, item, question) raises :class:`DuplicateVote` and changes nothing (``UNIQUE``
constraint). The database and its ``-wal``/``-shm`` files are created with mode 0600 (SQLite
gives the side files the database's mode), whatever the umask.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from asccl.study.definition import StudyDefinition
from asccl.study.secret_file import make_private

CHOICES = ("left", "right")
#: ``meta`` value of ``token_hash`` once rater tokens are stored as keyed hashes.
TOKEN_HASH = "hmac-sha256"
_TABLES = {"meta", "raters", "items", "votes"}

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS raters (
    token TEXT PRIMARY KEY, created REAL NOT NULL  -- the keyed hash of the token
);
CREATE TABLE IF NOT EXISTS items (
    item_id TEXT PRIMARY KEY, emotion TEXT NOT NULL, clip TEXT NOT NULL,
    method_a TEXT NOT NULL, method_b TEXT NOT NULL, video_a TEXT NOT NULL,
    video_b TEXT NOT NULL, reference TEXT, expected TEXT, check_question TEXT,
    position INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS votes (
    id INTEGER PRIMARY KEY,
    token TEXT NOT NULL REFERENCES raters(token),
    item_id TEXT NOT NULL REFERENCES items(item_id),
    question TEXT NOT NULL,
    choice TEXT NOT NULL CHECK (choice IN ('left', 'right')),
    left_method TEXT NOT NULL,
    method TEXT NOT NULL,
    created REAL NOT NULL,
    UNIQUE (token, item_id, question)
);
"""


class StudyError(ValueError):
    """A request the store refuses (unknown token, item, question or choice)."""


class DuplicateVote(StudyError):
    """This rater already answered this question for this item; nothing was changed."""


class StudyStore:
    """``StudyStore(path, key)`` opens (creating if needed) the study database at ``path``;
    ``key`` is the study's secret key (:func:`asccl.study.secret_file.load_secrets`).

    Fill it once with :meth:`load_study`, hand out :meth:`create_tokens`, then
    :meth:`record_vote` per answer; :meth:`export_votes` feeds :mod:`asccl.study.analysis`.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        key: bytes | None = None,
        *,
        key_name: str = "the key given",
        create: bool = True,
        busy_timeout_ms: int = 10_000,
    ):
        """Open (creating if absent, mode 0600) the study database at ``path``.

        ``key``: the study's secret key (``study.secret.json``); every call that takes a rater
        token needs it. ``key_name`` names the key's file in error messages. ``create=False``
        opens an existing study database only (readers: nothing is created or added).

        Raises:
            StudyError: ``path`` is not a SQLite database, or not a study's; or its tokens
                were hashed with another key than ``key``.
            FileNotFoundError: ``path`` is absent and ``create`` is false.
        """
        self.path = Path(path)
        self.busy_timeout_ms = busy_timeout_ms
        self._key: bytes | None = None
        if not create and not self.path.is_file():
            raise FileNotFoundError(f"{self.path}: study database not found")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:  # a new file is made 0600 before SQLite opens it; the side files copy its mode
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass
        else:
            os.fchmod(fd, 0o600)
            os.close(fd)
        try:
            with self._connect() as con:
                tables = {
                    r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")
                }
                if (tables or not create) and not _TABLES.issubset(tables):
                    raise StudyError(
                        f"{self.path}: a SQLite database but not a study's (tables: "
                        f"{sorted(tables)})"
                    )
                fresh = not tables
            if create:  # (a reader sets up nothing: works on a read-only copy too)
                with self._connect() as con:
                    con.execute("PRAGMA journal_mode=WAL")
                    con.executescript(_SCHEMA)
                    salt = secrets.token_hex(32)
                    con.execute("INSERT OR IGNORE INTO meta VALUES ('salt', ?)", (salt,))
                    if fresh:
                        con.execute(
                            "INSERT OR IGNORE INTO meta VALUES ('token_hash', ?)", (TOKEN_HASH,)
                        )
        except sqlite3.DatabaseError as exc:
            raise StudyError(f"{self.path}: not a study database ({exc})") from None
        for suffix in ("", "-wal", "-shm"):
            make_private(Path(f"{self.path}{suffix}"))
        if key is not None:
            self.use_key(key, key_name)

    def use_key(self, key: bytes, key_name: str = "the key given") -> None:
        """Hash rater tokens under ``key`` from now on; on first use, records the key's check
        value and migrates raw tokens of a database written before tokens were hashed.

        Raises:
            StudyError: the database's tokens were hashed with another key.
        """
        check = hmac.new(key, b"asccl-study-key-check", hashlib.sha256).hexdigest()
        con = sqlite3.connect(self.path, timeout=self.busy_timeout_ms / 1000, isolation_level=None)
        migrated = 0
        try:
            con.execute(f"PRAGMA busy_timeout={int(self.busy_timeout_ms)}")
            con.execute("PRAGMA secure_delete=ON")  # freed pages (raw tokens) are zeroed
            con.execute("BEGIN IMMEDIATE")  # one process migrates; the others then see it done
            try:
                stored = self._meta(con, "key_check")
                if stored is not None and not hmac.compare_digest(stored, check):
                    raise StudyError(
                        f"{self.path}: its rater tokens were hashed with another key than "
                        f"{key_name}; invitation links work only with the study's own "
                        "secrets file (restore it from a backup)"
                    )
                if self._meta(con, "token_hash") != TOKEN_HASH:
                    migrated = self._migrate_raw_tokens(con, key)
                    con.execute(
                        "INSERT OR REPLACE INTO meta VALUES ('token_hash', ?)", (TOKEN_HASH,)
                    )
                if stored is None:  # (written only when new: opening changes no byte)
                    con.execute("INSERT INTO meta VALUES ('key_check', ?)", (check,))
                con.execute("COMMIT")
            except BaseException:
                con.execute("ROLLBACK")
                raise
            if migrated:  # rewrite the file and empty the WAL: no old page keeps a raw token
                con.execute("VACUUM")
                con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        finally:
            con.close()
        self._key = key

    def has_key_check(self) -> bool:
        """Whether rater tokens in this database were hashed with a key (its check value is
        stored): opening it with another key is refused."""
        with self._connect() as con:
            return self._meta(con, "key_check") is not None

    @staticmethod
    def _hash_with(key: bytes, token: str) -> str:
        return hmac.new(key, b"rater\x00" + token.encode(), hashlib.sha256).hexdigest()

    def _migrate_raw_tokens(self, con: sqlite3.Connection, key: bytes) -> int:
        """Replace the raw tokens of a database written before tokens were hashed (votes
        follow their rater); returns how many."""
        raw = con.execute("SELECT token, created FROM raters").fetchall()
        for token, created in raw:
            hashed = self._hash_with(key, token)
            con.execute("INSERT INTO raters VALUES (?, ?)", (hashed, created))
            con.execute("UPDATE votes SET token = ? WHERE token = ?", (hashed, token))
            con.execute("DELETE FROM raters WHERE token = ?", (token,))
        return len(raw)

    def token_hash(self, token: str) -> str:
        """The keyed hash under which ``token`` is stored (and exported)."""
        if self._key is None:
            raise StudyError(
                f"{self.path}: rater tokens need the study's key (StudyStore(path, key))"
            )
        return self._hash_with(self._key, token)

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        """A fresh connection, committed on success, rolled back on error, always closed."""
        con = sqlite3.connect(self.path, timeout=self.busy_timeout_ms / 1000)
        try:
            con.execute(f"PRAGMA busy_timeout={int(self.busy_timeout_ms)}")
            con.execute("PRAGMA foreign_keys=ON")
            with con:
                yield con
        finally:
            con.close()

    def _meta(self, con: sqlite3.Connection, key: str) -> str | None:
        row = con.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else row[0]

    # --- set-up -----------------------------------------------------------------------------

    def load_study(self, study: StudyDefinition) -> None:
        """Store the study's items, questions, methods and setting (once). Loading the same
        study again is a no-op; any difference (see :meth:`check_study`) is an error and
        changes nothing."""
        rows = _item_rows(study)
        with self._connect() as con:
            if con.execute("SELECT 1 FROM items LIMIT 1").fetchone() is not None:
                self._check_study(con, study, rows)
                return
            con.executemany(f"INSERT INTO items VALUES ({','.join('?' * 11)})", rows)
            for key, value in (
                ("questions", study.question_ids),
                ("prompts", _prompts(study)),
                ("methods", study.methods),
                ("setting", study.setting),
            ):
                con.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, json.dumps(value)))

    def check_study(self, study: StudyDefinition) -> None:
        """Check (writing nothing) that ``study`` is the one this database holds, when it holds
        one: the same setting, methods, question ids, question prompts (the words raters read
        with each vote) and items, field by field, in order. A database written before the
        setting or the prompts were stored is compared on what it has.

        Raises:
            StudyError: the first difference, and what to do (a new study folder).
        """
        with self._connect() as con:
            if con.execute("SELECT 1 FROM items LIMIT 1").fetchone() is not None:
                self._check_study(con, study, _item_rows(study))

    def _check_study(self, con: sqlite3.Connection, study: StudyDefinition, rows: list) -> None:
        columns = ", ".join(_ITEM_COLUMNS)
        stored = [tuple(r) for r in con.execute(f"SELECT {columns} FROM items ORDER BY position")]
        difference = None
        for key, value in (
            ("setting", study.setting),
            ("methods", list(study.methods)),
            ("questions", study.question_ids),
            ("prompts", _prompts(study)),
        ):
            held = self._meta(con, key)  # (setting, prompts: absent in older databases)
            if held is not None and json.loads(held) != value:
                difference = _meta_difference(key, json.loads(held), value)
                break
        if difference is None:
            difference = _first_item_difference(stored, rows)
        if difference is not None:
            raise StudyError(
                f"{self.path}: holds a different study ({difference}); its votes belong to "
                "that study: restore the definition it was made from, or create this one in "
                "a new study folder (asccl study create --study <new folder>/study.toml)"
            )

    def create_tokens(self, n: int) -> list[str]:
        """``n`` new unguessable rater tokens (invite links carry them); only their keyed
        hashes are stored."""
        tokens = [secrets.token_urlsafe(24) for _ in range(n)]
        rows = [(self.token_hash(t), time.time()) for t in tokens]
        with self._connect() as con:
            con.executemany("INSERT INTO raters VALUES (?, ?)", rows)
        return tokens

    # --- reads ------------------------------------------------------------------------------

    @property
    def questions(self) -> list[str]:
        with self._connect() as con:
            return json.loads(self._meta(con, "questions") or "[]")

    @property
    def methods(self) -> tuple[str, str] | None:
        with self._connect() as con:
            value = self._meta(con, "methods")
        return None if value is None else tuple(json.loads(value))

    def item_ids(self) -> list[str]:
        with self._connect() as con:
            return [r[0] for r in con.execute("SELECT item_id FROM items ORDER BY position")]

    def attention_checks(self) -> dict[str, tuple[str, str]]:
        """``item id -> (question, expected method)``."""
        with self._connect() as con:
            rows = con.execute(
                "SELECT item_id, check_question, expected FROM items WHERE expected IS NOT NULL"
            ).fetchall()
        return {r[0]: (r[1], r[2]) for r in rows}

    def is_token(self, token: str) -> bool:
        with self._connect() as con:
            return self._has_token(con, token)

    def _has_token(self, con: sqlite3.Connection, token: str) -> bool:
        """Whether ``token`` is a rater's: its keyed hash is looked up (the index sees only
        the hash, which tells a timing observer nothing about valid tokens) and compared in
        constant time."""
        hashed = self.token_hash(token)
        row = con.execute("SELECT token FROM raters WHERE token = ?", (hashed,)).fetchone()
        return row is not None and hmac.compare_digest(row[0], hashed)

    def assignment(self, token: str, item_id: str) -> tuple[str, str]:
        """``(left_method, right_method)`` for this rater and item: a fixed, secret coin flip
        (HMAC of the token and item id under the study's salt). Server side only."""
        with self._connect() as con:
            return self._assignment(con, token, item_id)

    def _assignment(self, con: sqlite3.Connection, token: str, item_id: str) -> tuple[str, str]:
        row = con.execute(
            "SELECT method_a, method_b FROM items WHERE item_id = ?", (item_id,)
        ).fetchone()
        if row is None:
            raise StudyError(f"unknown item {item_id!r}")
        digest = self._hmac(con, "side", token, item_id)
        return (row[1], row[0]) if digest[0] & 1 else (row[0], row[1])

    def _hmac(self, con: sqlite3.Connection, *parts: str) -> bytes:
        salt = bytes.fromhex(self._meta(con, "salt"))
        return hmac.new(salt, "\x00".join(parts).encode(), hashlib.sha256).digest()

    def video_path(self, token: str, item_id: str, side: str) -> tuple[str, str | None]:
        """``(video, reference)`` paths (relative to the results root) for the ``side``
        (``"left"``/``"right"``) this rater sees of ``item_id``. Server side only: the paths
        name the method, so the client should get them under opaque URLs (item id + side)."""
        if side not in CHOICES:
            raise StudyError(f"side must be one of {list(CHOICES)}, got {side!r}")
        with self._connect() as con:
            left, right = self._assignment(con, token, item_id)
            row = con.execute(
                "SELECT method_a, video_a, video_b, reference FROM items WHERE item_id = ?",
                (item_id,),
            ).fetchone()
        method = left if side == "left" else right
        return (row[1] if method == row[0] else row[2]), row[3]

    def next_item(self, token: str) -> str | None:
        """The first item, in this rater's own order (a secret shuffle, HMAC under the salt,
        so attention checks sit among the others), with a question left unanswered; ``None``
        when the rater is done."""
        with self._connect() as con:
            if not self._has_token(con, token):
                raise StudyError("unknown token")
            n_questions = len(json.loads(self._meta(con, "questions") or "[]"))
            answered = dict(
                con.execute(
                    "SELECT item_id, COUNT(*) FROM votes WHERE token = ? GROUP BY item_id",
                    (self.token_hash(token),),
                ).fetchall()
            )
            items = [r[0] for r in con.execute("SELECT item_id FROM items")]
            order = sorted(items, key=lambda i: self._hmac(con, "order", token, i))
        return next((i for i in order if answered.get(i, 0) < n_questions), None)

    def progress(self, token: str) -> dict[str, int]:
        """``{"answered": votes cast, "total": items x questions, "items_done": items with
        every question answered}`` for one rater."""
        with self._connect() as con:
            if not self._has_token(con, token):
                raise StudyError("unknown token")
            n_items = con.execute("SELECT COUNT(*) FROM items").fetchone()[0]
            n_questions = len(json.loads(self._meta(con, "questions") or "[]"))
            hashed = self.token_hash(token)
            answered = con.execute(
                "SELECT COUNT(*) FROM votes WHERE token = ?", (hashed,)
            ).fetchone()[0]
            done = con.execute(
                "SELECT COUNT(*) FROM (SELECT item_id FROM votes WHERE token = ? "
                "GROUP BY item_id HAVING COUNT(*) >= ?)",
                (hashed, n_questions),
            ).fetchone()[0]
        return {"answered": answered, "total": n_items * n_questions, "items_done": done}

    # --- writes -----------------------------------------------------------------------------

    def record_vote(self, token: str, item_id: str, question: str, choice: str) -> str:
        """Record that rater ``token`` picked the ``choice`` (``"left"``/``"right"``) video for
        ``question`` on ``item_id``. The method on that side is looked up and stored here, so
        the client never learns it; returns ``"ok"``.

        Raises:
            StudyError: unknown token, item or question, or a choice other than left/right.
            DuplicateVote: this rater already answered this question for this item.
        """
        if choice not in CHOICES:
            raise StudyError(f"choice must be one of {list(CHOICES)}, got {choice!r}")
        with self._connect() as con:
            if question not in json.loads(self._meta(con, "questions") or "[]"):
                raise StudyError(f"unknown question {question!r}")
            if not self._has_token(con, token):
                raise StudyError("unknown token")
            left, right = self._assignment(con, token, item_id)
            try:
                con.execute(
                    "INSERT INTO votes (token, item_id, question, choice, left_method, method,"
                    " created) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (
                        self.token_hash(token),
                        item_id,
                        question,
                        choice,
                        left,
                        left if choice == "left" else right,
                        time.time(),
                    ),
                )
            except sqlite3.IntegrityError:
                raise DuplicateVote(
                    f"question {question!r} of item {item_id!r} is already answered"
                ) from None
        return "ok"

    def export_votes(self) -> list[dict]:
        """Every vote joined with its item: token (the rater token's keyed hash, see
        :meth:`token_hash`; never the token), item_id, emotion, clip, question, choice,
        left_method, method (chosen), methods (the pair), expected, check_question, created."""
        with self._connect() as con:
            con.row_factory = sqlite3.Row
            rows = con.execute(
                "SELECT v.token, v.item_id, i.emotion, i.clip, v.question, v.choice,"
                " v.left_method, v.method, i.method_a, i.method_b, i.expected,"
                " i.check_question, v.created FROM votes v JOIN items i USING (item_id)"
                " ORDER BY v.id"
            ).fetchall()
        out = []
        for r in rows:
            d = dict(r)
            d["methods"] = (d.pop("method_a"), d.pop("method_b"))
            out.append(d)
        return out


#: the ``items`` table's columns, in order (``position`` last)
_ITEM_COLUMNS = ("item_id", "emotion", "clip", "method_a", "method_b", "video_a", "video_b",
                 "reference", "expected", "check_question", "position")  # fmt: skip


def _prompts(study: StudyDefinition) -> dict[str, str]:
    """``question id -> prompt``: what a vote answered, stored and compared with the study."""
    return {q.id: q.prompt for q in study.questions}


def _meta_difference(key: str, held: Any, value: Any) -> str:
    """How a stored study-level value differs from the definition's (prompts: the first
    question whose wording differs)."""
    if key == "prompts" and isinstance(held, dict):
        for qid in sorted(set(held) | set(value)):
            if held.get(qid) != value.get(qid):
                return (f"question {qid!r} asked {held.get(qid)!r}, the definition asks "
                        f"{value.get(qid)!r}")  # fmt: skip
    return f"its {key} {held!r}, the definition's {value!r}"


def _item_rows(study: StudyDefinition) -> list[tuple]:
    """The ``items`` rows of ``study`` (see :data:`_ITEM_COLUMNS`)."""
    return [
        (
            i.id,
            i.emotion,
            i.clip,
            *i.methods,
            *i.videos,
            i.reference,
            i.expected,
            i.check_question,
            pos,
        )
        for pos, i in enumerate(study.items)
    ]


def _first_item_difference(stored: list[tuple], rows: list[tuple]) -> str | None:
    """The first difference between the database's item rows and the definition's, in
    words; ``None`` when they are equal."""
    for pos, (held, new) in enumerate(zip(stored, rows, strict=False)):  # lengths: below
        if held[0] != new[0]:
            return f"item {pos + 1} is {held[0]!r} in the database, {new[0]!r} in the definition"
        for column, a, b in zip(_ITEM_COLUMNS[1:], held[1:], new[1:], strict=True):
            if a != b:
                return f"item {held[0]!r}: its {column} {a!r}, the definition's {b!r}"
    if len(stored) != len(rows):
        longer, where = (stored, "database") if len(stored) > len(rows) else (rows, "definition")
        return (
            f"{len(stored)} items in the database, {len(rows)} in the definition "
            f"(first one only in the {where}: {longer[min(len(stored), len(rows))][0]!r})"
        )
    return None
