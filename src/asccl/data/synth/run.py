"""``asccl data synth``: write the synthetic MEAD and its ground truth, resumably.

Each clip is one item: its files are written atomically, then a record
``<out>/records/<item>.json`` with the settings that made it
(:meth:`SynthConfig.clip_settings`) and the files' sizes. A rerun skips an item whose record
matches the settings and whose files are all there with those sizes, and redoes (and
counts, per kind of change) the rest.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from asccl.data.clips import PAPER_EMOTIONS
from asccl.data.item_settings import _note_redone, settings_change
from asccl.data.runs import StageSummary, _run_items, _write_log
from asccl.data.synth.config import SynthConfig
from asccl.data.synth.dataset import (
    Clip,
    all_clips,
    clip_paths,
    ground_truth_name,
    ground_truth_paths,
    render_ground_truth,
    sentence_id,
    speaker_name,
    synth_clip,
)
from asccl.data.synth.encode import write_m4a, write_mp4, write_npy
from asccl.io import write_text_atomic


@dataclass(frozen=True)
class Item:
    """A training clip, or (``target`` set) the ground truth of a neutral clip."""

    clip: Clip
    target: str | None = None

    def key(self, sentences: int) -> str:
        c = self.clip
        if self.target is not None:
            return f"ground_truth/{self.target}/{ground_truth_name(c.speaker, c.sentence)}"
        sid = sentence_id(c.emotion, c.sentence, sentences)
        return f"{speaker_name(c.speaker)}/{c.emotion}/level_{c.level}/{sid}"


def items(config: SynthConfig) -> list[Item]:
    """Every training clip, then every (neutral clip, target emotion) ground truth."""
    clips = all_clips(config)
    truths = [Item(c, t) for c in clips if c.emotion == "neutral" for t in PAPER_EMOTIONS]
    return [Item(c) for c in clips] + truths


def item_paths(config: SynthConfig, item: Item) -> dict[str, Path]:
    c = item.clip
    if item.target is not None:
        return ground_truth_paths(config.out, c.speaker, c.sentence, item.target)
    return clip_paths(config.out, c, config.sentences)


def record_path(config: SynthConfig, item: Item) -> Path:
    return config.out / "records" / f"{item.key(config.sentences)}.json"


def item_state(config: SynthConfig, item: Item) -> str | None:
    """``None`` when the item is complete with the current settings; ``"missing"``; or how
    the recorded settings differ (``"size: 64 -> 128"``)."""
    try:
        record = json.loads(record_path(config, item).read_text())
        files, recorded = record["files"], record["settings"]
    except (OSError, ValueError, KeyError, TypeError):
        return "missing"
    for path in item_paths(config, item).values():
        rel = path.relative_to(config.out).as_posix()
        if not path.is_file() or files.get(rel) != path.stat().st_size:
            return "missing"
    return settings_change(recorded, config.clip_settings())


def make_item(config: SynthConfig, item: Item) -> None:
    """Render and write one item's files, then its record."""
    c = item.clip
    if item.target is None:
        frames, marks, audio = synth_clip(config, c)
    else:
        frames, marks, audio = render_ground_truth(config, c.speaker, c.sentence, item.target)
    paths = item_paths(config, item)
    write_mp4(paths["video"], frames, audio, config.fps)
    if "audio" in paths:
        write_m4a(paths["audio"], audio)
    write_npy(paths["landmarks"], marks)
    record: dict[str, Any] = {
        "settings": config.clip_settings(),
        "files": {p.relative_to(config.out).as_posix(): p.stat().st_size for p in paths.values()},
    }
    write_text_atomic(record_path(config, item), json.dumps(record, indent=1) + "\n")


def run_synth(config: SynthConfig) -> StageSummary:
    """Write (or complete) the synthetic dataset under ``config.out``.

    Layout: ``MEAD/<speaker>/{video/front,audio}/<emotion>/level_<n>/<NNN>.{mp4,m4a}``,
    ``landmarks/<speaker>/<emotion>/level_<n>/<NNN>.npy``,
    ``ground_truth/<emotion>/<speaker>_<NNN>.{mp4,landmarks.npy}``, ``records/``.
    """
    summary = StageSummary("synth")
    todo, changes = [], Counter()
    for item in items(config):
        state = item_state(config, item)
        if state is None:
            summary.skipped += 1
            continue
        if state != "missing":
            changes[state] += 1
        todo.append(item)
    _note_redone(summary, changes, "clips")

    def describe(item: Item) -> str:
        return str(item_paths(config, item)["video"])

    _run_items("synth", todo, partial(make_item, config), describe, config.workers, summary)
    summary.outputs["mead root"] = config.out / "MEAD"
    summary.outputs["ground truth"] = config.out / "ground_truth"
    if summary.failures:
        _write_log(config.out, summary)
    return summary
