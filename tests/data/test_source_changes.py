"""Stage-1 items record the input files they were made from: a rerun redoes the pairs and
crop stores of a replaced clip (and only those), keeps items whose inputs were merely
copied (same bytes, new mtimes), and applies make's rule to items of an older asccl."""

import hashlib
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

import asccl.data.item_settings as item_settings
from asccl.data.crop_store import crop_path, open_clip_crops
from asccl.data.pairing import PairingRule
from asccl.data.prepare import (
    DataConfig,
    crop_settings_path,
    pair_path,
    read_crop_settings,
    read_crop_sources,
    run_crops,
    run_index,
    run_pairs,
)

DEMO = Path(__file__).resolve().parents[2] / "demo_data" / "MEAD"
SPEAKER = "W901"
RULE = PairingRule(emotions=("angry",), sentences=("001", "002"))  # 2 pairs, 4 crop stores
REPLACED = f"{SPEAKER}/angry/level_3/001"  # the clip whose video a test replaces


@pytest.fixture
def dataset(tmp_path):
    """One demo speaker's neutral and angry clips (copied with their mtimes)."""
    root = tmp_path / "MEAD"
    for sub in ("video/front", "audio"):
        for emotion in ("neutral", "angry"):
            shutil.copytree(DEMO / SPEAKER / sub / emotion, root / SPEAKER / sub / emotion)
    return root


def prepare(root: Path, out: Path):
    """index, pairs and crops; returns the pairs' and crops' summaries."""
    config = DataConfig(root=root, out=out, pairing=RULE, crop_size=32, workers=0)
    assert run_index(config).failures == []
    return run_pairs(config), run_crops(config)


def items(out: Path) -> dict[str, Path]:
    """Every pair file and crop store under ``out`` by its name relative to ``out``."""
    found = {p.relative_to(out).as_posix(): p for p in (out / "pairs").rglob("*.json")}
    found.update({p.relative_to(out).as_posix(): p for p in (out / "crops").rglob("*.npz")})
    assert len(found) == 6
    return found


def mtimes(out: Path) -> dict[str, int]:
    return {name: path.stat().st_mtime_ns for name, path in items(out).items()}


def test_a_replaced_video_redoes_its_crop_store_and_pairs_only(dataset, tmp_path):
    from asccl.data.video import iter_frames, write_video

    out = tmp_path / "out"
    prepare(dataset, out)
    store = crop_path(out, REPLACED, "jpeg")
    video = dataset / SPEAKER / "video/front/angry/level_3/001.mp4"
    recorded = read_crop_sources(store)
    assert recorded["video"]["path"] == str(video)
    assert recorded["video"]["size"] == video.stat().st_size
    assert "sources" not in read_crop_settings(store)  # settings compared key by key
    before, old_frame = mtimes(out), open_clip_crops(store).frame(0)

    # the clip re-encoded mirrored (same length, so the index still takes it)
    frames = [np.ascontiguousarray(f[:, ::-1]) for f in iter_frames(video)]
    write_video(video, frames, fps=30)
    pairs, crops = prepare(dataset, out)

    assert (pairs.done, pairs.skipped, pairs.failures) == (1, 1, [])
    assert (crops.done, crops.skipped, crops.failures) == (1, 3, [])
    note = f"whose input files changed since they were made (e.g. {video}): redone"
    assert f"1 pairs {note}" in pairs.notes and f"1 crop stores {note}" in crops.notes
    after = mtimes(out)
    redone = {name for name in after if after[name] != before[name]}
    assert redone == {f"crops/{REPLACED}.npz", f"pairs/{SPEAKER}/angry/001_001.json"}
    assert read_crop_sources(store)["video"] == item_settings.fingerprint(video)
    # the new store holds the mirrored clip's faces: its first crop is not the old one
    assert np.abs(open_clip_crops(store).frame(0).astype(int) - old_frame).mean() > 5
    again = prepare(dataset, out)  # and the new records hold: nothing more to redo
    assert [(s.done, s.skipped) for s in again] == [(0, 2), (0, 4)]


