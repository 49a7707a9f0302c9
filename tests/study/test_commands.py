"""The functions behind ``asccl study create | invite | serve | report``."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("starlette")

from tests.study.conftest import db_snapshot

from asccl.cli import main
from asccl.study.commands import (
    ADMIN_TOKEN_ENV,
    create,
    invite,
    make_app,
    open_store,
    report,
    serve,
)
from asccl.study.commands import study_files as files_of
from asccl.study.definition import describe_selection, read_study_toml
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
    store = open_store(study_toml)
    for link in links:
        assert link.startswith("https://study.example.org/r/")
        assert store.is_token(link.rsplit("/", 1)[1])
    with pytest.raises(ValueError, match=r"^-n must be between 1 and 10000, got 0$"):
        invite(study_toml, 0)
    with pytest.raises(ValueError, match=r"^--base-url must start with http"):
        invite(study_toml, 1, base_url="javascript:alert(1)//")
    with pytest.raises(FileNotFoundError, match="asccl study create"):
        invite(study_toml.with_name("missing.toml"), 1)


def test_secrets_file_and_admin_token(study_toml, monkeypatch):
    secrets_file = files_of(study_toml)["secrets"]
    saved = json.loads(secrets_file.read_text())  # made by create: the key hashes tokens
    app = make_app(study_toml)
    assert stat.S_IMODE(secrets_file.stat().st_mode) == 0o600
    assert json.loads(secrets_file.read_text()) == saved
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
    # the admin instructions put the token in a header, never in a URL; the printed curl
    # line, run by a shell (curl replaced by a function printing its arguments), sends it
    assert "export.csv?" not in out and "status?" not in out and "admin_token=" not in out
    (line,) = [x.strip() for x in out.splitlines() if x.strip().startswith("curl ")]
    shell = f'curl() {{ printf "%s\\n" "$@"; }}; {line}'
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    args = subprocess.run(["bash", "-c", shell], capture_output=True, text=True, env=env,
                          check=True).stdout.splitlines()  # fmt: skip
    admin = json.loads(files_of(study_toml)["secrets"].read_text())["admin_token"]
    assert args[args.index("-H") + 1] == f"Authorization: Bearer {admin}"
    assert args[-1] == "http://127.0.0.1:8123/admin/export.csv"
    serve(study_toml, host="0.0.0.0", port=8124)
    assert "warning: plain HTTP" in capsys.readouterr().out


def test_report_from_toml_or_database(study_toml, tmp_path, capsys):
    files = files_of(study_toml)
    store = open_store(study_toml)
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
    # the selection create recorded is in the report: which clips the shares are over
    selection = paths["selection"].read_text().splitlines()
    recorded = describe_selection(read_study_toml(study_toml), f"{study_toml} [[selection]]")
    assert recorded and selection[2:] == [f"- {line}" for line in recorded]
    assert json.loads(paths["summary"].read_text())["raters_excluded"] == 0
    assert paths["plot_realism"].is_file() and "markdown:" in capsys.readouterr().out
    other = report(files["db"], tmp_path / "elsewhere")
    assert other["csv"].read_text() == paths["csv"].read_text()
    assert "selection" not in other  # a database alone holds no selection
    with pytest.raises(FileNotFoundError):
        report(tmp_path / "nothing.sqlite", tmp_path / "x")


def _modes(folder) -> dict[str, int]:
    return {p.name: stat.S_IMODE(p.stat().st_mode) for p in folder.iterdir() if p.is_file()}


@pytest.mark.parametrize("umask", [0o000, 0o022, 0o277])
def test_secret_files_are_0600_whatever_the_umask(results_root, tmp_path, umask, capsys):
    """study.sqlite, its WAL/SHM side files and study.secret.json: 0600 after `asccl study
    create` and `invite`, even under a umask that would leave them world-readable (0) or
    take the owner's write bit (0o277)."""
    toml = tmp_path / "s" / "study.toml"
    old = os.umask(umask)
    try:
        assert main(["study", "create", "--results", str(results_root), "--study", str(toml),
                     "--methods", "baseline", "asccl",
                     "--items-per-emotion", "1", "--attention-checks", "1"]) == 0  # fmt: skip
        created = _modes(toml.parent)
        assert main(["study", "invite", "--study", str(toml), "-n", "2"]) == 0
        invited = _modes(toml.parent)
        with open_store(toml)._connect() as con:  # the side files exist while it is open
            con.execute("SELECT COUNT(*) FROM raters").fetchone()
            in_use = _modes(toml.parent)
    finally:
        os.umask(old)
    assert {"study.sqlite-wal", "study.sqlite-shm"} <= set(in_use)
    for modes in (created, invited, in_use):
        for name in ("study.sqlite", "study.sqlite-wal", "study.sqlite-shm", "study.secret.json"):
            assert modes.get(name, 0o600) == 0o600, (name, modes)
    assert "study.secret.json" in created
    capsys.readouterr()


