"""The study web app through starlette's TestClient: sessions, blinding, bad inputs (4xx and
the database unchanged), CSRF/Origin, body limit, media routes, admin routes, escaping."""

from __future__ import annotations

import csv
import io
import re
import warnings
from pathlib import Path

import pytest

pytest.importorskip("starlette")
pytest.importorskip("httpx")

with warnings.catch_warnings():  # newer starlette prefers httpx2; httpx works
    warnings.filterwarnings("ignore", message="Using `httpx` with")
    from starlette.testclient import TestClient

from tests.study.conftest import EVIL_CLIP, db_snapshot, form_values

from asccl.study.commands import invite, make_app, results_root_of, study_files
from asccl.study.definition import read_study_toml, write_study_toml
from asccl.study.server import rater_id

ADMIN = "test-admin-token-0123456789"
ANSWERS = {"q_realism": "left", "q_emotion": "right", "q_mouth": "left"}


@pytest.fixture
def setup(study_toml):
    app = make_app(study_toml, admin_token=ADMIN)
    tokens = [link.rsplit("/", 1)[1] for link in invite(study_toml, 3)]
    client = TestClient(app, follow_redirects=False)
    return app, client, tokens, study_files(study_toml)["db"]


def answer(client, token: str, answers=ANSWERS, **extra):
    page = client.get(f"/r/{token}")
    assert page.status_code == 200
    data = {**form_values(page.text), **answers, **extra}
    return client.post(f"/r/{token}/vote", data=data)


def test_full_session_is_blinded_and_resumable(setup, study_toml):
    app, client, (token, other, _), _db = setup
    store = app.handlers.store  # with the study's key
    study = read_study_toml(study_toml)
    forbidden = ["baseline", "asccl", "sources", "references", "check", "inter_id", ".mp4",
                 "happy", "sad", "c0", "c1", str(results_root_of(study_toml, study.results_root)),
                 study.results_root]  # fmt: skip
    seen_keys = set()
    for n in range(len(study.items)):
        page = client.get(f"/r/{token}")
        assert page.status_code == 200
        fields = form_values(page.text)
        html = page.text.replace(token, "TOKEN").replace(fields["item"], "KEY")
        html = html.replace(fields["csrf"], "CSRF")
        for word in forbidden:
            assert word not in html, word
        assert f'value="{3 * n}" max="18"' in html and f"Item {n + 1} of 6" in html
        assert html.count('type="radio"') == 6 and html.count("required") == 6
        assert fields["item"] not in seen_keys
        seen_keys.add(fields["item"])
        if n == 2:  # close the browser, come back later: a fresh client resumes here
            again = TestClient(app).get(f"/r/{token}")
            assert form_values(again.text)["item"] == fields["item"]
        reply = client.post(f"/r/{token}/vote", data={**fields, **ANSWERS})
        assert reply.status_code == 303 and reply.headers["location"] == f"/r/{token}"
    done = client.get(f"/r/{token}")
    assert done.status_code == 200 and 'id="done"' in done.text
    votes = [v for v in store.export_votes() if v["token"] == store.token_hash(token)]
    assert len(votes) == 18
    for v in votes:  # the side the rater clicked maps to the method the store assigned there
        left, right = store.assignment(token, v["item_id"])
        choice = ANSWERS[f"q_{v['question']}"]
        assert v["choice"] == choice and v["method"] == (left if choice == "left" else right)
    assert store.progress(other)["answered"] == 0
    # item keys are per rater: another rater's page names the same items differently
    assert form_values(client.get(f"/r/{other}").text)["item"] not in seen_keys


def test_security_headers(setup):
    _, client, (token, *_), _ = setup
    reply = client.get(f"/r/{token}")
    csp = reply.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp
    assert reply.headers["referrer-policy"] == "same-origin"
    assert reply.headers["x-frame-options"] == "DENY"
    assert reply.headers["cache-control"] == "no-store"
    assert client.get("/static/study.js").headers["content-type"].startswith("text/javascript")
    # offline: every script, style sheet and video comes from this server
    assert re.findall(r'(?:src|href)="(?!/)', reply.text) == []


# --- bad inputs: a clean 4xx and nothing written -------------------------------------------


def _unchanged(db, client, method, url, expected_status, **kwargs):
    before = db_snapshot(db)
    reply = client.request(method, url, **kwargs)
    assert reply.status_code == expected_status, reply.text
    assert "Traceback" not in reply.text
    assert db_snapshot(db) == before
    return reply


