"""The study's web app: :func:`create_app` returns a Starlette (ASGI) app, served by uvicorn.

Routes (``<token>`` is a rater's invitation token, see :class:`~asccl.study.store.StudyStore`):

- ``GET /r/<token>``: the rater's next unanswered item (so closing the browser and coming back
  resumes), or the thank-you page; progress bar; the source and reference videos and the pair,
  left/right as the store assigns them (a secret HMAC coin flip per rater and item).
- ``POST /r/<token>/vote``: one answer per question (``q_<question>`` = ``left``/``right``),
  the page's CSRF value and its item key; 303 back to ``GET /r/<token>``.
- ``GET /r/<token>/m/<item key>/<slot>``: a video (slot ``left``, ``right``, ``source`` or
  ``reference``). Item keys are opaque per rater (HMAC), so neither URLs nor the HTML name a
  method, an attention check or a file; HTTP range requests work (seeking).
- ``GET /admin/status`` (JSON) and ``GET /admin/export.csv``: need the admin token, in an
  ``Authorization: Bearer`` or ``X-Admin-Token`` header (compared in constant time). A token
  in the URL is refused (400) whether right or not: URLs end up in server and proxy logs and
  browser history; admin routes take no query string at all. The export names raters by a
  hash of their token's keyed hash, never the token.

Safety: every input is checked here (token shape, item key, question ids, choices, field set,
content type); a request the checks refuse is answered 4xx before the store is written to.
Votes of one POST go in question order and the store's UNIQUE (token, item, question) refuses a
second vote, so a repeated POST is a 409 that changes nothing. Posts need the per-rater CSRF
value (HMAC of the token under the app's key) and, when the browser sends an ``Origin``, one of
the allowed origins (the server's own by default). Bodies over ``max_body`` bytes get 413.
Responses carry a strict Content-Security-Policy (no inline script), ``Referrer-Policy:
same-origin`` (tokens live in URLs, so no other site may get them as a referrer; with
``no-referrer`` browsers send ``Origin: null`` on form posts), ``X-Frame-Options: DENY`` and
``nosniff``.

Media are served only from the results folder and the media cache (see
:mod:`asccl.study.media`).
"""

from __future__ import annotations

import asyncio
import csv
import hashlib
import hmac
import io
import os
import re
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import parse_qs

from asccl.optional import MissingDependencyError
from asccl.study import pages
from asccl.study.definition import StudyDefinition
from asccl.study.media import ItemMedia, study_media
from asccl.study.secret_file import StudySecrets
from asccl.study.store import CHOICES, DuplicateVote, StudyError, StudyStore

try:
    from starlette.applications import Starlette
    from starlette.concurrency import run_in_threadpool
    from starlette.requests import Request
    from starlette.responses import (
        FileResponse,
        HTMLResponse,
        JSONResponse,
        PlainTextResponse,
        RedirectResponse,
        Response,
    )
    from starlette.routing import Route
except ImportError as exc:  # pragma: no cover - depends on the install
    raise MissingDependencyError("starlette", "the study web app needs starlette", exc) from exc

SLOTS = ("left", "right", "source", "reference")
TOKEN_RE = re.compile(r"^[A-Za-z0-9_-]{16,128}$")
KEY_RE = re.compile(r"^[0-9a-f]{20}$")
MAX_BODY = 16 * 1024
SECURITY_HEADERS = {
    "content-security-policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; media-src 'self'; "
        "img-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
    ),
    "x-content-type-options": "nosniff",
    "referrer-policy": "same-origin",
    "x-frame-options": "DENY",
}


# --- the app --------------------------------------------------------------------------------