def test_a_copy_with_new_mtimes_redoes_nothing_and_updates_the_records(
    dataset, tmp_path, monkeypatch
):
    out = tmp_path / "out"
    prepare(dataset, out)
    before = mtimes(out)
    # `cp -r` without -p: the same bytes under another root, every mtime new
    copy = shutil.copytree(dataset, tmp_path / "copy" / "MEAD", copy_function=shutil.copy)
    video = copy / SPEAKER / "video/front/angry/level_3/001.mp4"
    assert video.stat().st_mtime_ns != (dataset / video.relative_to(copy)).stat().st_mtime_ns

    pairs, crops = prepare(copy, out)
    assert [(s.done, s.skipped) for s in (pairs, crops)] == [(0, 2), (0, 4)]
    assert not [n for s in (pairs, crops) for n in s.notes if "redone" in n]
    # the items' bytes stay, their records now name the copy, its mtimes, the same hashes
    store = crop_path(out, REPLACED, "jpeg")
    assert read_crop_sources(store)["video"] == item_settings.fingerprint(video)
    record = json.loads(pair_path_of(out, "001_001").read_text())
    assert record["sources"]["emotional_video"]["mtime_ns"] == video.stat().st_mtime_ns
    after = mtimes(out)
    assert {n: after[n] for n in after if n.endswith(".npz")} == {
        n: before[n] for n in before if n.endswith(".npz")
    }

    # so a third run reads no input at all (a hash now would fail this run)
    def no_hashing(path):
        raise AssertionError(f"hashed {path}")

    monkeypatch.setattr(item_settings, "fingerprint", no_hashing)
    pairs, crops = prepare(copy, out)
    assert [(s.done, s.skipped) for s in (pairs, crops)] == [(0, 2), (0, 4)]


def pair_path_of(out: Path, key: str) -> Path:
    return out / "pairs" / SPEAKER / "angry" / f"{key}.json"


def test_items_of_an_older_asccl_follow_makes_rule(dataset, tmp_path):
    out = tmp_path / "out"
    prepare(dataset, out)
    # as an older asccl wrote them: settings recorded, input files not
    for path in items(out).values():
        record_file = path if path.suffix == ".json" else crop_settings_path(path)
        record = json.loads(record_file.read_text())
        del record["sources"]
        record_file.write_text(json.dumps(record))
    # the demo clips keep their Dec. mtimes: every item is newer than its inputs, but for
    # one clip touched now, after its items were made
    video = dataset / SPEAKER / "video/front/angry/level_3/002.mp4"
    later = max(p.stat().st_mtime_ns for p in items(out).values()) + 10**9
    os.utime(video, ns=(later, later))
    before = mtimes(out)

    pairs, crops = prepare(dataset, out)
    assert [(s.done, s.skipped, s.failures) for s in (pairs, crops)] == [(1, 1, []), (1, 3, [])]
    note = f"of an older asccl (input files not recorded) older than an input file (e.g. {video})"
    assert f"1 pairs {note}: redone" in pairs.notes
    assert f"1 crop stores {note}: redone" in crops.notes
    after = mtimes(out)
    assert {n for n in after if after[n] != before[n]} == {
        f"crops/{SPEAKER}/angry/level_3/002.npz",
        f"pairs/{SPEAKER}/angry/002_002.json",
    }
    # the redone items record their inputs; the kept ones stay as they were (unrecorded)
    assert read_crop_sources(crop_path(out, f"{SPEAKER}/angry/level_3/002", "jpeg")) is not None
    assert read_crop_sources(crop_path(out, REPLACED, "jpeg")) is None
    assert "sources" not in json.loads(pair_path_of(out, "001_001").read_text())
    assert "sources" in json.loads(pair_path_of(out, "002_002").read_text())


def test_pair_files_record_both_clips_audio_and_video(dataset, tmp_path):
    out = tmp_path / "out"
    config = DataConfig(root=dataset, out=out, pairing=RULE, workers=0)
    run_index(config)
    run_pairs(config)
    record = json.loads(pair_path_of(out, "002_002").read_text())
    clips = {
        "neutral_audio": "audio/neutral/level_1/002.m4a",
        "neutral_video": "video/front/neutral/level_1/002.mp4",
        "emotional_audio": "audio/angry/level_3/002.m4a",
        "emotional_video": "video/front/angry/level_3/002.mp4",
    }
    assert record["sources"] == {
        role: item_settings.fingerprint(dataset / SPEAKER / rel) for role, rel in clips.items()
    }
    audio = (dataset / SPEAKER / clips["neutral_audio"]).read_bytes()
    assert record["sources"]["neutral_audio"]["sha256"] == hashlib.sha256(audio).hexdigest()[:16]
    assert record["settings"] == config.pair_settings()  # the settings entry has no sources
    assert pair_path(out, _first_pair(out)).exists()


def _first_pair(out: Path):
    from asccl.data.clip_index import read_clip_index
    from asccl.data.pairing import pair_clips

    return pair_clips(read_clip_index(out / "clips.csv"), RULE)[0][0]
