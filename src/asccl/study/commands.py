"""What ``asccl study create | invite | serve | report`` do (the CLI only parses arguments).

A study lives in one folder, named after its definition file::

    study.toml           the definition (items, questions; :mod:`asccl.study.definition`)
    study.sqlite         the votes (:class:`~asccl.study.store.StudyStore`, WAL; mode 0600)
    study.secret.json    admin token and the study's key: rater-token hashes, CSRF values,
                         item keys (:mod:`asccl.study.secret_file`; mode 0600)
    study_media/         clips a browser cannot play, encoded to MP4 once
    report/              ``asccl study report`` output (tables, stats, summary, plots)

The videos stay in the results folder the definition points to (``results_root``, recorded
relative to the definition's folder, so the commands work from any working directory).
Every command checks its inputs before it writes anything: a failing command leaves the
study's files as they were. Its settings are a :class:`~asccl.study.config.StudyConfig`
(:func:`run`); the functions below check their arguments with it.
"""

from __future__ import annotations

import os
import shlex
from dataclasses import replace
from pathlib import Path

from asccl.optional import require
from asccl.study.config import DEFAULT_BASE_URL, StudyConfig
from asccl.study.definition import (
    build_study,
    describe_selection,
    read_study_toml,
    write_study_toml,
)
from asccl.study.secret_file import load_secrets
from asccl.study.store import StudyStore

ADMIN_TOKEN_ENV = "ASCCL_STUDY_ADMIN_TOKEN"


def run(action: str, config: StudyConfig) -> None:
    """Run ``asccl study <action>`` (create, invite, serve or report) with ``config``."""
    if action == "create":
        if config.results is None:
            raise ValueError("--results: the results folder to draw the items from is not set")
        create(config.results, config.study, methods=config.methods, setting=config.setting,
               items_per_emotion=config.items_per_emotion, seed=config.seed,
               attention_checks=config.attention_checks)  # fmt: skip
    elif action == "invite":
        invite(config.study, config.raters, base_url=config.base_url)
    elif action == "serve":
        serve(config.study, host=config.host, port=config.port,
              allowed_origins=config.allowed_origins)  # fmt: skip
    elif action == "report":
        report(config.db or config.study, config.out, min_pass=config.min_pass)
    else:
        raise ValueError(f"unknown study action {action!r}; valid: create, invite, serve, report")


def study_files(study_toml: str | os.PathLike) -> dict[str, Path]:
    """The files of the study defined by ``study_toml`` (see the module docstring)."""
    toml = Path(study_toml)
    return {
        "toml": toml,
        "db": toml.with_name(f"{toml.stem}.sqlite"),
        "secrets": toml.with_name(f"{toml.stem}.secret.json"),
        "media": toml.with_name(f"{toml.stem}_media"),
        "report": toml.with_name("report"),
    }


def create(
    results_root: str | os.PathLike,
    study_toml: str | os.PathLike = "study.toml",
    *,
    methods: tuple[str, str] = ("baseline", "asccl"),
    setting: str = "inter_id",
    items_per_emotion: int = 10,
    seed: int = 0,
    attention_checks: int = 2,
) -> Path:
    """Draw a study from a results folder, write ``study_toml``, its database and its secrets
    file; returns the TOML's path. An existing database of another study, or an existing
    ``study_toml`` that does not parse, is an error (nothing is overwritten)."""
    StudyConfig(study=study_toml, results=results_root, methods=methods, setting=setting,
                items_per_emotion=items_per_emotion, seed=seed,
                attention_checks=attention_checks)  # fmt: skip
    study = build_study(results_root, methods, setting, items_per_emotion, seed,
                        attention_checks)  # fmt: skip
    files = study_files(study_toml)
    study = replace(study, results_root=recorded_results_root(study.results_root, files["toml"]))
    if files["toml"].exists():  # may be hand-edited: never replaced unless it is readable
        read_study_toml(files["toml"])
    if files["db"].is_file():  # another study's database: refused before anything is written
        StudyStore(files["db"], create=False).check_study(study)
    store = open_store(files)
    store.load_study(study)  # (checked above: a no-op on this study's own database)
    path = write_study_toml(study, files["toml"])
    n_checks = len(study.attention_checks)
    print(f"{path}: {len(study.items) - n_checks} items + {n_checks} attention checks, "
          f"{len(study.questions)} questions; database {files['db']}")  # fmt: skip
    for line in describe_selection(study, listed_in=f"{path} [[selection]]"):  # left-out clips
        print(f"  {line}")
    return path


