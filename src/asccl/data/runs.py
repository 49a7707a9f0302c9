"""Running one stage's items: the process pool, the summary, the failure log.

:func:`_run_items` runs per-item work in a process pool with a progress bar and records
each item done or failed (with the file at fault) in a :class:`StageSummary`;
:func:`_write_log` writes the failures under ``<out>/logs``. Pool workers die with the
process that started them (``PR_SET_PDEATHSIG`` on Linux, a watchdog thread elsewhere),
so killing a run, even with SIGKILL, leaves no orphans.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tqdm import tqdm

from asccl.data.errors import DataError
from asccl.io import write_text_atomic
from asccl.optional import missing_dependency


@dataclass
class StageSummary:
    """What a command did: counts, failures ``(item, reason)``, and its outputs."""

    stage: str
    done: int = 0
    skipped: int = 0
    failures: list[tuple[str, str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    outputs: dict[str, Path] = field(default_factory=dict)

    def report(self) -> str:
        lines = [
            f"[{self.stage}] {self.done} done, {self.skipped} already done (skipped), "
            f"{len(self.failures)} failed",
            *(f"  {note}" for note in self.notes),
        ]
        lines += [f"  failed: {item}: {reason}" for item, reason in self.failures[:10]]
        if len(self.failures) > 10:
            lines.append(f"  ... {len(self.failures) - 10} more in the log")
        lines += [f"  {name}: {path}" for name, path in self.outputs.items()]
        return "\n".join(lines)

    def error_line(self) -> str | None:
        """One line for ``asccl: error: ...`` when items failed: the first failure (its
        file and problem), how many failed, and the log; ``None`` when none did."""
        if not self.failures:
            return None
        item, reason = self.failures[0]
        log = self.outputs.get("log")
        where = f", listed in {log}" if log else ""
        return f"{item}: {reason} ([{self.stage}] {len(self.failures)} items failed{where})"


def _run_items(
    name: str,
    items: list[Any],
    work: Callable[[Any], None],
    describe: Callable[[Any], str],
    workers: int,
    summary: StageSummary,
) -> None:
    """Run ``work(item)`` for every item (in a pool when ``workers > 0``); record failures.

    ``work`` raises :class:`DataError` (or any exception) to fail one item only. A worker
    process that dies (killed, out of memory, a crash in native code) fails the items it
    and the broken pool still held, each with that reason.
    """
    progress = tqdm(total=len(items), desc=name, unit="item", leave=False)
    if workers <= 0 or len(items) <= 1:
        for item in items:
            _record(summary, describe(item), _call(work, item))
            progress.update()
    else:
        pool = ProcessPoolExecutor(
            max_workers=workers, initializer=_die_with_parent, initargs=(os.getpid(),)
        )
        try:
            futures = {pool.submit(_call, work, item): item for item in items}
            for future in as_completed(futures):
                try:
                    error = future.result()
                except BrokenProcessPool:
                    error = (None, "a worker process died (killed or crashed) before finishing it")
                _record(summary, describe(futures[future]), error)
                progress.update()
        except BaseException:  # Ctrl-C: do not wait for the queued items
            pool.shutdown(wait=False, cancel_futures=True)
            raise
        pool.shutdown()
    progress.close()


def _die_with_parent(parent: int) -> None:
    """Pool initialiser: end this worker when ``parent`` (the run's process) ends.

    Linux: the kernel sends SIGKILL when the parent dies (``prctl(PR_SET_PDEATHSIG)``);
    elsewhere a daemon thread polls ``os.getppid()``. Either way the parent may already
    be gone by the time this runs: then exit at once.
    """
    armed = False
    if sys.platform.startswith("linux"):
        try:
            import ctypes

            libc = ctypes.CDLL(None, use_errno=True)
            armed = libc.prctl(1, signal.SIGKILL, 0, 0, 0) == 0  # 1: PR_SET_PDEATHSIG
        except (OSError, AttributeError):
            armed = False
    if os.getppid() != parent:
        os._exit(1)
    if not armed:

        def watch() -> None:
            while os.getppid() == parent:
                time.sleep(0.5)
            os._exit(1)

        threading.Thread(target=watch, name="asccl-parent-watch", daemon=True).start()


def _call(work: Callable[[Any], None], item: Any) -> tuple[str | None, str] | None:
    """``work(item)``; ``None``, or ``(file or None, problem)`` of the error it raised."""
    try:
        work(item)
    except DataError as exc:
        return exc.path, exc.problem
    except ImportError as exc:  # a missing package fails every item: stop, say it once
        if (missing := missing_dependency(exc)) is not None:
            raise missing from None
        return None, f"{type(exc).__name__}: {' '.join(str(exc).split())}"
    except Exception as exc:  # one bad item must not stop the run
        return None, f"{type(exc).__name__}: {' '.join(str(exc).split())}"
    return None


def _record(summary: StageSummary, item: str, error: tuple[str | None, str] | None) -> None:
    """Count ``item`` done, or add ``(item, reason)``; the reason names the file at fault
    (``file: problem``) unless that file is the item itself."""
    if error is None:
        summary.done += 1
        return
    path, problem = error
    summary.failures.append((item, problem if path in (None, item) else f"{path}: {problem}"))


def _write_log(out: Path, summary: StageSummary, problems: Iterable[DataError] = ()) -> Path:
    logs = out / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    stem = f"{summary.stage}-{time.strftime('%Y%m%d-%H%M%S')}"
    path = logs / f"{stem}.log"
    for n in range(2, 1000):  # two runs in one second keep both logs
        if not path.exists():
            break
        path = logs / f"{stem}-{n}.log"
    lines = [f"{item}: {reason}" for item, reason in summary.failures]
    lines += [f"{p.path}: {p.problem}" for p in problems]
    write_text_atomic(path, "\n".join(lines) + ("\n" if lines else ""))
    summary.outputs["log"] = path
    return path
