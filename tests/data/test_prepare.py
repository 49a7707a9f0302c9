"""The stage-1 commands end to end on a slice of the bundled demo data: outputs, resume,
shards, and bad inputs reported by path."""

import shutil
from pathlib import Path

import numpy as np
import pytest

from asccl.data.crop_store import open_clip_crops
from asccl.data.pair_files import read_authors_json, read_pairs_table
from asccl.data.pairing import PairingRule
from asccl.data.prepare import (
    DataConfig,
    crop_path,
    pair_path,
    parse_shard,
    run_crops,
    run_index,
    run_pairs,
)

DEMO = Path(__file__).resolve().parents[2] / "demo_data" / "MEAD"
SPEAKER = "W901"
RULE = PairingRule(emotions=("angry", "disgusted"), sentences=("001", "002"))


@pytest.fixture
def dataset(tmp_path):
    """One demo speaker: neutral, angry and disgusted clips."""
    root = tmp_path / "MEAD"
    for sub in ("video/front", "audio"):
        for emotion in ("neutral", "angry", "disgusted"):
            shutil.copytree(DEMO / SPEAKER / sub / emotion, root / SPEAKER / sub / emotion)
    return root


def config_for(root: Path, out: Path, **changes) -> DataConfig:
    return DataConfig(root=root, out=out, pairing=RULE, crop_size=64, workers=0, **changes)


def test_index_pairs_crops_end_to_end(dataset, tmp_path):
    config = config_for(dataset, tmp_path / "out")
    assert run_index(config).failures == []
    pairs = run_pairs(config)
    assert (pairs.done, pairs.failures) == (4, [])
    table = read_pairs_table(config.out / "pairs.csv")
    assert len(table) == 4
    authors = read_authors_json(config.out / "aligned_pairs.json")
    keys = sorted((p.emotion, p.neutral_clip, p.emotional_clip) for p in authors)
    assert keys == [("angry", "001", "001"), ("angry", "002", "002"),
                    ("disgusted", "001", "028"), ("disgusted", "002", "029")]  # fmt: skip
    for pair in table:
        assert len(pair.neutral_frames) == len(pair.emotional_frames) > 0
        assert (np.diff(pair.neutral_frames) >= 0).all() and (
            np.diff(pair.emotional_frames) >= 0
        ).all()
        assert pair.neutral_frames[0] == 0 and pair.emotional_frames[0] == 0
    crops = run_crops(config)
    assert (crops.done, crops.failures) == (6, [])  # 2 neutral + 2 angry + 2 disgusted clips
    reader = open_clip_crops(crop_path(config.out, f"{SPEAKER}/angry/level_3/001", "jpeg"))
    assert reader.frame(0).shape == (64, 64, 3) and reader.valid.mean() > 0.9
    assert (config.out / "logs").is_dir()


def test_resume_redoes_only_unfinished_items(dataset, tmp_path):
    config = config_for(dataset, tmp_path / "out")
    run_index(config)
    run_pairs(config)
    run_crops(config)
    first = read_pairs_table(config.out / "pairs.csv")
    # a killed run: one pair missing, one half-written; one crop store missing
    done = sorted((config.out / "pairs").rglob("*.json"))
    done[0].unlink()
    done[1].write_text('{"speaker": "W9')
    crop_path(config.out, f"{SPEAKER}/neutral/level_1/002", "jpeg").unlink()
    again = run_pairs(config)
    assert (again.done, again.skipped, again.failures) == (2, 2, [])
    assert [p.neutral_frames.tolist() for p in read_pairs_table(config.out / "pairs.csv")] == [
        p.neutral_frames.tolist() for p in first
    ]
    crops = run_crops(config)
    assert (crops.done, crops.skipped) == (1, 5)


def test_shards_merge_without_coordination(dataset, tmp_path):
    out = tmp_path / "out"
    run_index(config_for(dataset, out))
    a = run_pairs(config_for(dataset, out, shard="0/2"))
    b = run_pairs(config_for(dataset, out, shard="1/2"))
    assert (a.done, b.done) == (2, 2)
    assert len(read_pairs_table(out / "pairs.csv")) == 4  # the last merge sees both shards
    with pytest.raises(ValueError, match="need 0 <= i < n"):
        parse_shard("2/2")
    with pytest.raises(ValueError, match="i/n"):
        parse_shard("half")


def test_bad_media_are_reported_by_path_and_skipped(dataset, tmp_path):
    from asccl.data.video import write_video

    audio = dataset / SPEAKER / "audio"
    video = dataset / SPEAKER / "video/front"
    (audio / "angry/level_3/001.m4a").write_bytes(b"")  # empty file
    (audio / "angry/level_3/002.m4a").write_bytes(b"\x00garbage" * 100)  # corrupt
    frames = np.zeros((5, 32, 32, 3), np.uint8)
    write_video(audio / "disgusted/level_3/028.m4a", frames, fps=30)  # no audio stream
    (video / "disgusted/level_3/029.mp4").write_bytes(b"not a video at all")  # corrupt mp4
    config = config_for(dataset, tmp_path / "out")
    index = run_index(config)
    assert [item for item, _ in index.failures] == [str(video / "disgusted/level_3/029.mp4")]
    pairs = run_pairs(config)
    reasons = dict(pairs.failures)
    assert len(reasons) == 4 and pairs.done == 0
    assert "empty file" in reasons[f"{SPEAKER}/angry/001_001"]
    assert (
        "cannot be opened" in reasons[f"{SPEAKER}/angry/002_002"]
        or "corrupt" in reasons[f"{SPEAKER}/angry/002_002"]
    )
    assert "no audio stream" in reasons[f"{SPEAKER}/disgusted/001_028"]
    assert "no video frame count" in reasons[f"{SPEAKER}/disgusted/002_029"]
    assert all("\n" not in reason for reason in reasons.values())
    log = (config.out / "logs").glob("pairs-*.log")
    assert "empty file" in next(log).read_text()
    assert not pair_path(config.out, _pair(config)).exists()


def _pair(config):
    from asccl.data.clip_index import read_clip_index
    from asccl.data.pairing import pair_clips

    return pair_clips(read_clip_index(config.out / "clips.csv"), RULE)[0][0]
