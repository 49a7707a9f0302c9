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
an older asccl that recorded nothing count as "settings unknown" and are redone too.
Every item also records the input files it read (a pair: both clips' audio and video; a
crop store: its video), each as path, size, mtime and SHA-256, in a ``"sources"`` entry
beside its settings; a rerun redoes an item whose input changed (a replaced or re-encoded
clip; see :mod:`asccl.data.item_settings` for the rule: no hashing unless a file's mtime
moved) and says how many, with an example file. Each
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

The pieces live beside this module: :mod:`asccl.data.config` (``DataConfig``,
``parse_shard``), :mod:`asccl.data.runs` (the pool, ``StageSummary``, the log) and
:mod:`asccl.data.item_settings` (the settings recorded per item, redo decisions).
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from asccl.data.clip_index import probe_clip, read_clip_index, write_clip_index
from asccl.data.clips import Clip, ClipPair
from asccl.data.config import BOX_RULE, DataConfig, parse_shard
from asccl.data.crop_store import crop_path
from asccl.data.errors import DataError
from asccl.data.item_settings import (
    _crop_state,
    _note_redone,
    _pair_state,
    _read_pair,
    crop_settings_path,
    fingerprint,
    fingerprints,
    load_pair_record,
    pair_inputs,
    read_crop_settings,
    read_crop_sources,
    settings_change,
)
from asccl.data.pairing import numbering_notes, pair_clips, resolve_numbering
from asccl.data.runs import StageSummary, _run_items, _write_log
from asccl.io import write_text_atomic

#: Names importable from here (their homes: config, runs, item_settings, crop_store).
__all__ = [
    "BOX_RULE",
    "DataConfig",
    "StageSummary",
    "crop_path",
    "crop_settings_path",
    "load_pair_record",
    "pair_path",
    "parse_shard",
    "read_crop_settings",
    "read_crop_sources",
    "run_crops",
    "run_index",
    "run_pairs",
    "run_prepare",
    "settings_change",
]


# ----------------------------------------------------------------------------- index


def run_index(config: DataConfig) -> StageSummary:
    """Index the dataset, probe every video (fps, frame count) and check it against its
    audio (:func:`~asccl.data.clip_index.probe_clip`), write ``clips.csv`` without the
    clips that fail (listed in the summary's failures)."""
    from asccl.data.mead import index_mead
    from asccl.data.ravdess import index_ravdess

    summary = StageSummary("index")
    if config.dataset == "mead":
        speakers = config.index_speakers()  # a preset's speakers when none are given
        clips, problems = index_mead(config.root, view=config.view, speakers=speakers)
    else:
        clips, problems = index_ravdess(config.root, speakers=config.speakers)
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
    settings: dict[str, Any]  #: DataConfig.pair_settings(): features, dtw_metric, ..., dtw_ties

    def __call__(self, pair: ClipPair) -> None:
        from asccl.data.dtw import align_audio

        sources = fingerprints(pair_inputs(pair))  # before reading: a later change is seen
        features = [self._features(clip) for clip in (pair.neutral, pair.emotional)]
        try:
            idx_n, idx_e, cost, quality = align_audio(
                features[0], features[1], pair.neutral.num_frames, pair.emotional.num_frames,
                metric=self.settings["dtw_metric"], ties=self.settings["dtw_ties"],
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
            "sources": sources,
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


def run_pairs(config: DataConfig) -> StageSummary:
    """Align every clip pair of this shard by DTW on audio; merge all pairs on disk.

    A pair file made with other :meth:`DataConfig.pair_settings` (or none recorded), or
    from input files that changed since, is redone. The merged files hold the pairs of the
    current rule (all shards) whose files were made with the current settings.
    """
    from asccl.data.pair_files import write_authors_json, write_pairs_table

    summary = StageSummary("pairs")
    clips = read_clip_index(config.out / "clips.csv")
    rule = config.rule()
    pairs, problems = pair_clips(clips, rule)
    # the sentence numbering read per speaker from disk (MEAD's disgusted: 001 or 028)
    summary.notes += numbering_notes(resolve_numbering(clips, rule))
    absent = [s for s in rule.speakers if s not in {c.speaker for c in clips}]
    if absent:
        summary.notes.append(
            f"{len(absent)} of the rule's {len(rule.speakers)} speakers have no clips in "
            f"clips.csv: {', '.join(absent)}"
        )
    shard, shards = parse_shard(config.shard)
    mine = [p for i, p in enumerate(pairs) if i % shards == shard]
    settings = config.pair_settings()
    examples: dict[str, str] = {}
    states = {
        pair_path(config.out, p): _pair_state(
            pair_path(config.out, p), settings, pair_inputs(p), examples
        )
        for p in mine
    }
    todo = [p for p in mine if states[pair_path(config.out, p)] is not None]
    summary.skipped = len(mine) - len(todo)
    changes = Counter(v for v in states.values() if v not in (None, "missing"))
    _note_redone(summary, changes, "pairs", examples)
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


_TRACKERS: dict[tuple[str, int, int], Any] = {}  # one per process: loading a model takes ~0.7 s


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
        key = (s["landmark_backend"], s["detect_every"], s["hold"])
        if key not in _TRACKERS:
            landmarker = make_landmarker(s["landmark_backend"])
            _TRACKERS[key] = FaceTracker(landmarker, detect_every=s["detect_every"], hold=s["hold"])
        rule = {name: s[name] for name in BOX_RULE}
        sources = {"video": fingerprint(clip.video)}  # before reading: a later change is seen
        crops = crop_clip(clip.video, size=s["crop_size"], tracker=_TRACKERS[key], **rule)
        if crops.num_invalid == len(crops):
            raise DataError(clip.video, "no face found in any frame")
        path = crop_path(self.out, clip.clip_id, self.fmt)
        path.parent.mkdir(parents=True, exist_ok=True)
        # The old record goes first: a run killed between the two writes leaves a store
        # without settings (redone next time), never one beside another store's settings.
        crop_settings_path(path).unlink(missing_ok=True)
        write_clip_crops(crops, path, format=self.fmt)
        record = {**s, "sources": sources}  # read_crop_settings leaves "sources" out
        write_text_atomic(crop_settings_path(path), json.dumps(record, sort_keys=True))


def run_crops(config: DataConfig) -> StageSummary:
    """Crop faces from every clip used by a pair (or every clip), this shard's share.

    A store made with other :meth:`DataConfig.crop_settings` (or none recorded), or from a
    video that changed since, is redone.
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
    examples: dict[str, str] = {}
    states = {
        c.clip_id: _crop_state(crop_path(config.out, c.clip_id, config.crop_format), settings,
                               c.num_frames, c.video, examples)
        for c in mine
    }  # fmt: skip
    todo = [c for c in mine if states[c.clip_id] is not None]
    summary.skipped = len(mine) - len(todo)
    changes = Counter(v for v in states.values() if v not in (None, "missing"))
    _note_redone(summary, changes, "crop stores", examples)
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