def test_unknown_or_malformed_token(setup):
    _, client, (token, *_), db = setup
    fields = form_values(client.get(f"/r/{token}").text)
    for bad in ["A" * 32, "short", "a" * 300, "%2e%2e%2f%2e%2e%2fetc", "x'--", token[:-1]]:
        _unchanged(db, client, "GET", f"/r/{bad}", 404)
        _unchanged(db, client, "POST", f"/r/{bad}/vote", 404, data={**fields, **ANSWERS})
    _unchanged(db, client, "GET", "/r/", 404)


def test_wrong_item(setup, study_toml):
    _, client, (token, other, _), db = setup
    fields = form_values(client.get(f"/r/{token}").text)
    other_key = form_values(client.get(f"/r/{other}").text)["item"]
    item_ids = [i.id for i in read_study_toml(study_toml).items]
    for key in ["0" * 20, other_key, "", "happy/c0", item_ids[0], "../../etc/passwd"]:
        data = {**fields, **ANSWERS, "item": key}
        _unchanged(db, client, "POST", f"/r/{token}/vote", 404, data=data)


def test_duplicate_vote_changes_nothing(setup):
    _, client, (token, *_), db = setup
    fields = form_values(client.get(f"/r/{token}").text)
    assert client.post(f"/r/{token}/vote", data={**fields, **ANSWERS}).status_code == 303
    flipped = {k: ("right" if v == "left" else "left") for k, v in ANSWERS.items()}
    reply = _unchanged(db, client, "POST", f"/r/{token}/vote", 409, data={**fields, **flipped})
    assert "already answered" in reply.text


def test_partly_answered_item_records_only_the_missing_answers(setup):
    app, client, (token, *_), _db = setup
    store = app.handlers.store
    item_id = store.next_item(token)
    store.record_vote(token, item_id, "realism", "right")  # e.g. a crash mid-way
    fields = form_values(client.get(f"/r/{token}").text)
    assert fields["item"] == app.handlers.item_key(token, item_id)
    assert client.post(f"/r/{token}/vote", data={**fields, **ANSWERS}).status_code == 303
    votes = {v["question"]: v["choice"] for v in store.export_votes()}
    assert votes == {"realism": "right", "emotion": "right", "mouth": "left"}


@pytest.mark.parametrize(
    "change",
    [
        {"q_realism": None},
        {"q_mouth": None},
        {"q_emotion": ""},
        {"q_emotion": "middle"},
        {"q_realism": "LEFT"},
        {"q_other": "left"},
        {"method": "asccl"},
    ],
)
def test_missing_or_invalid_answer(setup, change):
    _, client, (token, *_), db = setup
    data = {**form_values(client.get(f"/r/{token}").text), **ANSWERS, **change}
    data = {k: v for k, v in data.items() if v is not None}
    _unchanged(db, client, "POST", f"/r/{token}/vote", 400, data=data)


def test_repeated_field_and_malformed_body(setup):
    _, client, (token, *_), db = setup
    fields = form_values(client.get(f"/r/{token}").text)
    body = "&".join(f"{k}={v}" for k, v in {**fields, **ANSWERS}.items())
    form = {"content-type": "application/x-www-form-urlencoded"}
    url = f"/r/{token}/vote"
    _unchanged(db, client, "POST", url, 400, content=body + "&q_mouth=right", headers=form)
    _unchanged(db, client, "POST", url, 400, content=body + "&&=", headers=form)
    _unchanged(db, client, "POST", url, 400, content=b"\xff\xfe" + body.encode(), headers=form)


def test_csrf_and_origin(setup):
    _, client, (token, other, _), db = setup
    fields = form_values(client.get(f"/r/{token}").text)
    other_csrf = form_values(client.get(f"/r/{other}").text)["csrf"]
    url = f"/r/{token}/vote"
    for csrf in [None, "", "0" * 64, other_csrf]:
        data = {**fields, **ANSWERS, "csrf": csrf}
        data = {k: v for k, v in data.items() if v is not None}
        _unchanged(db, client, "POST", url, 403, data=data)
    data = {**fields, **ANSWERS}
    for headers in [{"origin": "https://evil.example"}, {"origin": "null"},
                    {"sec-fetch-site": "cross-site"}]:  # fmt: skip
        _unchanged(db, client, "POST", url, 403, data=data, headers=headers)
    _unchanged(db, client, "POST", url, 415, json=data)
    files = {"q_realism": (None, "left")}
    _unchanged(db, client, "POST", url, 415, files=files, data=data)
    _unchanged(db, client, "GET", url, 405)
    same = client.post(url, data=data, headers={"origin": "http://testserver"})
    assert same.status_code == 303


