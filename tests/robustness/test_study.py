"""Robustness corpus, user study: ``asccl study create | invite | serve | report`` on bad
inputs (a missing or method-less results folder, a corrupt ``study.toml``, a
``study.sqlite`` that is not a study database, a truncated or lost ``study.secret.json``,
bad numbers). Each exits non-zero with one stderr line naming the file or option, and the
study's files are left as they were. ``serve`` never binds a port here: ``uvicorn.run`` is
replaced by a function that fails the test, so only the checks before start-up run.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

pytest.importorskip("starlette")

from asccl.cli import main
from asccl.study.commands import open_store
from tests.robustness.conftest import one_line_error, snapshot
from tests.study.conftest import make_results


@pytest.fixture(scope="module")
def results(tmp_path_factory) -> Path:
    """A results folder: sources, references, baseline and asccl, happy and sad, one clip."""
    return make_results(tmp_path_factory.mktemp("results"), {"happy": ["c0"], "sad": ["c0"]})


@pytest.fixture(scope="module")
def made_study(results, tmp_path_factory) -> Path:
    """A study made by the CLI: definition, secrets, a database of three raters, one of
    whom voted on every item."""
    toml = tmp_path_factory.mktemp("made") / "study" / "study.toml"
    assert main(["study", "create", "--results", str(results), "--study", str(toml),
                 "--methods", "baseline", "asccl",
                 "--items-per-emotion", "1", "--attention-checks", "1"]) == 0  # fmt: skip
    assert main(["study", "invite", "--study", str(toml), "-n", "2"]) == 0
    store = open_store(toml)
    (token,) = store.create_tokens(1)
    # every item, attention check included: the rater's item order is a secret shuffle, so
    # voting on the first item alone would leave a study with no comparison vote whenever
    # that item is the attention check (and `report` would rightly refuse it)
    while (item := store.next_item(token)) is not None:
        for question in store.questions:
            store.record_vote(token, item, question, "left")
    return toml


@pytest.fixture
def study(made_study, tmp_path, monkeypatch, capsys) -> Path:
    """A fresh copy of the made study (its ``study.toml``); ``serve`` cannot start."""
    import uvicorn

    def no_server(*args, **kwargs):
        raise AssertionError("serve started a server on bad input")

    monkeypatch.setattr(uvicorn, "run", no_server)
    shutil.copytree(made_study.parent, tmp_path / "study")
    capsys.readouterr()
    return tmp_path / "study" / "study.toml"


def _files(toml: Path) -> dict[str, Path]:
    return {
        "toml": toml,
        "db": toml.with_name("study.sqlite"),
        "secrets": toml.with_name("study.secret.json"),
    }


def _all_commands(toml: Path, results: Path) -> list[list]:
    return [
        ["study", "create", "--results", results, "--study", toml, "--items-per-emotion", "1",
         "--attention-checks", "1", "--methods", "baseline", "asccl"],
        ["study", "invite", "--study", toml, "-n", "1"],
        ["study", "serve", "--study", toml, "--port", "8765"],
        ["study", "report", "--study", toml],
    ]  # fmt: skip


def _refused(argv, capsys, folder: Path, *names) -> str:
    before = snapshot(folder)
    line = one_line_error(argv, capsys, *names)
    assert snapshot(folder) == before, f"asccl {argv[:2]} changed the study's files"
    return line


def _usage_error(argv, capsys, folder: Path, *names) -> str:
    """As :func:`one_line_error` for argument errors, which argparse reports by exiting."""
    before = snapshot(folder)
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_:
        main([str(a) for a in argv])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and "Traceback" not in err
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("asccl: error: "), err
    for name in names:
        assert name in lines[0], f"{name!r} not named in: {lines[0]}"
    assert snapshot(folder) == before
    return lines[0]


# --- the results folder ---------------------------------------------------------------------


def test_create_from_a_missing_results_folder(study, tmp_path, capsys):
    missing = tmp_path / "no_results"
    argv = ["study", "create", "--results", missing, "--study", study]
    _refused(argv, capsys, study.parent, str(missing), "not found")


def test_create_from_results_without_the_methods(study, results, tmp_path, capsys):
    only_sources = tmp_path / "only_sources"
    shutil.copytree(results / "sources", only_sources / "sources")
    argv = ["study", "create", "--results", only_sources, "--study", study]
    _refused(argv, capsys, study.parent, str(only_sources), "no method folders")
    argv = ["study", "create", "--results", results, "--study", study, "--methods", "ganmut",
            "asccl"]  # fmt: skip
    _refused(argv, capsys, study.parent, str(results), "'ganmut'")
    argv = ["study", "create", "--results", results, "--study", study, "--setting", "intra_id"]
    _refused(argv, capsys, study.parent, str(results), "'intra_id'")


def test_serve_with_the_results_folder_gone(study, tmp_path, capsys):
    """The definition points at a results folder that is no longer there."""
    gone = tmp_path / "moved_away"
    text = study.read_text()
    root = json.loads(text.split("results_root = ", 1)[1].splitlines()[0])
    study.write_text(text.replace(json.dumps(root), json.dumps(str(gone))))
    argv = ["study", "serve", "--study", study]
    _refused(argv, capsys, study.parent, str(gone), "not found")


# --- the study's files ----------------------------------------------------------------------

CORRUPT_TOML = {
    "invalid TOML": b'methods = ["baseline", \n',
    "not UTF-8": b'setting = "\xff\xfe"\n',
    "a text seed": b'methods = ["a", "b"]\nsetting = "inter_id"\nitems_per_emotion = 1\n'
    b'seed = "zero"\n',
    "a missing key": b'methods = ["a", "b"]\n',
    "an unknown key": b'methods = ["a", "b"]\nsetting = "x"\nitems_per_emotion = 1\nseed = 0\n'
    b"colour = 1\n",
}


@pytest.mark.parametrize("content", CORRUPT_TOML.values(), ids=CORRUPT_TOML.keys())
def test_a_corrupt_study_toml(study, results, capsys, content):
    study.write_bytes(content)
    for argv in _all_commands(study, results):
        _refused(argv, capsys, study.parent, str(study))


def test_a_missing_study_toml(study, results, capsys):
    missing = study.with_name("other.toml")
    for argv in _all_commands(missing, results)[1:]:  # (create makes it)
        _refused(argv, capsys, study.parent, str(missing))


@pytest.mark.parametrize(
    "content",
    [b"not a database at all\n" * 50, b"SQLite format 3\x00" + b"\x00" * 84 + b"junk" * 300],
    ids=["text", "bad header"],
)
def test_a_study_sqlite_that_is_not_a_database(study, results, capsys, content):
    db = _files(study)["db"]
    db.write_bytes(content)
    for argv in _all_commands(study, results):
        _refused(argv, capsys, study.parent, str(db))
    _refused(["study", "report", "--db", db], capsys, study.parent, str(db))


def test_a_sqlite_file_of_something_else(study, results, capsys):
    import sqlite3

    db = _files(study)["db"]
    db.unlink()
    con = sqlite3.connect(db)
    con.execute("CREATE TABLE notes (x)")
    con.commit()
    con.close()
    for argv in _all_commands(study, results):
        _refused(argv, capsys, study.parent, str(db), "not a study's")


@pytest.mark.parametrize(
    "cut", [0, 10, -5, "not json", "list", "short key"], ids=lambda c: f"cut{c}"
)
def test_a_truncated_study_secret_json(study, results, capsys, cut):
    secrets_file = _files(study)["secrets"]
    text = secrets_file.read_text()
    data = json.loads(text)
    content = {
        "not json": "admin_token: x",
        "list": json.dumps([data["admin_token"], data["key"]]),
        "short key": json.dumps({**data, "key": "abcd"}),
    }.get(cut)
    secrets_file.write_text(content if content is not None else text[:cut])
    for argv in _all_commands(study, results)[:3]:  # (report does not need the key)
        _refused(argv, capsys, study.parent, str(secrets_file))


def test_a_lost_study_secret_json_is_not_replaced(study, results, capsys):
    """A new key would turn every invitation link invalid without a word."""
    secrets_file = _files(study)["secrets"]
    secrets_file.unlink()
    for argv in _all_commands(study, results)[:3]:
        line = _refused(argv, capsys, study.parent, str(secrets_file), "backup")
        assert "study.sqlite" in line
    assert not secrets_file.exists()


def test_a_secret_json_of_another_study(study, results, capsys, tmp_path):
    secrets_file = _files(study)["secrets"]
    data = json.loads(secrets_file.read_text())
    secrets_file.write_text(json.dumps({**data, "key": "0f" * 32}))
    for argv in _all_commands(study, results)[:3]:
        _refused(argv, capsys, study.parent, str(_files(study)["db"]), "another key")


def test_report_of_a_missing_database(study, capsys, tmp_path):
    missing = tmp_path / "none.sqlite"
    _refused(["study", "report", "--db", missing], capsys, study.parent, str(missing))


# --- numbers and options --------------------------------------------------------------------


@pytest.mark.parametrize("value", ["abc", "-1", "0", "2.5", ""])
def test_bad_items_per_emotion(study, results, capsys, value):
    argv = ["study", "create", "--results", results, "--study", study,
            "--items-per-emotion", value]  # fmt: skip
    _usage_error(argv, capsys, study.parent, "--items-per-emotion")


@pytest.mark.parametrize("value", ["x", "-1"])
def test_bad_attention_checks(study, results, capsys, value):
    argv = ["study", "create", "--results", results, "--study", study,
            "--attention-checks", value]  # fmt: skip
    _usage_error(argv, capsys, study.parent, "--attention-checks")


@pytest.mark.parametrize("value", ["abc", "-3", "0", "1e9", "100000000"])
def test_bad_invite_count(study, capsys, value):
    _usage_error(["study", "invite", "--study", study, "-n", value], capsys, study.parent, "-n")


def test_bad_base_url(study, capsys):
    argv = ["study", "invite", "--study", study, "--base-url", "javascript:alert(1)//"]
    _refused(argv, capsys, study.parent, "--base-url")


@pytest.mark.parametrize("value", ["0", "-1", "70000", "http"])
def test_bad_port(study, capsys, value):
    argv = ["study", "serve", "--study", study, "--port", value]
    _usage_error(argv, capsys, study.parent, "--port")


@pytest.mark.parametrize("value", ["2", "-0.5", "nan", "most"])
def test_bad_min_pass(study, capsys, value):
    argv = ["study", "report", "--study", study, "--min-pass", value]
    _usage_error(argv, capsys, study.parent, "--min-pass")


def test_the_made_study_is_sound(study, results, monkeypatch, capsys):
    """The corpus's base case: the same copy passes every command (so the refusals above
    are the bad inputs', not the copy's)."""
    import uvicorn

    calls = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **kwargs: calls.append(kwargs))
    create, invite, serve, report = _all_commands(study, results)
    for argv in (create, invite, serve, [*report, "--min-pass", "0"]):
        assert main([str(a) for a in argv]) == 0, argv
    assert calls == [{"host": "127.0.0.1", "port": 8765, "access_log": False,
                      "log_level": "info"}]  # fmt: skip
