"""The robustness corpus's shared checks: a bad input makes an ``asccl`` command exit
non-zero with one line on stderr that names the offending file or key, and leaves every
output already written as it was.

Each module here builds its bad inputs at test time (nothing is committed) and runs the
real command line on each, in process through :func:`asccl.cli.main` (an exception that
escapes ``main`` is a traceback and fails the test) or, where the process itself matters,
as a subprocess.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import pytest

from asccl.cli import main


def snapshot(folder: Path) -> dict[str, str]:
    """SHA-256 of every file under ``folder`` (relative path -> digest); {} if absent."""
    if not folder.exists():
        return {}
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def one_line_error(argv: Sequence[str], capsys: pytest.CaptureFixture, *names: str) -> str:
    """Run ``asccl argv`` in process; assert it fails with one stderr line naming ``names``.

    Returns the line. Lines that logging or tqdm wrote before the error (progress bars,
    ``INFO`` messages) are allowed on stderr only if they come before it; the error line is
    the last one and starts with ``asccl: error: ``.
    """
    capsys.readouterr()  # drop what came before
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    errors = [line for line in captured.err.splitlines() if line.startswith("asccl: error:")]
    assert code != 0, f"asccl {' '.join(map(str, argv))} exited 0:\n{captured.out}{captured.err}"
    assert "Traceback" not in captured.err, captured.err
    assert len(errors) == 1, f"expected one error line, got:\n{captured.err}"
    line = errors[0]
    assert captured.err.rstrip("\n").splitlines()[-1] == line, captured.err
    for name in names:
        assert str(name) in line, f"{name!r} not named in: {line}"
    return line


def one_line_error_subprocess(argv: Sequence[str], cwd: Path, *names: str) -> str:
    """As :func:`one_line_error`, in a fresh ``python -m asccl`` process."""
    result = subprocess.run(
        [sys.executable, "-m", "asccl", *map(str, argv)],
        capture_output=True, text=True, cwd=cwd, timeout=300,
    )  # fmt: skip
    assert result.returncode != 0, result.stdout + result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("asccl: error:")]
    assert len(lines) == 1, result.stderr
    for name in names:
        assert str(name) in lines[0], f"{name!r} not named in: {lines[0]}"
    return lines[0]
