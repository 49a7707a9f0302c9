"""The study's secrets file, ``study.secret.json``: the admin token and the study's key.

The key (32 random bytes, hex) makes the per-rater CSRF values and item keys of the web app
and the keyed hashes under which the vote store keeps rater tokens
(:class:`~asccl.study.store.StudyStore`), so losing the file invalidates every invitation
link. The file is written once, atomically, with mode 0600 whatever the umask, and kept at
0600 (group and other bits are removed when it is opened). No web dependency here: ``create``
and ``invite`` need it without starlette.
"""

from __future__ import annotations

import json
import os
import secrets
import stat
from dataclasses import dataclass
from pathlib import Path

from asccl.io import write_text_atomic

#: Smallest key accepted from a secrets file (bytes).
MIN_KEY_BYTES = 16


@dataclass(frozen=True)
class StudySecrets:
    """The admin token and the key behind CSRF values, item keys and rater-token hashes
    (kept across restarts, so pages open in a browser and invitation links stay valid)."""

    admin_token: str
    key: bytes


def make_private(path: Path) -> None:
    """Remove group and other permission bits of ``path`` (when present and ours to change)."""
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
        if mode & 0o077:
            os.chmod(path, mode & 0o700)
    except (FileNotFoundError, PermissionError):
        pass


def load_secrets(path: str | os.PathLike, create: bool = True) -> StudySecrets:
    """Read the secrets file at ``path``; when absent and ``create``, make a new one first
    (random admin token and key, mode 0600).

    Raises:
        FileNotFoundError: absent and not ``create``.
        ValueError: naming ``path``: not JSON, not an object, or a missing/empty admin token
            or a key that is not at least 16 bytes of hex.
    """
    path = Path(path)
    if not path.exists():
        if not create:
            raise FileNotFoundError(f"{path}: study secrets file not found")
        path.parent.mkdir(parents=True, exist_ok=True)
        data = {"admin_token": secrets.token_urlsafe(24), "key": secrets.token_hex(32)}
        write_text_atomic(path, json.dumps(data) + "\n", mode=0o600)  # private from the start
    problem = None
    try:
        data = json.loads(path.read_bytes().decode("utf-8"))
        token, key = data["admin_token"], bytes.fromhex(data["key"])
        if not isinstance(token, str) or not token:
            problem = "admin_token must be a non-empty string"
        elif len(key) < MIN_KEY_BYTES:
            problem = f"key must be at least {MIN_KEY_BYTES} bytes of hex, got {len(key)}"
    except (ValueError, KeyError, TypeError) as exc:  # JSON and UTF-8 errors are ValueErrors
        problem = f"not a study secrets file ({type(exc).__name__}: {exc})"
    if problem:
        raise ValueError(
            f"{path}: {problem}; restore it from a backup (a new file invalidates every "
            "invitation link and open page of this study)"
        )
    make_private(path)
    return StudySecrets(token, key)
