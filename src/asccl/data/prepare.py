"""The stage-1 commands: ``asccl data index | pairs | crops | prepare``.

Each command reads what the previous one wrote under ``config.out``, runs per-item work
(probing a video, aligning a clip pair, cropping a clip) in a process pool with a progress
bar, writes every item's output atomically, skips items whose output already exists and
validates (so a killed run resumes and ``--shard i/n`` array jobs merge without
coordination), and ends with a summary and a log of what failed and why.

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
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from tqdm import tqdm

from asccl.data.clip_index import read_clip_index, with_video_info, write_clip_index
from asccl.data.clips import AlignedPair, Clip, ClipPair
from asccl.data.errors import DataError
from asccl.data.pairing import DEFAULT_RULES, PairingRule, pair_clips


@dataclass
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

    def rule(self) -> PairingRule:
        return self.pairing or DEFAULT_RULES[self.dataset]


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


# ----------------------------------------------------------------------------- running


def parse_shard(shard: str) -> tuple[int, int]:
    """``"i/n"`` -> ``(i, n)`` with ``0 <= i < n``."""
    try:
        index, count = (int(part) for part in shard.split("/"))
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

    ``work`` raises :class:`DataError` (or any exception) to fail one item only.
    """
    progress = tqdm(total=len(items), desc=name, unit="item", leave=False)
    if workers <= 0 or len(items) <= 1:
        for item in items:
            _record(summary, describe(item), _call(work, item))
            progress.update()
    else:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            futures = {pool.submit(_call, work, item): item for item in items}
            for future in as_completed(futures):
                _record(summary, describe(futures[future]), future.result())
                progress.update()
    progress.close()


def _call(work: Callable[[Any], None], item: Any) -> str | None:
    try:
        work(item)
    except DataError as exc:
        return exc.problem
    except Exception as exc:  # one bad item must not stop the run
        return f"{type(exc).__name__}: {exc}"
    return None


def _record(summary: StageSummary, item: str, error: str | None) -> None:
    if error is None:
        summary.done += 1
    else:
        summary.failures.append((item, error))


def _write_log(out: Path, summary: StageSummary, problems: Iterable[DataError] = ()) -> Path:
    logs = out / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    path = logs / f"{summary.stage}-{time.strftime('%Y%m%d-%H%M%S')}.log"
    lines = [f"{item}: {reason}" for item, reason in summary.failures]
    lines += [f"{p.path}: {p.problem}" for p in problems]
    path.write_text("\n".join(lines) + ("\n" if lines else ""))
    summary.outputs["log"] = path
    return path


def _atomic_write_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


# ----------------------------------------------------------------------------- index


def run_index(config: DataConfig) -> StageSummary:
    """Index the dataset, probe every video (fps, frame count), write ``clips.csv``."""
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
    clips = [probed.get(c.clip_id, c) for c in clips]
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
        from asccl.data.video import probe_video

        info = probe_video(clip.video)
        self.results[clip.clip_id] = with_video_info(clip, info.fps, info.num_frames)


# ----------------------------------------------------------------------------- pairs


def pair_path(out: Path, pair: ClipPair) -> Path:
    """Where one aligned pair is stored (the unit of resume and sharding)."""
    return out / "pairs" / pair.speaker / pair.emotion / f"{pair.key}.json"


@dataclass(frozen=True)
class _AlignWork:
    out: Path
    features: str
    metric: str
    sample_rate: int

    def __call__(self, pair: ClipPair) -> None:
        from asccl.data.audio import frame_features, load_audio
        from asccl.data.dtw import align_audio

        sides = []
        for clip in (pair.neutral, pair.emotional):
            if clip.audio is None:
                raise DataError(clip.clip_id, "no audio file")
            if clip.num_frames is None or clip.fps is None:
                raise DataError(clip.clip_id, "no video frame count (is its video missing?)")
            audio = load_audio(clip.audio, self.sample_rate)
            sides.append(frame_features(audio, self.sample_rate, clip.fps, kind=self.features))
        idx_n, idx_e, cost, quality = align_audio(
            sides[0], sides[1], pair.neutral.num_frames, pair.emotional.num_frames,
            metric=self.metric,
        )  # fmt: skip
        record = {
            "speaker": pair.speaker,
            "emotion": pair.emotion,
            "neutral_clip": pair.neutral.clip_id,
            "emotional_clip": pair.emotional.clip_id,
            "neutral_frames": idx_n.tolist(),
            "emotional_frames": idx_e.tolist(),
            "dtw_cost": float(cost),
            "quality": {k: float(v) for k, v in quality.items()},
        }
        _atomic_write_text(pair_path(self.out, pair), json.dumps(record))