def test_an_old_database_file_mode_is_tightened(study_toml):
    db = files_of(study_toml)["db"]
    os.chmod(db, 0o644)  # as made by earlier versions under umask 022
    open_store(study_toml)
    assert stat.S_IMODE(db.stat().st_mode) == 0o600


def test_tokens_are_never_stored(study_toml):
    """The database holds keyed hashes only: a copy of it opens no rater's session."""
    files = files_of(study_toml)
    tokens = [link.rsplit("/", 1)[1] for link in invite(study_toml, 5)]
    store = open_store(study_toml)
    for token in tokens:
        store.record_vote(token, store.next_item(token), "realism", "left")
    on_disk = b"".join(
        p.read_bytes() for p in files["db"].parent.iterdir() if p.name.startswith("study.sqlite")
    )
    for token in tokens:
        assert token.encode() not in on_disk
        assert store.token_hash(token).encode() in on_disk
    assert {v["token"] for v in store.export_votes()} == {store.token_hash(t) for t in tokens}


def test_another_key_is_refused_and_a_lost_one_is_not_replaced(study_toml):
    files = files_of(study_toml)
    invite(study_toml, 1)
    saved = files["secrets"].read_bytes()
    data = json.loads(saved)
    files["secrets"].write_text(json.dumps({**data, "key": "ab" * 32}))
    with pytest.raises(StudyError, match="another key"):
        invite(study_toml, 1)
    files["secrets"].unlink()  # lost: a new key would silently break every link
    with pytest.raises(FileNotFoundError, match="restore it from a backup"):
        invite(study_toml, 1)
    assert not files["secrets"].exists()
    files["secrets"].write_bytes(saved)
    assert len(invite(study_toml, 1)) == 1


def test_a_study_made_before_tokens_were_hashed_keeps_working(study_toml):
    """An earlier version's study: raw tokens in a 0644 database, no secrets file yet. The
    next command migrates it: the raters' links and votes still work, no raw token is left."""
    from tests.study.test_store import _db_bytes, _legacy_database

    files = files_of(study_toml)
    for name in ("db", "secrets"):
        files[name].unlink()
    tokens, votes = _legacy_database(files["db"], read_study_toml(study_toml), 2)
    os.chmod(files["db"], 0o644)
    assert len(invite(study_toml, 1)) == 1
    assert stat.S_IMODE(files["db"].stat().st_mode) == 0o600
    assert stat.S_IMODE(files["secrets"].stat().st_mode) == 0o600
    assert not any(t.encode() in _db_bytes(files["db"]) for t in tokens)
    app = make_app(study_toml)
    store = app.handlers.store
    assert all(store.is_token(t) for t in tokens)
    assert len(store.export_votes()) == len(votes)
    assert store.progress(tokens[1])["answered"] == 6