def recorded_results_root(results_root: str | os.PathLike, study_toml: str | os.PathLike) -> str:
    """``results_root`` as a definition records it: relative to ``study_toml``'s folder (both
    resolved), so the study works from any working directory and moves with its results
    folder; absolute when no relative path joins them (another drive)."""
    root = Path(results_root).resolve()
    try:
        return Path(os.path.relpath(root, Path(study_toml).parent.resolve())).as_posix()
    except ValueError:  # Windows: another drive
        return str(root)


def results_root_of(study_toml: str | os.PathLike, recorded: str) -> Path:
    """The results folder a definition's ``results_root`` names: an absolute path as it is, a
    relative one against the definition's folder (:func:`recorded_results_root`)."""
    root = Path(recorded)
    return root if root.is_absolute() else Path(study_toml).parent.resolve() / root


def open_store(study: str | os.PathLike | dict[str, Path]) -> StudyStore:
    """The study's :class:`StudyStore` with its key (``study``: a ``study.toml`` path or its
    :func:`study_files`). Checks before it writes: the secrets file (when present) and the
    database (when present) must be sound; a new secrets file is made only when the
    database holds no tokens hashed with another one.

    Raises:
        ValueError: a malformed secrets file, a file that is not a study database, or a
            missing secrets file for a database whose tokens were hashed with it.
    """
    files = study if isinstance(study, dict) else study_files(study)
    secrets_file = files["secrets"]
    secrets_ = load_secrets(secrets_file, create=False) if secrets_file.exists() else None
    store = StudyStore(files["db"])  # refuses a file that is not a study database
    if secrets_ is None:
        if store.has_key_check():
            raise FileNotFoundError(
                f"{secrets_file}: not found, and {files['db']} holds rater tokens hashed with "
                "its key; restore it from a backup"
            )
        secrets_ = load_secrets(secrets_file)
    store.use_key(secrets_.key, key_name=str(secrets_file))
    return store


def _open(study_toml: str | os.PathLike):
    files = study_files(study_toml)
    if not files["toml"].is_file():
        raise FileNotFoundError(f"{files['toml']}: study definition not found "
                                "(make one with `asccl study create`)")  # fmt: skip
    study = read_study_toml(files["toml"])
    store = open_store(files)
    store.load_study(study)
    return study, store, files


def invite(study_toml: str | os.PathLike, n: int, base_url: str = DEFAULT_BASE_URL) -> list[str]:
    """Create ``n`` rater tokens and print (and return) their invitation links."""
    StudyConfig(study=study_toml, raters=n, base_url=base_url)
    _, store, _ = _open(study_toml)
    links = [f"{base_url.rstrip('/')}/r/{t}" for t in store.create_tokens(n)]
    for link in links:
        print(link)
    return links


def admin_curl(url: str, token: str | None, secrets_file: str | os.PathLike) -> str:
    """A shell line that downloads the votes CSV from the server at ``url`` with the admin
    token in a header, never in the URL. ``token``: a shell expression of the token (e.g.
    ``"$ASCCL_STUDY_ADMIN_TOKEN"``); ``None`` reads it from ``secrets_file``."""
    if token is None:
        token = ("$(python -c 'import json, sys; print(json.load(open(sys.argv[1]))"
                 f"[\"admin_token\"])' {shlex.quote(str(secrets_file))})")  # fmt: skip
    return f'curl -fsS -H "Authorization: Bearer {token}" -o votes.csv {url}/admin/export.csv'


