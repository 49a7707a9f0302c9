"""The functions behind ``asccl study create | invite | serve | report``."""

from __future__ import annotations

import json
import stat

import pytest

pytest.importorskip("starlette")

from asccl.study.commands import ADMIN_TOKEN_ENV, create, invite, make_app, report, serve
from asccl.study.commands import study_files as files_of
from asccl.study.definition import read_study_toml
from asccl.study.store import StudyError, StudyStore


def test_create_writes_definition_and_database(results_root, tmp_path, capsys):
    toml = create(results_root, tmp_path / "s" / "study.toml", items_per_emotion=1, seed=3,
                  attention_checks=1)  # fmt: skip
    files = files_of(toml)
    study = read_study_toml(toml)
    assert len(study.items) == 3 and study.seed == 3  # happy, sad + 1 check
    assert StudyStore(files["db"]).item_ids() == [i.id for i in study.items]
    assert "2 items + 1 attention checks, 3 questions" in capsys.readouterr().out
    # the same definition again: fine; another item selection on this database: refused,
    # and the definition on disk is left as it was
    assert create(results_root, toml, items_per_emotion=1, seed=3, attention_checks=1) == toml
    before = toml.read_text()
    with pytest.raises(StudyError, match="different study"):
        create(results_root, toml, items_per_emotion=2, attention_checks=1)
    assert toml.read_text() == before


def test_invite_prints_links(study_toml, capsys):
    links = invite(study_toml, 4, base_url="https://study.example.org/")
    printed = capsys.readouterr().out.split()
    assert printed == links and len(set(links)) == 4
    store = StudyStore(files_of(study_toml)["db"])
    for link in links:
        assert link.startswith("https://study.example.org/r/")
        assert store.is_token(link.rsplit("/", 1)[1])
    with pytest.raises(ValueError):
        invite(study_toml, 0)
    with pytest.raises(FileNotFoundError, match="asccl study create"):
        invite(study_toml.with_name("missing.toml"), 1)


def test_secrets_file_and_admin_token(study_toml, monkeypatch):
    app = make_app(study_toml)
    secrets_file = files_of(study_toml)["secrets"]
    assert stat.S_IMODE(secrets_file.stat().st_mode) == 0o600
    saved = json.loads(secrets_file.read_text())
    assert app.handlers.secrets.admin_token == saved["admin_token"]
    # the key survives a restart (open pages stay valid); the environment overrides the token
    monkeypatch.setenv(ADMIN_TOKEN_ENV, "from-the-environment")
    again = make_app(study_toml)
    assert again.handlers.secrets.key == app.handlers.secrets.key
    assert again.handlers.secrets.admin_token == "from-the-environment"
    assert make_app(study_toml, admin_token="given").handlers.secrets.admin_token == "given"


def test_serve_binds_loopback_by_default(study_toml, monkeypatch, capsys):
    import uvicorn

    calls = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: calls.append((app, kw)))
    serve(study_toml, port=8123)
    (app, kwargs) = calls[0]
    assert kwargs["host"] == "127.0.0.1" and kwargs["port"] == 8123
    assert kwargs["access_log"] is False  # request lines carry rater tokens
    assert len(app.handlers.items) == 6
    out = capsys.readouterr().out
    assert "http://127.0.0.1:8123" in out and "warning" not in out
    serve(study_toml, host="0.0.0.0", port=8124)
    assert "warning: plain HTTP" in capsys.readouterr().out


def test_report_from_toml_or_database(study_toml, tmp_path, capsys):
    files = files_of(study_toml)
    store = StudyStore(files["db"])
    checks = store.attention_checks()
    for token in store.create_tokens(3):
        for item_id in store.item_ids():
            # careful raters: the expected video on checks (else all would be excluded)
            side = "left"
            if item_id in checks:
                side = ["left", "right"][store.assignment(token, item_id).index(checks[item_id][1])]
            for question in store.questions:
                store.record_vote(token, item_id, question, side)
    paths = report(study_toml)
    assert paths["markdown"].parent == files["report"]
    assert json.loads(paths["summary"].read_text())["raters_excluded"] == 0
    assert paths["plot_realism"].is_file() and "markdown:" in capsys.readouterr().out
    other = report(files["db"], tmp_path / "elsewhere")
    assert other["csv"].read_text() == paths["csv"].read_text()
    with pytest.raises(FileNotFoundError):
        report(tmp_path / "nothing.sqlite", tmp_path / "x")