def load_pair_record(path: Path) -> AlignedPair:
    """Read one ``pairs/.../<key>.json``; :class:`DataError` if it is not valid."""
    try:
        record = json.loads(path.read_text())
        return AlignedPair(**record)
    except (OSError, ValueError, TypeError) as exc:
        raise DataError(path, f"not a valid aligned pair ({exc})") from exc


def _is_done(path: Path) -> bool:
    if not path.is_file():
        return False
    try:
        load_pair_record(path)
    except DataError:
        return False
    return True


def run_pairs(config: DataConfig) -> StageSummary:
    """Align every clip pair of this shard by DTW on audio; merge all pairs on disk."""
    from asccl.data.pair_files import write_authors_json, write_pairs_table

    summary = StageSummary("pairs")
    clips = read_clip_index(config.out / "clips.csv")
    pairs, problems = pair_clips(clips, config.rule())
    shard, shards = parse_shard(config.shard)
    mine = [p for i, p in enumerate(pairs) if i % shards == shard]
    todo = [p for p in mine if not _is_done(pair_path(config.out, p))]
    summary.skipped = len(mine) - len(todo)
    work = _AlignWork(config.out, config.features, config.dtw_metric, config.sample_rate)
    _run_items("aligning pairs", todo, work, lambda p: f"{p.speaker}/{p.emotion}/{p.key}",
               config.workers, summary)  # fmt: skip
    # Merge everything present (all shards' outputs), not only this run's.
    aligned = []
    for path in sorted((config.out / "pairs").rglob("*.json")):
        try:
            aligned.append(load_pair_record(path))
        except DataError as exc:
            summary.failures.append((str(path), exc.problem))
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


STORE_SUFFIX = {"jpeg": ".npz", "npy": ".crops"}  # a file, or a folder


def crop_path(out: Path, clip_id: str, fmt: str) -> Path:
    """Where a clip's crops are stored."""
    return out / "crops" / f"{clip_id}{STORE_SUFFIX[fmt]}"


_TRACKERS: dict[tuple[str, int], Any] = {}  # one per process: loading a model takes ~0.7 s


@dataclass(frozen=True)
class _CropWork:
    out: Path
    size: int
    fmt: str
    backend: str
    detect_every: int

    def __call__(self, clip: Clip) -> None:
        from asccl.data.crop_store import write_clip_crops
        from asccl.data.crops import crop_clip
        from asccl.data.landmarks import FaceTracker, make_landmarker

        key = (self.backend, self.detect_every)
        if key not in _TRACKERS:
            landmarker = make_landmarker(self.backend)
            _TRACKERS[key] = FaceTracker(landmarker, detect_every=self.detect_every)
        crops = crop_clip(clip.video, size=self.size, tracker=_TRACKERS[key])
        if crops.num_invalid == len(crops):
            raise DataError(clip.video, "no face found in any frame")
        path = crop_path(self.out, clip.clip_id, self.fmt)
        path.parent.mkdir(parents=True, exist_ok=True)
        write_clip_crops(crops, path, format=self.fmt)


def run_crops(config: DataConfig) -> StageSummary:
    """Crop faces from every clip used by a pair (or every clip), this shard's share."""
    from asccl.data.crop_store import read_clip_header, validate_clip_crops

    summary = StageSummary("crops")
    clips = read_clip_index(config.out / "clips.csv")
    if not config.crop_all_clips:
        pairs, _ = pair_clips(clips, config.rule())
        used = {c.clip_id for p in pairs for c in (p.neutral, p.emotional)}
        clips = [c for c in clips if c.clip_id in used]
    clips = [c for c in clips if c.video is not None]
    shard, shards = parse_shard(config.shard)
    mine = [c for i, c in enumerate(clips) if i % shards == shard]
    todo = [
        c for c in mine
        if not validate_clip_crops(
            crop_path(config.out, c.clip_id, config.crop_format), expected_frames=c.num_frames
        )
    ]  # fmt: skip
    summary.skipped = len(mine) - len(todo)
    work = _CropWork(config.out, config.crop_size, config.crop_format,
                     config.landmark_backend, config.detect_every)  # fmt: skip
    _run_items("cropping faces", todo, work, lambda c: str(c.video), config.workers, summary)
    frames = no_face = 0
    for clip in mine:
        path = crop_path(config.out, clip.clip_id, config.crop_format)
        if path.exists():
            valid, _ = read_clip_header(path)
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