class _Guard:
    """ASGI middleware: refuses bodies over ``max_body`` bytes (413, before the app sees the
    request) and adds the security headers to every response."""

    def __init__(self, app, max_body: int):
        self.app = app
        self.max_body = max_body

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message):
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                present = {k.lower() for k, _ in headers}
                for name, value in SECURITY_HEADERS.items():
                    if name.encode() not in present:
                        headers.append((name.encode(), value.encode()))
                message = {**message, "headers": headers}
            await send(message)

        if scope["method"] in ("GET", "HEAD"):
            await self.app(scope, receive, send_with_headers)
            return
        declared = dict(scope.get("headers", [])).get(b"content-length")
        too_big = declared is not None and (not declared.isdigit() or int(declared) > self.max_body)
        chunks, size = [], 0
        while not too_big:
            message = await receive()
            if message["type"] != "http.request":
                break
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            too_big = size > self.max_body
            if not message.get("more_body", False):
                break
        if too_big:
            response = PlainTextResponse("request body too large", status_code=413)
            await response(scope, receive, send_with_headers)
            return
        body, replayed = b"".join(chunks), False

        async def replay():
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send_with_headers)


class StudyApp:
    """The request handlers, over one study and its store (see the module docstring)."""

    def __init__(
        self,
        study: StudyDefinition,
        store: StudyStore,
        media: dict[str, ItemMedia],
        secrets_: StudySecrets,
        title: str = "Video study",
        allowed_origins: Sequence[str] = (),
    ):
        self.study = study
        self.store = store
        self.media = media
        self.secrets = secrets_
        self.title = title
        self.allowed_origins = {o.rstrip("/") for o in allowed_origins}
        self.items = {i.id: i for i in study.items}
        self.question_ids = study.question_ids
        self._locks: defaultdict[str, asyncio.Lock] = defaultdict(asyncio.Lock)

    # --- helpers ----------------------------------------------------------------------------

    def _mac(self, *parts: str) -> str:
        return hmac.new(self.secrets.key, "\x00".join(parts).encode(), hashlib.sha256).hexdigest()

    def csrf_value(self, token: str) -> str:
        return self._mac("csrf", token)

    def item_key(self, token: str, item_id: str) -> str:
        """The opaque per-rater name of an item in URLs and forms."""
        return self._mac("item", token, item_id)[:20]

    def item_for_key(self, token: str, key: str) -> str | None:
        if not KEY_RE.fullmatch(key):
            return None
        for item_id in self.items:
            if hmac.compare_digest(self.item_key(token, item_id), key):
                return item_id
        return None

    def _error(self, status: int, message: str, token: str | None = None) -> HTMLResponse:
        link = f"/r/{token}" if token else None
        return HTMLResponse(pages.message_page(self.title, message, link), status_code=status)

    async def _rater(self, request: Request) -> str | None:
        token = request.path_params["token"]
        if not TOKEN_RE.fullmatch(token):
            return None
        return token if await run_in_threadpool(self.store.is_token, token) else None

    def _origin_ok(self, request: Request) -> bool:
        origin = request.headers.get("origin")
        if origin is None:  # non-browser clients and some older browsers send none
            return request.headers.get("sec-fetch-site", "same-origin") in (
                "same-origin",
                "none",
            )
        origin = origin.rstrip("/")
        own = f"{request.url.scheme}://{request.headers.get('host', '')}"
        return origin == own or origin in self.allowed_origins

    # --- rater routes -----------------------------------------------------------------------

    async def index(self, request: Request) -> Response:
        return HTMLResponse(
            pages.message_page(self.title, "Please open the invitation link you were sent.")
        )

    async def rater_page(self, request: Request) -> Response:
        token = await self._rater(request)
        if token is None:
            return self._error(404, "Unknown invitation link.")
        item_id = await run_in_threadpool(self.store.next_item, token)
        progress = await run_in_threadpool(self.store.progress, token)
        n_items = len(self.items)
        if item_id is None:
            return HTMLResponse(
                pages.done_page(self.title, n_items), headers={"cache-control": "no-store"}
            )
        key = self.item_key(token, item_id)
        media = self.media[item_id]
        base = f"/r/{token}/m/{key}"
        page = pages.ItemPage(
            title=self.title,
            action=f"/r/{token}/vote",
            csrf=self.csrf_value(token),
            item_key=key,
            answered=progress["answered"],
            total=progress["total"],
            item_number=min(progress["items_done"] + 1, n_items),
            n_items=n_items,
            left=f"{base}/left",
            right=f"{base}/right",
            source=f"{base}/source" if media.source else None,
            reference=f"{base}/reference" if media.reference else None,
            questions=[(q.id, q.prompt) for q in self.study.questions],
        )
        return HTMLResponse(pages.item_page(page), headers={"cache-control": "no-store"})

    async def vote(self, request: Request) -> Response:
        content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if content_type != "application/x-www-form-urlencoded":
            return self._error(415, "Answers must be sent by the page's form.")
        if not self._origin_ok(request):
            return self._error(403, "This form was sent from another site.")
        token = await self._rater(request)
        if token is None:
            return self._error(404, "Unknown invitation link.")
        try:
            body = (await request.body()).decode("utf-8")
            form = parse_qs(body, keep_blank_values=True, strict_parsing=bool(body),
                            max_num_fields=8 + len(self.question_ids))  # fmt: skip
        except (UnicodeDecodeError, ValueError):
            return self._error(400, "Malformed form data.", token)
        fields = {"csrf", "item", *(f"q_{q}" for q in self.question_ids)}
        if set(form) - fields or any(len(v) != 1 for v in form.values()):
            return self._error(400, "Unexpected form fields.", token)
        form = {k: v[0] for k, v in form.items()}
        if not hmac.compare_digest(form.get("csrf", "").encode(), self.csrf_value(token).encode()):
            return self._error(403, "This form has expired; please reload the page.", token)
        item_id = self.item_for_key(token, form.get("item", ""))
        if item_id is None:
            return self._error(404, "Unknown item.", token)
        answers = [(q, form.get(f"q_{q}")) for q in self.question_ids]
        missing = [q for q, a in answers if a not in CHOICES]
        if missing:
            return self._error(400, "Please answer every question (left or right).", token)
        recorded = 0
        async with self._locks[token]:  # one form of a rater at a time: answers never mix
            for question, choice in answers:
                try:
                    await run_in_threadpool(
                        self.store.record_vote, token, item_id, question, choice
                    )
                    recorded += 1
                except DuplicateVote:
                    continue  # answered before (e.g. a crash mid-form): the first answer stays
                except StudyError as exc:
                    return self._error(400, str(exc), token)
        if recorded == 0:
            return self._error(409, "This item is already answered.", token)
        return RedirectResponse(f"/r/{token}", status_code=303)

    async def media_file(self, request: Request) -> Response:
        token = await self._rater(request)
        slot = request.path_params["slot"]
        if token is None:
            return PlainTextResponse("unknown invitation", status_code=404)
        item_id = self.item_for_key(token, request.path_params["key"])
        if item_id is None or slot not in SLOTS:
            return PlainTextResponse("not found", status_code=404)
        media = self.media[item_id]
        if slot in ("left", "right"):
            left, right = await run_in_threadpool(self.store.assignment, token, item_id)
            path = media.by_method[left if slot == "left" else right]
        else:
            path = media.source if slot == "source" else media.reference
        if path is None:
            return PlainTextResponse("not found", status_code=404)
        return FileResponse(
            path,
            media_type="video/webm" if path.suffix.lower() == ".webm" else "video/mp4",
            headers={"cache-control": "private, max-age=3600"},
        )

    # --- admin routes -----------------------------------------------------------------------

    def _admin_refusal(self, request: Request) -> tuple[int, str] | None:
        """``None`` when the request carries the admin token in a header, else the status
        and the reason: 400 for any query string (a token in a URL leaks through logs and
        browser history, so it is refused even when right), 403 for a missing or wrong token."""
        if request.url.query:
            return 400, (
                "admin routes take no query string: send the admin token in a header, "
                "'Authorization: Bearer <token>' or 'X-Admin-Token: <token>', never in the URL "
                "(URLs are kept in server and proxy logs and browser history)"
            )
        given = request.headers.get("x-admin-token")
        auth = request.headers.get("authorization", "")
        if not given and auth.lower().startswith("bearer "):
            given = auth[7:].strip()
        expected = self.secrets.admin_token.encode()
        if given and hmac.compare_digest(given.encode(), expected):
            return None
        return 403, "admin token required (header 'Authorization: Bearer <token>')"

    async def admin_status(self, request: Request) -> Response:
        refusal = self._admin_refusal(request)
        if refusal is not None:
            return JSONResponse({"error": refusal[1]}, status_code=refusal[0])
        votes = await run_in_threadpool(self.store.export_votes)
        per_rater: dict[str, int] = {}
        for v in votes:
            per_rater[v["token"]] = per_rater.get(v["token"], 0) + 1
        full = len(self.items) * len(self.question_ids)
        return JSONResponse(
            {
                "items": len(self.items),
                "questions": self.question_ids,
                "votes": len(votes),
                "raters_started": len(per_rater),
                "raters_done": sum(n >= full for n in per_rater.values()),
            },
            headers={"cache-control": "no-store"},
        )

    async def admin_export(self, request: Request) -> Response:
        refusal = self._admin_refusal(request)
        if refusal is not None:
            return PlainTextResponse(refusal[1], status_code=refusal[0])
        votes = await run_in_threadpool(self.store.export_votes)
        return PlainTextResponse(
            export_csv(votes),
            media_type="text/csv; charset=utf-8",
            headers={
                "content-disposition": 'attachment; filename="votes.csv"',
                "cache-control": "no-store",
            },
        )

    async def css(self, request: Request) -> Response:
        return Response(pages.CSS, media_type="text/css")

    async def js(self, request: Request) -> Response:
        return Response(pages.JS, media_type="text/javascript")


