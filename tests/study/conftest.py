"""Study web fixtures: a tiny results folder of real MP4s, a study made from it, a client."""

from __future__ import annotations

import re
import socket
import sqlite3
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from asccl.data.video import write_video

#: A clip name that would inject markup if a page printed it unescaped.
EVIL_CLIP = "<img src=x onerror=alert(1)>"
COLOURS = {"sources": 40, "references": 200, "baseline": 90, "asccl": 150}


def _clip(path: Path, level: int, frames: int = 6) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    ramp = np.linspace(0, 60, frames).astype(np.uint8)
    write_video(
        path,
        (np.full((32, 32, 3), level, np.uint8) + r for r in ramp),
        fps=10,
        preset="ultrafast",
    )


def make_results(root: Path, clips: dict[str, list[str]]) -> Path:
    """``<root>/{sources,references,baseline,asccl}`` with one tiny MP4 per emotion and clip,
    each method a different grey level (a screenshot tells them apart)."""
    for emotion, names in clips.items():
        for name in names:
            for folder, level in COLOURS.items():
                sub = {"sources": f"sources/{emotion}"}.get(folder, f"{folder}/inter_id/{emotion}")
                _clip(root / sub / f"{name}.mp4", level)
    return root


@pytest.fixture(scope="session")
def results_root(tmp_path_factory) -> Path:
    """happy: c0, c1, and the markup-named clip; sad: c0, c1."""
    root = tmp_path_factory.mktemp("results")
    return make_results(root, {"happy": ["c0", "c1", EVIL_CLIP], "sad": ["c0", "c1"]})


@pytest.fixture
def study_toml(results_root, tmp_path) -> Path:
    """5 items (every clip) + 1 attention check, 3 questions."""
    from asccl.study.commands import create

    return create(results_root, tmp_path / "study.toml", items_per_emotion=3, attention_checks=1)


def db_snapshot(db: Path) -> list[str]:
    """Every row of the database, as SQL (to assert a request changed nothing)."""
    con = sqlite3.connect(db)
    try:
        return list(con.iterdump())
    finally:
        con.close()


HIDDEN_RE = re.compile(r'<input type="hidden" name="(csrf|item)" value="([^"]*)">')


def form_values(html: str) -> dict[str, str]:
    """The hidden ``csrf`` and ``item`` fields of an item page."""
    return dict(HIDDEN_RE.findall(html))


class LoopbackServer:
    """uvicorn serving ``app`` on 127.0.0.1 (a free port) in a thread: ``with`` starts and
    stops it; ``url`` is its base URL."""

    def __init__(self, app):
        import uvicorn

        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        config = uvicorn.Config(app, log_level="warning", access_log=False, backlog=256)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(
            target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True
        )

    def __enter__(self) -> LoopbackServer:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
        self.sock.close()