def test_study_config_names_the_flag_of_a_bad_setting():
    from asccl.config import ConfigError
    from asccl.study.config import StudyConfig

    config = StudyConfig(study="s/study.toml", results="runs/results", methods=["a", "b"],
                         allowed_origins="https://study.example.org")  # fmt: skip
    assert config.study == Path("s/study.toml") and config.results == Path("runs/results")
    assert config.methods == ("a", "b") and config.allowed_origins == ("https://study.example.org",)
    bad = [({"items_per_emotion": 0}, "--items-per-emotion must be >= 1, got 0"),
           ({"attention_checks": -1}, "--attention-checks must be >= 0"),
           ({"raters": 10_001}, "-n must be between 1 and 10000"),
           ({"port": 0}, "--port must be between 1 and 65535"),
           ({"min_pass": float("nan")}, "--min-pass must be between 0.0 and 1.0, got nan"),
           ({"methods": ("a", "a")}, "--methods must be two different"),
           ({"methods": ("a",)}, "--methods must be two different"),
           ({"base_url": "ftp://x"}, "--base-url must start with http"),
           ({"study": ""}, "--study must be a path, got an empty string"),
           ({"out": 5}, "--out must be a path, got 5"),
           ({"allowed_origins": [""]}, "--allow-origin must be origins"),
           ({"setting": ""}, "--setting must be a non-empty name")]  # fmt: skip
    for changes, message in bad:
        with pytest.raises(ConfigError) as err:
            StudyConfig(**changes)
        assert str(err.value).startswith(message), (changes, str(err.value))