EXPORT_COLUMNS = (
    "rater", "item_id", "emotion", "clip", "question", "choice", "left_method", "method",
    "method_a", "method_b", "expected", "check_question", "created",
)  # fmt: skip


def rater_id(token: str) -> str:
    """A rater's pseudonym in exports: the first 12 hex digits of SHA-256(token), where
    ``token`` is the stored one (the keyed hash of the invitation token)."""
    return hashlib.sha256(token.encode()).hexdigest()[:12]


def export_csv(votes: Sequence[dict]) -> str:
    """Votes (from :meth:`StudyStore.export_votes`) as CSV, tokens replaced by :func:`rater_id`."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(EXPORT_COLUMNS)
    for v in votes:
        row = dict(v, rater=rater_id(v["token"]), method_a=v["methods"][0],
                   method_b=v["methods"][1])  # fmt: skip
        writer.writerow(["" if row[c] is None else row[c] for c in EXPORT_COLUMNS])
    return buffer.getvalue()


def create_app(
    study: StudyDefinition,
    store: StudyStore,
    secrets_: StudySecrets,
    *,
    results_root: str | os.PathLike | None = None,
    media_cache: str | os.PathLike | None = None,
    title: str = "Video study",
    max_body: int = MAX_BODY,
    allowed_origins: Sequence[str] = (),
):
    """The ASGI app for ``study`` (its items loaded into ``store``).

    Args:
        results_root: where the study's videos are (default: ``study.results_root``).
        media_cache: where clips a browser cannot play are encoded to MP4 (default:
            ``<store folder>/media_cache``).
        max_body: largest accepted request body in bytes (larger: 413).
        allowed_origins: extra ``Origin`` values accepted on posts, e.g. the public
            ``https://study.example.org`` of a TLS reverse proxy in front of the server.
    """
    store.load_study(study)  # no-op when loaded; refuses a database of another study
    store.use_key(secrets_.key)  # rater tokens are hashed under the app's key (checked)
    root = Path(results_root or study.results_root)
    cache = Path(media_cache) if media_cache else store.path.parent / "media_cache"
    handlers = StudyApp(
        study, store, study_media(study, root, cache), secrets_, title, allowed_origins
    )
    routes = [
        Route("/", handlers.index),
        Route("/static/study.css", handlers.css),
        Route("/static/study.js", handlers.js),
        Route("/r/{token}", handlers.rater_page, methods=["GET"]),
        Route("/r/{token}/vote", handlers.vote, methods=["POST"]),
        Route("/r/{token}/m/{key}/{slot}", handlers.media_file, methods=["GET"]),
        Route("/admin/status", handlers.admin_status),
        Route("/admin/export.csv", handlers.admin_export),
    ]
    guarded = _Guard(Starlette(routes=routes), max_body)
    guarded.handlers = handlers  # for tests and tools: item keys, CSRF values
    return guarded