def test_oversized_body(setup):
    _, client, (token, *_), db = setup
    fields = form_values(client.get(f"/r/{token}").text)
    data = {**fields, **ANSWERS, "pad": "x" * 20_000}
    _unchanged(db, client, "POST", f"/r/{token}/vote", 413, data=data)

    def chunks():  # no Content-Length: the limit is counted on the stream
        for _ in range(40):
            yield b"x" * 1024

    form = {"content-type": "application/x-www-form-urlencoded"}
    _unchanged(db, client, "POST", f"/r/{token}/vote", 413, content=chunks(), headers=form)
    big = {"content-length": "99999999", **form}
    _unchanged(db, client, "POST", f"/r/{token}/vote", 413, content=b"a=b", headers=big)


# --- media ----------------------------------------------------------------------------------


def test_media_routes_follow_the_assignment(setup, study_toml):
    app, client, (token, *_), _db = setup
    study = read_study_toml(study_toml)
    store = app.handlers.store
    root = results_root_of(study_toml, study.results_root)
    item_id = store.next_item(token)
    item = next(i for i in study.items if i.id == item_id)
    key = form_values(client.get(f"/r/{token}").text)["item"]
    left, right = store.assignment(token, item_id)
    videos = dict(zip(item.methods, item.videos, strict=True))
    expected = {
        "left": videos[left],
        "right": videos[right],
        "reference": item.reference,
        "source": f"sources/{item.emotion}/{item.clip}.mp4",
    }
    for slot, rel in expected.items():
        reply = client.get(f"/r/{token}/m/{key}/{slot}")
        assert reply.status_code == 200 and reply.headers["content-type"] == "video/mp4"
        assert reply.content == (Path(root) / rel).read_bytes(), slot
        assert "filename" not in reply.headers.get("content-disposition", "")
    ranged = client.get(f"/r/{token}/m/{key}/left", headers={"range": "bytes=0-9"})
    assert ranged.status_code == 206 and len(ranged.content) == 10
    for bad in [f"/r/{token}/m/{key}/middle", f"/r/{token}/m/{'0' * 20}/left",
                f"/r/{'B' * 32}/m/{key}/left", f"/r/{token}/m/{key}/../../study.toml",
                f"/r/{token}/m/..%2F..%2Fstudy.toml/left"]:  # fmt: skip
        assert client.get(bad).status_code == 404, bad


def test_study_paths_must_stay_inside_the_results_folder(study_toml, tmp_path):
    from dataclasses import replace

    study = read_study_toml(study_toml)
    # (written to another folder: the results root as an absolute path)
    study = replace(study, results_root=str(results_root_of(study_toml, study.results_root)))
    item = study.items[0]
    for bad in ["../outside.mp4", "/etc/passwd", "baseline/../../x.mp4"]:
        evil = replace(study, items=(replace(item, videos=(bad, item.videos[1])),))
        toml = write_study_toml(evil, tmp_path / "evil" / f"s{len(bad)}.toml")
        with pytest.raises(ValueError, match=r"inside|leaves"):
            make_app(toml)


# --- escaping and admin ---------------------------------------------------------------------


def test_markup_in_prompts_and_file_names_is_escaped(study_toml, tmp_path):
    text = study_toml.read_text().replace(
        '"Which video looks more realistic?"', '"<script>alert(1)</script> & \\"x\\""'
    )
    evil_toml = tmp_path / "evil.toml"
    evil_toml.write_text(text)
    assert EVIL_CLIP in text  # the clip with markup in its file name is in the study
    app = make_app(evil_toml)
    (token,) = [link.rsplit("/", 1)[1] for link in invite(evil_toml, 1)]
    client = TestClient(app)
    for _ in range(6):
        html = client.get(f"/r/{token}").text
        assert "<script>alert" not in html and "<img" not in html and "onerror" not in html
        assert "&lt;script&gt;alert(1)&lt;/script&gt; &amp; &quot;x&quot;" in html
        assert re.findall(r"<script[^>]*>", html) == ['<script src="/static/study.js">']
        client.post(f"/r/{token}/vote", data={**form_values(html), **ANSWERS})