def make_app(study_toml: str | os.PathLike, admin_token: str | None = None, **kwargs):
    """The ASGI app of a study (see :func:`asccl.study.server.create_app` for ``kwargs``).
    The admin token is ``admin_token``, else ``$ASCCL_STUDY_ADMIN_TOKEN``, else the one in
    the study's secrets file (made on first use)."""
    from asccl.study.server import create_app

    study, store, files = _open(study_toml)
    secrets_ = load_secrets(files["secrets"])  # open_store made it when absent
    admin_token = admin_token or os.environ.get(ADMIN_TOKEN_ENV)
    if admin_token:
        secrets_ = replace(secrets_, admin_token=admin_token)
    results_root = results_root_of(files["toml"], study.results_root)
    return create_app(study, store, secrets_, results_root=results_root,
                      media_cache=files["media"], **kwargs)  # fmt: skip


def serve(
    study_toml: str | os.PathLike,
    host: str = "127.0.0.1",
    port: int = 8000,
    *,
    admin_token: str | None = None,
    allowed_origins: tuple[str, ...] = (),
    access_log: bool = False,
) -> None:
    """Serve the study with uvicorn until interrupted (binds loopback by default).

    Access logs are off by default: request lines carry rater tokens."""
    StudyConfig(study=study_toml, host=host, port=port, allowed_origins=allowed_origins)
    uvicorn = require("uvicorn", "asccl study serve needs uvicorn")
    app = make_app(study_toml, admin_token, allowed_origins=allowed_origins)
    files = study_files(study_toml)
    url = f"http://{host}:{port}"
    print(f"Serving {files['toml']} on {url} (Ctrl-C stops)")
    print(f"  invite raters: asccl study invite --study {files['toml']} -n 25 --base-url {url}")
    token = ("<the admin token given>" if admin_token
             else f"${ADMIN_TOKEN_ENV}" if os.environ.get(ADMIN_TOKEN_ENV) else None)  # fmt: skip
    print(f"  admin: {url}/admin/status and {url}/admin/export.csv take the admin token in an "
          "'Authorization: Bearer' (or X-Admin-Token) header, never in the URL; the votes:\n"
          f"    {admin_curl(url, token, files['secrets'])}")  # fmt: skip
    if host not in ("127.0.0.1", "localhost", "::1"):
        print("  warning: plain HTTP on a public address; put a TLS reverse proxy in front "
              "(and pass its origin as allowed_origins)")  # fmt: skip
    uvicorn.run(app, host=host, port=port, access_log=access_log, log_level="info")


def report(
    source: str | os.PathLike, out_dir: str | os.PathLike | None = None, min_pass: float = 1.0
) -> dict[str, Path]:
    """Write the study's tables, statistics and plots (:func:`asccl.study.analysis.write_report`)
    from ``source``: a ``study.toml`` (its database next to it) or a database file. Default
    output: ``report/`` next to it. From a ``study.toml`` that records its selection, also
    ``selection.md``: per emotion the clips ``create`` drew and left out. Prints and returns
    ``name -> path``."""
    from asccl.io import write_text_atomic
    from asccl.study.analysis import write_report

    where = "study" if Path(source).suffix == ".toml" else "db"
    StudyConfig(**{where: source}, out=out_dir, min_pass=min_pass)
    source = Path(source)
    db, selection = source, []
    if source.suffix == ".toml":  # checked: a definition that does not parse is reported
        if not source.is_file():
            raise FileNotFoundError(f"{source}: study definition not found (a database "
                                    "alone: asccl study report --db study.sqlite)")  # fmt: skip
        selection = describe_selection(read_study_toml(source), listed_in=f"{source} [[selection]]")
        db = study_files(source)["db"]
    out = Path(out_dir) if out_dir else source.with_name("report")
    paths = write_report(db, out, min_pass=min_pass)
    if selection:  # which clips the shares are over: what create drew and left out
        text = "# Items per emotion, as drawn by `asccl study create`\n\n"
        paths["selection"] = write_text_atomic(
            out / "selection.md", text + "".join(f"- {line}\n" for line in selection)
        )
    for name, path in paths.items():
        print(f"{name}: {path}")
    return paths