def _study_parsers() -> dict:
    """``asccl study``'s action parsers, by action name."""
    import argparse

    from asccl.cli import build_parser

    def choices(parser):
        (sub,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        return sub.choices

    return choices(choices(build_parser())["study"])


def test_every_study_option_has_help_text():
    for action, parser in _study_parsers().items():
        for option in parser._actions:
            assert option.help and option.help.strip(), (action, option.option_strings)


def test_the_default_methods_are_the_demo_experiments_icface_pair():
    """What `asccl experiment` (and so `asccl demo`) names its results folders, and the
    setting those folders have: the default study compares two of them."""
    from asccl.spfem.experiment import MODELS, VARIANTS
    from asccl.spfem.results import MODEL_SETTINGS, method_name
    from asccl.study.config import StudyConfig

    default = StudyConfig()  # what `asccl study create` uses when --methods is left out
    written = {model: [method_name(model, v) for v in VARIANTS] for model in MODELS}
    assert list(default.methods) in written.values()
    model = next(m for m, names in written.items() if list(default.methods) == names)
    assert default.setting in MODEL_SETTINGS[model]
    text = _study_parsers()["create"].format_help()
    assert f"(default: {' '.join(default.methods)}:" in " ".join(text.split())


def test_one_method_is_one_method_not_its_letters(results_root, tmp_path, capsys):
    """`--methods ganmut` is the one method "ganmut" (refused: a study compares two), never
    the letters g, a, n, m, u, t; two names are the pair."""
    toml = tmp_path / "s" / "study.toml"
    argv = ["study", "create", "--results", str(results_root), "--study", str(toml)]
    assert main([*argv, "--methods", "ganmut"]) == 2
    [line] = capsys.readouterr().err.splitlines()
    assert line == ("asccl: error: --methods must be two different method folder names "
                    "(BASELINE OURS), got ['ganmut']")  # fmt: skip
    assert not toml.exists()
    assert main([*argv, "--methods", "baseline", "asccl", "--items-per-emotion", "1",
                 "--attention-checks", "1"]) == 0  # fmt: skip
    assert read_study_toml(toml).methods == ("baseline", "asccl")


@pytest.fixture
def two_settings(results_root, tmp_path) -> Path:
    """The test results with a second setting (``cross_id``, the same clips) and a second
    pair of methods (``dsm``, ``dsm_asccl``: copies of baseline and asccl)."""
    root = tmp_path / "results"
    shutil.copytree(results_root, root)
    for folder in ("baseline", "asccl", "references"):
        shutil.copytree(root / folder / "inter_id", root / folder / "cross_id")
    shutil.copytree(root / "baseline", root / "dsm")
    shutil.copytree(root / "asccl", root / "dsm_asccl")
    return root


@pytest.mark.parametrize(
    ("again", "named"),
    [
        ({"setting": "cross_id"}, "setting 'inter_id', the definition's 'cross_id'"),
        ({"methods": ("dsm", "dsm_asccl")}, "methods ['baseline', 'asccl']"),
        ({"attention_checks": 0}, "5 items in the database, 4 in the definition"),
    ],
)
def test_create_again_into_a_study_folder_is_refused_before_writing(
    two_settings, tmp_path, capsys, again, named
):
    """Another setting (same item ids, other videos) or other methods into a study that has
    votes: refused with one line naming the difference; the TOML and database unchanged."""
    args = {"items_per_emotion": 2, "attention_checks": 1}
    toml = create(two_settings, tmp_path / "s" / "study.toml", **args)
    (token,) = [link.rsplit("/", 1)[1] for link in invite(toml, 1)]
    store = open_store(toml)
    store.record_vote(token, store.next_item(token), "realism", "left")
    files = files_of(toml)
    before = (toml.read_bytes(), db_snapshot(files["db"]), files["secrets"].read_bytes())
    with pytest.raises(StudyError, match=r"different study \(.*new study folder") as info:
        create(two_settings, toml, **{**args, **again})
    assert named in str(info.value) and "\n" not in str(info.value)
    after = (toml.read_bytes(), db_snapshot(files["db"]), files["secrets"].read_bytes())
    assert after == before
    assert create(two_settings, toml, **args) == toml  # the same study again: fine
    make_app(toml)  # and it serves


def test_questions_edited_after_create_are_refused(study_toml):
    """A question removed from the TOML by hand: serving would ask two questions where the
    database waits for three (a rater never finishes); refused with one line instead."""
    text = study_toml.read_text()
    start = text.index('[[questions]]\nid = "realism"')
    study_toml.write_text(text[:start] + text[text.index("[[questions]]", start + 1) :])
    with pytest.raises(StudyError, match=r"questions \['realism', 'emotion', 'mouth'\], the "):
        make_app(study_toml)
    assert main(["study", "serve", "--study", str(study_toml)]) != 0


def test_relative_paths_from_the_readme_work_from_anywhere(results_root, tmp_path, monkeypatch,
                                                           capsys):  # fmt: skip
    """README: `asccl study create --results runs/demo/experiment/results --study
    study/study.toml`, then serve. The results root is recorded relative to the TOML's
    folder, so it is found from the working directory create ran in, and from any other."""
    monkeypatch.chdir(tmp_path)
    shutil.copytree(results_root, "runs/demo/experiment/results")
    argv = ["study", "create", "--results", "runs/demo/experiment/results", "--study",
            "study/study.toml", "--methods", "baseline", "asccl", "--items-per-emotion", "1",
            "--attention-checks", "0"]  # fmt: skip
    assert main(argv) == 0
    assert read_study_toml("study/study.toml").results_root == "../runs/demo/experiment/results"
    for cwd in (tmp_path, tmp_path / "runs"):
        monkeypatch.chdir(cwd)
        toml = os.path.relpath(tmp_path / "study" / "study.toml")
        app = make_app(toml)
        assert app.handlers.media  # every item's videos found
    # a definition written before: an absolute root is taken as it is
    text = (tmp_path / "study" / "study.toml").read_text()
    moved = tmp_path / "elsewhere"
    shutil.copytree(tmp_path / "runs/demo/experiment/results", moved)
    text = text.replace('"../runs/demo/experiment/results"', json.dumps(str(moved)))
    (tmp_path / "study" / "study.toml").write_text(text)
    assert make_app(tmp_path / "study" / "study.toml").handlers.media