def test_admin_routes_need_the_admin_token_in_a_header(setup):
    app, client, (token, *_), db = setup
    assert answer(client, token).status_code == 303
    for url in ["/admin/status", "/admin/export.csv"]:
        assert client.get(url).status_code == 403
        assert client.get(url, headers={"x-admin-token": "wrong"}).status_code == 403
        assert client.get(url, headers={"authorization": "Basic " + ADMIN}).status_code == 403
        assert client.get(url, headers={"authorization": f"Bearer {ADMIN[:-1]}"}).status_code == 403
        for headers in [{"x-admin-token": ADMIN}, {"authorization": f"Bearer {ADMIN}"}]:
            assert client.get(url, headers=headers).status_code == 200
        # a token in the URL is refused, right or wrong, even with the header too: URLs end
        # up in logs and browser history; the reply says where the token goes
        for params in [{"admin_token": ADMIN}, {"admin_token": "x"}, {"token": ADMIN}]:
            for headers in [{}, {"x-admin-token": ADMIN}]:
                reply = _unchanged(db, client, "GET", url, 400, params=params, headers=headers)
                assert "header" in reply.text and "never in the URL" in reply.text
                assert ADMIN not in reply.text
    status = client.get("/admin/status", headers={"x-admin-token": ADMIN}).json()
    assert status == {"items": 6, "questions": ["realism", "emotion", "mouth"], "votes": 3,
                      "raters_started": 1, "raters_done": 0}  # fmt: skip
    export = client.get("/admin/export.csv", headers={"authorization": f"Bearer {ADMIN}"})
    stored = app.handlers.store.token_hash(token)
    assert token not in export.text and stored not in export.text
    rows = list(csv.DictReader(io.StringIO(export.text)))
    assert len(rows) == 3 and {r["rater"] for r in rows} == {rater_id(stored)}
    assert {r["method"] for r in rows} <= {"baseline", "asccl", "sources", "references"}


def test_frame_folder_results_are_encoded_for_the_browser(tmp_path, results_root):
    """A PNG frame folder (like the demo's ``asccl`` results) is served as an MP4."""
    import shutil

    import numpy as np
    from PIL import Image

    from asccl.study.commands import create

    root = tmp_path / "results"
    shutil.copytree(results_root, root)
    for mp4 in (root / "asccl").rglob("*.mp4"):
        mp4.unlink()
        mp4.with_suffix("").mkdir()
        for i in range(4):
            Image.fromarray(np.full((30, 30, 3), 60 * i, np.uint8)).save(
                mp4.with_suffix("") / f"{i:05d}.png"
            )
    toml = create(root, tmp_path / "s" / "study.toml", items_per_emotion=1, attention_checks=0)
    app = make_app(toml)
    cached = list((tmp_path / "s" / "study_media").glob("*.mp4"))
    assert len(cached) == 2  # one per item's asccl clip
    token = invite(toml, 1)[0].rsplit("/", 1)[1]
    client = TestClient(app)
    key = form_values(client.get(f"/r/{token}").text)["item"]
    served = {client.get(f"/r/{token}/m/{key}/{s}").content for s in ("left", "right")}
    assert any(c.read_bytes() in served for c in cached)


def test_an_ambiguous_source_is_not_shown(tmp_path, results_root):
    """``sources/happy/c0.mp4`` beside a stale ``c0.mkv``: the results index uses neither
    (ambiguous), so the study page shows no source for that item rather than one of them."""
    import shutil

    from tests.study.conftest import _clip

    from asccl.evaluation.results import scan_results
    from asccl.study.definition import build_study
    from asccl.study.media import study_media

    root = tmp_path / "results"
    shutil.copytree(results_root, root)
    _clip(root / "sources" / "happy" / "c0.mkv", 255)
    assert "c0" in scan_results(root).ambiguous_sources["happy"]
    study = build_study(root, items_per_emotion=3, attention_checks=0)  # every clip
    media = study_media(study, root, tmp_path / "cache")
    assert {"happy/c0", "sad/c0"} <= set(media)
    assert media["happy/c0"].source is None
    assert media["sad/c0"].source == root / "sources" / "sad" / "c0.mp4"
    assert not list((tmp_path / "cache").glob("*.mp4"))  # the .mkv was not even encoded
