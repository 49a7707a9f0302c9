"""The stage-1 commands: ``asccl data index | pairs | crops | prepare``.

Each command reads what the previous one wrote under ``config.out``, runs per-item work
(probing a video, aligning a clip pair, cropping a clip) in a process pool with a progress
bar, writes every item's output atomically, skips items whose output already exists and
validates (so a killed run resumes and ``--shard i/n`` array jobs merge without
coordination), and ends with a summary and a log of what failed and why.

Reruns never keep stale outputs. Every item records the settings that shape its content
(:meth:`DataConfig.pair_settings`, :meth:`DataConfig.crop_settings`; not worker counts or
shards): a pair file in its ``"settings"`` entry, a crop store in the sibling
``<store>.settings.json``. A rerun with other settings *redoes* those items and says how
many (``4 pairs made with other settings (dtw_metric: l1 -> cosine): redone``); items of
an older asccl that recorded nothing count as "settings unknown" and are redone too. Each
output is replaced atomically, so an item whose redo fails keeps its old file, which the
merged ``pairs.csv``/``aligned_pairs.json`` then leave out: they hold only pairs of the
current pairing rule made with the current settings.

Pool workers die with the process that started them (``PR_SET_PDEATHSIG`` on Linux, a
watchdog thread elsewhere), so killing a run, even with SIGKILL, leaves no orphans.

Layout of ``config.out``::

    clips.csv                         clip index (one row per clip)
    pairs/<speaker>/<emotion>/<key>.json   one aligned clip pair each (the resume unit)
    pairs.csv, aligned_pairs.json     all pairs: table + the authors' nested format
    crops/<clip id>.<ext>             face crops + landmarks per clip
    logs/<command>-<time>.log         failures with reasons
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from tqdm import tqdm

from asccl.config import ConfigError, is_int
from asccl.data.clip_index import probe_clip, read_clip_index, write_clip_index
from asccl.data.clips import AlignedPair, Clip, ClipPair
from asccl.data.crop_store import STORE_SUFFIX, crop_path
from asccl.data.errors import DataError
from asccl.data.pairing import DEFAULT_RULES, PairingRule, pair_clips
from asccl.io import write_text_atomic


@dataclass(frozen=True)
class DataConfig:
    """Settings of the ``asccl data`` commands (see ``configs/data/*.toml``)."""

    dataset: Literal["mead", "ravdess"] = "mead"
    root: Path = Path("demo_data/MEAD")  #: the dataset as distributed
    out: Path = Path("runs/data")  #: where every output of stage 1 goes
    view: str = "front"  #: MEAD camera view
    speakers: list[str] | None = None  #: restrict to these speakers
    pairing: PairingRule | None = None  #: None: the dataset's default rule
    #: audio features for DTW: "mel" (the paper), "mfcc", or "mfcc_psf" (the authors' file)
    features: Literal["mel", "mfcc", "mfcc_psf"] = "mel"
    dtw_metric: Literal["l1", "euclidean", "cosine"] = "l1"
    sample_rate: int = 16000
    crop_size: int = 224
    crop_format: Literal["jpeg", "npy"] = "jpeg"  #: crop store (see asccl.data.crop_store)
    landmark_backend: str = "dlib"
    detect_every: int = 10  #: run the face detector every N frames, track in between
    crop_all_clips: bool = False  #: crop every clip, not only those in pairs
    workers: int = 2  #: processes; 0 runs in this process
    shard: str = "0/1"  #: "i/n": this job's share of the items

    def __post_init__(self) -> None:
        """Check every setting; :class:`~asccl.config.ConfigError` names the first bad key."""
        for key in ("root", "out"):
            value = getattr(self, key)
            if not isinstance(value, (str, os.PathLike)) or not str(value):
                raise ConfigError(f"{key}: must be a path, got {value!r}")
            object.__setattr__(self, key, Path(value))
        choices = {
            "dataset": ("mead", "ravdess"),
            "features": ("mel", "mfcc", "mfcc_psf"),
            "dtw_metric": ("l1", "euclidean", "cosine"),
            "crop_format": tuple(STORE_SUFFIX),
        }
        for key, valid in choices.items():
            if getattr(self, key) not in valid:
                raise ConfigError(
                    f"{key}: must be one of {list(valid)}, got {getattr(self, key)!r}"
                )
        for key in ("view", "landmark_backend"):
            if not isinstance(getattr(self, key), str) or not getattr(self, key):
                raise ConfigError(f"{key}: must be a non-empty string, got {getattr(self, key)!r}")
        if self.speakers is not None and (
            not isinstance(self.speakers, list | tuple)
            or not all(isinstance(s, str) and s for s in self.speakers)
        ):
            raise ConfigError(f"speakers: must be a list of speaker names, got {self.speakers!r}")
        if not isinstance(self.crop_all_clips, bool):
            raise ConfigError(f"crop_all_clips: must be true or false, got {self.crop_all_clips!r}")
        for key, (low, high, unit) in _INT_RANGES.items():
            value = getattr(self, key)
            if not is_int(value, low, high):
                raise ConfigError(
                    f"{key}: must be an integer {unit} in {low}..{high}, got {value!r}"
                )
        try:
            parse_shard(self.shard)
        except ValueError as exc:
            raise ConfigError(f"shard: {exc}") from None

    def rule(self) -> PairingRule:
        return self.pairing or DEFAULT_RULES[self.dataset]

    def pair_settings(self) -> dict[str, Any]:
        """The settings a pair file's content depends on (recorded in it, compared on rerun)."""
        return {"features": self.features, "dtw_metric": self.dtw_metric,
                "sample_rate": self.sample_rate}  # fmt: skip

    def crop_settings(self) -> dict[str, Any]:
        """The settings a crop store's content depends on (recorded beside it)."""
        return {"crop_size": self.crop_size, "landmark_backend": self.landmark_backend,
                "detect_every": self.detect_every, **BOX_RULE}  # fmt: skip


#: ``DataConfig`` integers: key -> (lowest, highest, unit).
_INT_RANGES: dict[str, tuple[int, int, str]] = {
    "sample_rate": (8000, 192000, "(Hz)"),
    "crop_size": (16, 1024, "(pixels)"),
    "detect_every": (1, 1000, "(frames)"),
    "workers": (0, 1024, "(processes)"),
}

#: The box rule every crop store is made with (:func:`asccl.data.crops.crop_clip`'s
#: arguments), recorded with the store so that a change of it redoes the crops.
BOX_RULE: dict[str, Any] = {"grow": 0.10, "square": False, "smooth_window": 5, "max_gap": 5,
                            "pad": "zeros"}  # fmt: skip


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


# ----------------------------------------------------------------------------- running


def parse_shard(shard: str) -> tuple[int, int]:
    """``"i/n"`` -> ``(i, n)`` with ``0 <= i < n``."""
    try:
        index, count = (int(part) for part in str(shard).split("/"))
    except ValueError:
        raise ValueError(f"shard must look like i/n (e.g. 0/4), got {shard!r}") from None
    if not 0 <= index < count:
        raise ValueError(f"shard {shard!r}: need 0 <= i < n")
    return index, count


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


def settings_change(recorded: Mapping[str, Any] | None, current: Mapping[str, Any]) -> str | None:
    """How ``current`` settings differ from those an item ``recorded``: ``None`` if not at
    all, ``"settings unknown"`` when nothing was recorded, else ``"key: old -> new; ..."``."""
    if recorded is None:
        return "settings unknown"
    keys = [k for k in (*current, *(k for k in recorded if k not in current))
            if recorded.get(k, "?") != current.get(k, "?")]  # fmt: skip
    if not keys:
        return None
    return "; ".join(f"{k}: {recorded.get(k, '?')} -> {current.get(k, '?')}" for k in keys)


def _note_redone(summary: StageSummary, changes: Counter[str], noun: str) -> None:
    """One note per kind of settings change: how many items it made the run redo."""
    for change, count in sorted(changes.items()):
        if change == "settings unknown":
            summary.notes.append(
                f"{count} {noun} made without recorded settings (an older asccl: settings "
                "unknown): redone"
            )
        else:
            summary.notes.append(f"{count} {noun} made with other settings ({change}): redone")


# ----------------------------------------------------------------------------- index


def run_index(config: DataConfig) -> StageSummary:
    """Index the dataset, probe every video (fps, frame count) and check it against its
    audio (:func:`~asccl.data.clip_index.probe_clip`), write ``clips.csv`` without the
    clips that fail (listed in the summary's failures)."""
    from asccl.data.mead import index_mead
    from asccl.data.ravdess import index_ravdess

    summary = StageSummary("index")
    if config.dataset == "mead":
        clips, problems = index_mead(config.root, view=config.view, speakers=config.speakers)
    else:
        clips, problems = index_ravdess(config.root)
        if config.speakers is not None:
            clips = [c for c in clips if c.speaker in config.speakers]
    probed: dict[str, Clip] = {}
    with_video = [c for c in clips if c.video is not None]
    _run_items("probing videos", with_video, _ProbeWork(probed), lambda c: str(c.video),
               0, summary)  # fmt: skip
    # a clip whose media failed probe_clip's checks is listed in the failures, never paired
    clips = [probed.get(c.clip_id, c) for c in clips if c.video is None or c.clip_id in probed]
    summary.done = len(clips)
    path = write_clip_index(clips, config.out / "clips.csv")
    summary.notes.append(
        f"{len(clips)} clips of {len({c.speaker for c in clips})} speakers; "
        f"{len(problems)} names or files not understood (see log)"
    )
    summary.outputs["clips"] = path
    _write_log(config.out, summary, problems)
    return summary


class _ProbeWork:
    """Probe in this process (header reads are fast) and keep the results."""

    def __init__(self, results: dict[str, Clip]) -> None:
        self.results = results

    def __call__(self, clip: Clip) -> None:
        self.results[clip.clip_id] = probe_clip(clip)  # fps, frames, audio length checked


# ----------------------------------------------------------------------------- pairs


def pair_path(out: Path, pair: ClipPair) -> Path:
    """Where one aligned pair is stored (the unit of resume and sharding)."""
    return out / "pairs" / pair.speaker / pair.emotion / f"{pair.key}.json"


@dataclass(frozen=True)
class _AlignWork:
    out: Path
    settings: dict[str, Any]  #: DataConfig.pair_settings(): features, dtw_metric, sample_rate

    def __call__(self, pair: ClipPair) -> None:
        from asccl.data.dtw import align_audio

        features = [self._features(clip) for clip in (pair.neutral, pair.emotional)]
        try:
            idx_n, idx_e, cost, quality = align_audio(
                features[0], features[1], pair.neutral.num_frames, pair.emotional.num_frames,
                metric=self.settings["dtw_metric"],
            )  # fmt: skip
        except (ValueError, FloatingPointError) as exc:
            files = f"{pair.neutral.audio} vs {pair.emotional.audio}"
            raise DataError(files, f"DTW failed ({' '.join(str(exc).split())})") from exc
        record = {
            "speaker": pair.speaker,
            "emotion": pair.emotion,
            "neutral_clip": pair.neutral.clip_id,
            "emotional_clip": pair.emotional.clip_id,
            "neutral_frames": idx_n.tolist(),
            "emotional_frames": idx_e.tolist(),
            "dtw_cost": float(cost),
            "quality": {k: float(v) for k, v in quality.items()},
            "settings": self.settings,
        }
        write_text_atomic(pair_path(self.out, pair), json.dumps(record))

    def _features(self, clip: Clip) -> Any:
        """``(T, D)`` features of ``clip``'s audio; every problem names the file at fault."""
        from asccl.data.audio import frame_features, load_audio, require_alignable

        if clip.audio is None:
            raise DataError(clip.video or clip.clip_id, "no audio file for this clip")
        if clip.num_frames is None or clip.fps is None:
            if clip.video is None:
                raise DataError(clip.audio, "no video file for this clip (no frame count)")
            raise DataError(
                clip.video, "no video frame count (not probed at index time: see the index log)"
            )
        rate = self.settings["sample_rate"]
        audio = load_audio(clip.audio, rate)
        require_alignable(audio, clip.audio, rate, clip.fps)
        try:
            return frame_features(audio, rate, clip.fps, kind=self.settings["features"])
        except (ValueError, FloatingPointError) as exc:
            raise DataError(clip.audio, f"no features ({' '.join(str(exc).split())})") from exc


def load_pair_record(path: Path) -> AlignedPair:
    """Read one ``pairs/.../<key>.json``; :class:`DataError` if it is not valid."""
    return _read_pair(path)[0]


def _read_pair(path: Path) -> tuple[AlignedPair, dict[str, Any] | None]:
    """A pair file's pair and the settings it recorded (``None``: not recorded)."""
    try:
        record = json.loads(path.read_text())
        settings = record.pop("settings", None)
        return AlignedPair(**record), settings if isinstance(settings, dict) else None
    except (OSError, ValueError, TypeError, AttributeError) as exc:
        raise DataError(path, f"not a valid aligned pair ({exc})") from exc


def _pair_state(path: Path, settings: dict[str, Any]) -> str | None:
    """``None`` if ``path`` is a valid pair made with ``settings``; ``"missing"`` if it
    is absent or unreadable; else how its settings differ (:func:`settings_change`)."""
    if not path.is_file():
        return "missing"
    try:
        _, recorded = _read_pair(path)
    except DataError:
        return "missing"
    return settings_change(recorded, settings)


def run_pairs(config: DataConfig) -> StageSummary:
    """Align every clip pair of this shard by DTW on audio; merge all pairs on disk.

    A pair file made with other :meth:`DataConfig.pair_settings` (or none recorded) is
    redone. The merged files hold the pairs of the current rule (all shards) whose files
    were made with the current settings.
    """
    from asccl.data.pair_files import write_authors_json, write_pairs_table

    summary = StageSummary("pairs")
    clips = read_clip_index(config.out / "clips.csv")
    pairs, problems = pair_clips(clips, config.rule())
    shard, shards = parse_shard(config.shard)
    mine = [p for i, p in enumerate(pairs) if i % shards == shard]
    settings = config.pair_settings()
    states = {
        path: _pair_state(path, settings) for path in (pair_path(config.out, p) for p in mine)
    }
    todo = [p for p in mine if states[pair_path(config.out, p)] is not None]
    summary.skipped = len(mine) - len(todo)
    _note_redone(
        summary, Counter(v for v in states.values() if v not in (None, "missing")), "pairs"
    )
    work = _AlignWork(config.out, settings)
    _run_items("aligning pairs", todo, work, lambda p: f"{p.speaker}/{p.emotion}/{p.key}",
               config.workers, summary)  # fmt: skip
    # Merge every shard's pairs of this rule that were made with these settings.
    aligned = []
    other = 0
    expected = sorted(pair_path(config.out, p) for p in pairs)
    for path in expected:
        if not path.exists():
            continue
        try:
            pair, recorded = _read_pair(path)
        except DataError as exc:
            summary.failures.append((str(path), exc.problem))
            continue
        if settings_change(recorded, settings) is None:
            aligned.append(pair)
        else:
            other += 1
    if other:
        summary.notes.append(
            f"{other} pair files on disk made with other settings left out of the merged "
            "files (their redo failed, or another shard has not been rerun yet)"
        )
    on_disk = (config.out / "pairs").rglob("*.json")
    stray = {p for p in on_disk if not p.name.startswith(".")} - set(expected)  # not temps
    if stray:
        summary.notes.append(
            f"{len(stray)} pair files on disk not formed by the current pairing rule: left out "
            "of the merged files"
        )
    frames = sum(len(p) for p in aligned)
    summary.notes.append(
        f"{len(pairs)} clip pairs by the rule ({len(problems)} partners missing), "
        f"{len(mine)} in shard {config.shard}; {len(aligned)} aligned on disk, "
        f"{frames} frame pairs"
    )
    summary.outputs["pairs_table"] = write_pairs_table(aligned, config.out / "pairs.csv")
    summary.outputs["authors_json"] = write_authors_json(aligned, config.out / "aligned_pairs.json")
    _write_log(config.out, summary, problems)
    return summary


# ----------------------------------------------------------------------------- crops


def crop_settings_path(store: Path) -> Path:
    """The file beside a crop store that records the settings it was made with."""
    return store.with_name(f"{store.name}.settings.json")


def read_crop_settings(store: Path) -> dict[str, Any] | None:
    """The settings recorded beside ``store``; ``None`` if none (or unreadable) are."""
    try:
        recorded = json.loads(crop_settings_path(store).read_text())
    except (OSError, ValueError):
        return None
    return recorded if isinstance(recorded, dict) else None


_TRACKERS: dict[tuple[str, int], Any] = {}  # one per process: loading a model takes ~0.7 s


@dataclass(frozen=True)
class _CropWork:
    out: Path
    fmt: str
    settings: dict[str, Any]  #: DataConfig.crop_settings()

    def __call__(self, clip: Clip) -> None:
        from asccl.data.crop_store import write_clip_crops
        from asccl.data.crops import crop_clip
        from asccl.data.landmarks import FaceTracker, make_landmarker

        s = self.settings
        key = (s["landmark_backend"], s["detect_every"])
        if key not in _TRACKERS:
            landmarker = make_landmarker(s["landmark_backend"])
            _TRACKERS[key] = FaceTracker(landmarker, detect_every=s["detect_every"])
        rule = {name: s[name] for name in BOX_RULE}
        crops = crop_clip(clip.video, size=s["crop_size"], tracker=_TRACKERS[key], **rule)
        if crops.num_invalid == len(crops):
            raise DataError(clip.video, "no face found in any frame")
        path = crop_path(self.out, clip.clip_id, self.fmt)
        path.parent.mkdir(parents=True, exist_ok=True)
        # The old record goes first: a run killed between the two writes leaves a store
        # without settings (redone next time), never one beside another store's settings.
        crop_settings_path(path).unlink(missing_ok=True)
        write_clip_crops(crops, path, format=self.fmt)
        write_text_atomic(crop_settings_path(path), json.dumps(s, sort_keys=True))


def _crop_state(path: Path, settings: dict[str, Any], frames: int | None) -> str | None:
    """``None`` if ``path`` is a complete store made with ``settings``; ``"missing"`` if
    it is absent or broken; else how its settings differ (:func:`settings_change`)."""
    from asccl.data.crop_store import validate_clip_crops

    if not path.exists():
        return "missing"
    change = settings_change(read_crop_settings(path), settings)
    if change is not None:
        return change
    return None if validate_clip_crops(path, expected_frames=frames) else "missing"


def run_crops(config: DataConfig) -> StageSummary:
    """Crop faces from every clip used by a pair (or every clip), this shard's share.

    A store made with other :meth:`DataConfig.crop_settings` (or none recorded) is redone.
    """
    from asccl.data.crop_store import read_clip_header

    summary = StageSummary("crops")
    clips = read_clip_index(config.out / "clips.csv")
    if not config.crop_all_clips:
        pairs, _ = pair_clips(clips, config.rule())
        used = {c.clip_id for p in pairs for c in (p.neutral, p.emotional)}
        clips = [c for c in clips if c.clip_id in used]
    clips = [c for c in clips if c.video is not None]
    shard, shards = parse_shard(config.shard)
    mine = [c for i, c in enumerate(clips) if i % shards == shard]
    settings = config.crop_settings()
    states = {
        c.clip_id: _crop_state(crop_path(config.out, c.clip_id, config.crop_format), settings,
                               c.num_frames)
        for c in mine
    }  # fmt: skip
    todo = [c for c in mine if states[c.clip_id] is not None]
    summary.skipped = len(mine) - len(todo)
    _note_redone(
        summary, Counter(v for v in states.values() if v not in (None, "missing")), "crop stores"
    )
    work = _CropWork(config.out, config.crop_format, settings)
    _run_items("cropping faces", todo, work, lambda c: str(c.video), config.workers, summary)
    frames = no_face = 0
    for clip in mine:
        path = crop_path(config.out, clip.clip_id, config.crop_format)
        if path.exists():
            try:
                valid, _ = read_clip_header(path)
            except DataError as exc:
                summary.failures.append((str(path), exc.problem))
                continue
            frames += len(valid)
            no_face += int((~valid).sum())
    summary.notes.append(
        f"{len(clips)} clips with video, {len(mine)} in shard {config.shard}; "
        f"{frames} frames cropped, {no_face} without a face (kept, marked invalid)"
    )
    summary.outputs["crops"] = config.out / "crops"
    _write_log(config.out, summary)
    return summary


def run_prepare(config: DataConfig) -> list[StageSummary]:
    """index, pairs and crops in turn."""
    return [run_index(config), run_pairs(config), run_crops(config)]
