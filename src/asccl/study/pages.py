"""The rater's HTML, CSS and JavaScript, as strings (no template engine, no CDN: works offline).

Every value put into the HTML goes through :func:`html.escape` (quotes included), so question
prompts or file names with markup in them show as text. The pages carry no method names and no
file paths: media URLs are opaque (per rater and item, see :mod:`asccl.study.server`).
The page works without JavaScript (native video controls, ``required`` radios); the script
keeps the videos in sync (play, pause and seek together) and swaps the native controls for
one bar (play/pause button, seek slider) that drives them all.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from html import escape


@dataclass(frozen=True)
class ItemPage:
    """What one item page shows. URLs are opaque; ``questions`` are ``(id, prompt)``."""

    title: str
    action: str
    csrf: str
    item_key: str
    answered: int
    total: int
    item_number: int
    n_items: int
    left: str
    right: str
    questions: Sequence[tuple[str, str]]
    source: str | None = None
    reference: str | None = None
    error: str | None = None


CSS = """\
body { font: 16px/1.45 system-ui, sans-serif; margin: 0; color: #1a1a1a; background: #fafafa; }
main { max-width: 1040px; margin: 0 auto; padding: 1rem 1.25rem 3rem; }
h1 { font-size: 1.4rem; margin: 0 0 .5rem; }
.progress { display: flex; align-items: center; gap: .75rem; margin: .25rem 0 1rem; }
progress { flex: 1; height: 1rem; }
.row { display: flex; flex-wrap: wrap; gap: 1rem; justify-content: center; margin-bottom: .75rem; }
figure { margin: 0; text-align: center; }
figcaption { font-weight: 600; margin-top: .25rem; }
video { width: 240px; height: 240px; background: #000; border-radius: 4px; }
.pair video { width: 300px; height: 300px; }
.controls { display: flex; align-items: center; justify-content: center; gap: .75rem;
            margin: .25rem 0 1rem; }
.controls[hidden] { display: none; }
#seek { width: 420px; max-width: 60vw; }
#clock { font-variant-numeric: tabular-nums; min-width: 6.5rem; }
video { cursor: pointer; }
fieldset { border: 1px solid #bbb; border-radius: 6px; margin: 0 0 .75rem; padding: .5rem 1rem; }
legend { font-weight: 600; padding: 0 .25rem; }
label { display: inline-block; margin-right: 2rem; padding: .25rem 0; cursor: pointer; }
input[type=radio] { width: 1.1rem; height: 1.1rem; vertical-align: -.15rem; }
button { font: inherit; padding: .45rem 1.2rem; border-radius: 6px; border: 1px solid #335;
         background: #2b4c8c; color: #fff; cursor: pointer; }
button.secondary { background: #fff; color: #2b4c8c; }
:focus-visible { outline: 3px solid #f0a500; outline-offset: 2px; }
.error { background: #fde8e8; border: 1px solid #c33; padding: .5rem 1rem; border-radius: 6px; }
"""

JS = """\
// Keep every video of the page in step: play, pause and seek one, the others follow.
// With this script the native controls give way to one bar (play/pause, seek) for all.
(function () {
  "use strict";
  const videos = Array.from(document.querySelectorAll("video.sync"));
  if (!videos.length) { return; }
  const others = (v) => videos.filter((o) => o !== v);
  const play = (v) => { const p = v.play(); if (p && p.catch) { p.catch(() => {}); } };
  const playing = () => videos.some((v) => !v.paused);
  const atEnd = (v) => v.ended || (v.duration > 0 && v.currentTime >= v.duration - 0.05);
  videos.forEach((v) => {
    v.addEventListener("play", () => others(v).forEach((o) => {
      if (o.paused) { o.currentTime = v.currentTime; play(o); }
    }));
    // A shorter clip that ran out (or was clamped by a seek) stays on its last frame and
    // neither stops nor pulls back the others.
    v.addEventListener("pause", () => {
      if (!atEnd(v)) { others(v).forEach((o) => { if (!o.paused) { o.pause(); } }); }
    });
    v.addEventListener("seeked", () => {
      if (atEnd(v)) { return; }
      others(v).forEach((o) => {
        const t = Math.min(v.currentTime, o.duration || v.currentTime);
        if (Math.abs(o.currentTime - t) > 0.05) { o.currentTime = t; }
      });
    });
  });
  const bar = document.getElementById("controls");
  const button = document.getElementById("play-all");
  const seek = document.getElementById("seek");
  const clock = document.getElementById("clock");
  if (!bar || !button || !seek || !clock) { return; }
  const duration = () => Math.max(0, ...videos.map((v) => (isFinite(v.duration) ? v.duration : 0)));
  function toggle() {
    if (playing()) { videos.forEach((v) => v.pause()); return; }
    const restart = videos.some((v) => v.ended);
    videos.forEach((v) => { if (restart) { v.currentTime = 0; } play(v); });
  }
  function show() {
    const d = duration(), t = Math.max(...videos.map((v) => v.currentTime));
    button.textContent = playing() ? "Pause" : "Play";
    if (document.activeElement !== seek && d > 0) {  // not while the rater moves it
      seek.value = String(Math.round((1000 * t) / d));
    }
    clock.textContent = t.toFixed(1) + " / " + d.toFixed(1) + " s";
  }
  videos.forEach((v) => {
    v.controls = false;
    v.addEventListener("click", toggle);
    ["play", "pause", "timeupdate", "loadedmetadata", "seeked"].forEach(
      (e) => v.addEventListener(e, show));
  });
  button.addEventListener("click", toggle);
  seek.addEventListener("input", () => {
    const t = (Number(seek.value) / 1000) * duration();
    videos.forEach((v) => { v.currentTime = Math.min(t, v.duration || t); });
  });
  bar.hidden = false;
  show();
})();
"""


def _page(title: str, body: str) -> str:
    return (
        '<!doctype html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{escape(title)}</title>\n"
        '<link rel="stylesheet" href="/static/study.css">\n</head>\n<body>\n<main>\n'
        f"{body}</main>\n</body>\n</html>\n"
    )


def _video(url: str, caption: str, slot: str) -> str:
    return (
        f'<figure><video class="sync" id="video-{escape(slot)}" src="{escape(url)}" '
        'muted playsinline preload="auto" controls '
        f'aria-label="{escape(caption)} video"></video>'
        f"<figcaption>{escape(caption)}</figcaption></figure>\n"
    )


def item_page(page: ItemPage) -> str:
    """The page of one item: progress, videos, the questions (each required), submit."""
    parts = [f"<h1>{escape(page.title)}</h1>\n"]
    parts.append(
        '<div class="progress">'
        f'<progress id="progress" value="{page.answered}" max="{page.total}" '
        f'aria-label="Progress">{page.answered} of {page.total}</progress>'
        f'<span id="progress-text">Item {page.item_number} of {page.n_items}</span></div>\n'
    )
    if page.error:
        parts.append(f'<p class="error" role="alert">{escape(page.error)}</p>\n')
    parts.append(
        "<p>Watch the videos (they play together), then answer each question by choosing the "
        "left or the right video of the lower row.</p>\n"
    )
    refs = []
    if page.source:
        refs.append(_video(page.source, "Source", "source"))
    if page.reference:
        refs.append(_video(page.reference, "Reference", "reference"))
    if refs:
        parts.append(f'<div class="row refs">\n{"".join(refs)}</div>\n')
    parts.append(
        '<div class="row pair">\n'
        + _video(page.left, "Left", "left")
        + _video(page.right, "Right", "right")
        + "</div>\n"
    )
    parts.append(
        '<div class="controls" id="controls" hidden>'
        '<button type="button" id="play-all" class="secondary">Play</button> '
        '<input type="range" id="seek" min="0" max="1000" value="0" '
        'aria-label="Position of all videos"> <span id="clock" aria-live="off"></span></div>\n'
    )
    parts.append(
        f'<form method="post" action="{escape(page.action)}" id="vote">\n'
        f'<input type="hidden" name="csrf" value="{escape(page.csrf)}">\n'
        f'<input type="hidden" name="item" value="{escape(page.item_key)}">\n'
    )
    for qid, prompt in page.questions:
        name = escape(f"q_{qid}")
        parts.append(f"<fieldset>\n<legend>{escape(prompt)}</legend>\n")
        for side, text in (("left", "Left video"), ("right", "Right video")):
            parts.append(
                f'<label><input type="radio" name="{name}" value="{side}" required> '
                f"{text}</label>\n"
            )
        parts.append("</fieldset>\n")
    parts.append('<button type="submit" id="submit">Submit and continue</button>\n</form>\n')
    parts.append('<script src="/static/study.js"></script>\n')
    return _page(f"{page.title}: item {page.item_number} of {page.n_items}", "".join(parts))


def done_page(title: str, n_items: int) -> str:
    """The page a rater sees once every item is answered."""
    return _page(
        title,
        f"<h1>{escape(title)}</h1>\n"
        '<div class="progress"><progress id="progress" value="1" max="1" '
        'aria-label="Progress">done</progress>'
        f'<span id="progress-text">{n_items} of {n_items} items</span></div>\n'
        '<p id="done">Thank you: every item is answered. You can close this page.</p>\n',
    )


def message_page(title: str, message: str, link: str | None = None) -> str:
    """A short page for errors and for the site root; ``link``: a "Continue" link."""
    more = f'<p><a href="{escape(link)}" id="continue">Continue the study</a></p>\n' if link else ""
    return _page(title, f"<h1>{escape(title)}</h1>\n<p>{escape(message)}</p>\n{more}")
