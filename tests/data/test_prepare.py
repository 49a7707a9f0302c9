"""The stage-1 commands end to end on a slice of the bundled demo data: outputs, resume,
shards, and bad inputs reported by path."""

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from asccl.data.crop_store import crop_path, open_clip_crops
from asccl.data.pair_files import read_authors_json, read_pairs_table
from asccl.data.pairing import PairingRule
from asccl.data.prepare import (
    DataConfig,
    crop_settings_path,
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
    settings = {"pairing": RULE, "crop_size": 64, "workers": 0, **changes}
    return DataConfig(root=root, out=out, **settings)


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
    (video / "disgusted/level_3/029.mp4").write_bytes(b"not a video at all")  # corrupt mp4
    config = config_for(dataset, tmp_path / "out")
    index = run_index(config)
    assert [item for item, _ in index.failures] == [str(video / "disgusted/level_3/029.mp4")]
    # audio damaged after indexing (index checks it too: tests/robustness/test_data_inputs.py)
    (audio / "angry/level_3/001.m4a").write_bytes(b"")  # empty file
    (audio / "angry/level_3/002.m4a").write_bytes(b"\x00garbage" * 100)  # corrupt
    frames = np.zeros((5, 32, 32, 3), np.uint8)
    write_video(audio / "disgusted/level_3/028.m4a", frames, fps=30)  # no audio stream
    pairs = run_pairs(config)
    reasons = dict(pairs.failures)
    assert len(reasons) == 3 and pairs.done == 0  # 029 failed the index: never paired
    assert "empty file" in reasons[f"{SPEAKER}/angry/001_001"]
    assert (
        "cannot be opened" in reasons[f"{SPEAKER}/angry/002_002"]
        or "corrupt" in reasons[f"{SPEAKER}/angry/002_002"]
    )
    assert "no audio stream" in reasons[f"{SPEAKER}/disgusted/001_028"]
    assert f"{SPEAKER}/disgusted/002_029" not in reasons
    assert all("\n" not in reason for reason in reasons.values())
    log = (config.out / "logs").glob("pairs-*.log")
    assert "empty file" in next(log).read_text()
    assert not pair_path(config.out, _pair(config)).exists()


def _pair(config):
    from asccl.data.clip_index import read_clip_index
    from asccl.data.pairing import pair_clips

    return pair_clips(read_clip_index(config.out / "clips.csv"), RULE)[0][0]


# ----------------------------------------------------------------------------- reruns

ONE_PAIR = PairingRule(emotions=("angry",), sentences=("001",))


def test_rerun_with_other_crop_size_redoes_crops(dataset, tmp_path):
    config = config_for(dataset, tmp_path / "out", pairing=ONE_PAIR, crop_size=32)
    run_index(config)
    assert run_crops(config).done == 2
    store = crop_path(config.out, f"{SPEAKER}/angry/level_3/001", "jpeg")
    assert open_clip_crops(store).size == 32
    same = run_crops(config)  # same settings: nothing to do
    assert (same.done, same.skipped, same.notes[:-1]) == (0, 2, [])
    bigger = run_crops(config_for(dataset, config.out, pairing=ONE_PAIR, crop_size=48))
    assert (bigger.done, bigger.skipped, bigger.failures) == (2, 0, [])
    assert "2 crop stores made with other settings (crop_size: 32 -> 48): redone" in bigger.notes
    assert open_clip_crops(store).size == 48 and open_clip_crops(store).frame(0).shape[0] == 48
    assert json.loads(crop_settings_path(store).read_text())["crop_size"] == 48
    # a store of an older asccl (no settings beside it) is redone too, and says so
    crop_settings_path(store).unlink()
    legacy = run_crops(config_for(dataset, config.out, pairing=ONE_PAIR, crop_size=48))
    assert (legacy.done, legacy.skipped) == (1, 1)
    assert any("1 crop stores made without recorded settings" in n for n in legacy.notes)


def test_rerun_with_other_features_and_metric_redoes_pairs(dataset, tmp_path):
    config = config_for(dataset, tmp_path / "out")
    run_index(config)
    assert run_pairs(config).done == 4
    before = {
        (p.neutral_clip, p.emotional_clip): p for p in read_pairs_table(config.out / "pairs.csv")
    }
    same = run_pairs(config)
    assert (same.done, same.skipped) == (0, 4)
    other = config_for(dataset, config.out, features="mfcc", dtw_metric="cosine")
    again = run_pairs(other)
    assert (again.done, again.skipped, again.failures) == (4, 0, [])
    assert (
        "4 pairs made with other settings (features: mel -> mfcc; dtw_metric: l1 -> cosine): "
        "redone" in again.notes
    )
    record = json.loads(pair_path(config.out, _pair(config)).read_text())
    assert record["settings"] == {"features": "mfcc", "dtw_metric": "cosine", "sample_rate": 16000,
                                  "feature_dtype": "float32", "dtw_ties": "librosa"}  # fmt: skip
    after = read_pairs_table(config.out / "pairs.csv")
    assert len(after) == 4
    # cosine distances lie in [0, 2]: the mel/L1 costs (hundreds of dB per step) are gone
    assert all(p.quality["mean_step_cost"] <= 2.0 for p in after)
    assert all(
        before[(p.neutral_clip, p.emotional_clip)].quality["mean_step_cost"] > 2.0 for p in after
    )
    assert (run_pairs(other).done, run_pairs(other).skipped) == (0, 4)


def test_pairs_without_settings_are_redone_and_failed_redos_leave_the_merge(dataset, tmp_path):
    config = config_for(dataset, tmp_path / "out")
    run_index(config)
    run_pairs(config)
    first = sorted((config.out / "pairs").rglob("*.json"))[0]
    record = json.loads(first.read_text())
    del record["settings"]  # as the code before settings were recorded wrote it
    first.write_text(json.dumps(record))
    legacy = run_pairs(config)
    assert (legacy.done, legacy.skipped) == (1, 3)
    assert any("1 pairs made without recorded settings" in n for n in legacy.notes)
    # a redo that fails keeps the old file, which the merged files then leave out
    broken = dataset / SPEAKER / "audio/angry/level_3/001.m4a"
    broken.write_bytes(b"")
    kept = pair_path(config.out, _pair(config)).read_bytes()
    cosine = run_pairs(config_for(dataset, config.out, dtw_metric="cosine"))
    assert (cosine.done, len(cosine.failures)) == (3, 1)
    assert pair_path(config.out, _pair(config)).read_bytes() == kept
    assert len(read_pairs_table(config.out / "pairs.csv")) == 3
    assert any("1 pair files on disk made with other settings left out" in n for n in cosine.notes)


def test_merge_holds_only_pairs_of_the_current_rule(dataset, tmp_path):
    config = config_for(dataset, tmp_path / "out")
    run_index(config)
    run_pairs(config)
    narrower = run_pairs(config_for(dataset, config.out, pairing=ONE_PAIR))
    assert (narrower.done, narrower.skipped) == (0, 1)
    assert [p.emotional_clip for p in read_pairs_table(config.out / "pairs.csv")] == [
        f"{SPEAKER}/angry/level_3/001"
    ]
    assert any("3 pair files on disk not formed by the current pairing rule" in n
               for n in narrower.notes)  # fmt: skip


# ----------------------------------------------------------------------------- config


@pytest.mark.parametrize(
    ("changes", "key"),
    [
        ({"crop_size": 0}, "crop_size"),
        ({"crop_size": 100000}, "crop_size"),
        ({"crop_size": 64.5}, "crop_size"),
        ({"crop_size": True}, "crop_size"),
        ({"sample_rate": 0}, "sample_rate"),
        ({"detect_every": 0}, "detect_every"),
        ({"workers": -1}, "workers"),
        ({"shard": "2/2"}, "shard"),
        ({"shard": "-1/2"}, "shard"),
        ({"shard": "1/0"}, "shard"),
        ({"shard": "half"}, "shard"),
        ({"features": "wav2vec"}, "features"),
        ({"dtw_metric": "l3"}, "dtw_metric"),
        ({"crop_format": "png"}, "crop_format"),
        ({"out": 5}, "out"),
        ({"out": ""}, "out"),
        ({"speakers": "W901"}, "speakers"),
        ({"crop_all_clips": "yes"}, "crop_all_clips"),
    ],
)
def test_data_config_refuses_bad_values_naming_the_key(changes, key):
    from asccl.config import ConfigError

    with pytest.raises(ConfigError, match=f"^{key}: ") as info:
        DataConfig(**changes)
    assert "\n" not in str(info.value)


def test_data_config_takes_sane_values():
    config = DataConfig(root="data", out="runs/x", crop_size=16, workers=0, shard="3/4")
    assert config.out == Path("runs/x") and config.crop_size == 16
    preset = {"feature_dtype": "float32", "dtw_ties": "librosa"}
    assert config.pair_settings() == {"features": "mel", "dtw_metric": "l1", "sample_rate": 16000,
                                      **preset}  # fmt: skip
    assert config.crop_settings()["crop_size"] == 16


def test_pair_failures_name_the_file(dataset, tmp_path):
    short = dataset / SPEAKER / "audio/angry/level_3/001.m4a"
    silent = dataset / SPEAKER / "audio/disgusted/level_3/028.m4a"
    config = config_for(dataset, tmp_path / "out")
    run_index(config)  # before the damage: the index would refuse the 12.5 ms track
    write_wav(short, np.full(200, 0.3, np.float32))  # 12.5 ms: under one 30 fps frame
    write_wav(silent, np.zeros(32000, np.float32))
    result = run_pairs(config)
    reasons = dict(result.failures)
    assert result.done == 2 and len(reasons) == 2
    assert reasons[f"{SPEAKER}/angry/001_001"].startswith(f"{short}: audio too short for DTW")
    assert reasons[f"{SPEAKER}/disgusted/001_028"].startswith(f"{silent}: silent audio track")
    log = next((config.out / "logs").glob("pairs-*.log")).read_text()
    assert str(short) in log and str(silent) in log
    line = result.error_line()
    assert line is not None and str(short) in line and "[pairs] 2 items failed, listed in" in line


def write_wav(path: Path, samples: np.ndarray, rate: int = 16000) -> None:
    """Mono 16-bit PCM WAV (under the dataset's .m4a name: FFmpeg reads the content)."""
    import av

    with av.open(str(path), "w", format="wav") as container:
        stream = container.add_stream("pcm_s16le", rate=rate, layout="mono")
        data = (np.clip(samples, -1, 1) * 32767).round().astype(np.int16)[None]
        frame = av.AudioFrame.from_ndarray(data, format="s16", layout="mono")
        frame.sample_rate = rate
        container.mux(stream.encode(frame))
        container.mux(stream.encode(None))


def _die_on_two(item: int) -> None:
    """Pool work for the test below: the worker running item 2 dies as if killed."""
    if item == 2:
        os._exit(3)


def test_a_dead_worker_fails_its_items_without_a_traceback():
    from asccl.data.prepare import StageSummary, _run_items

    summary = StageSummary("test")
    _run_items("dying", [1, 2, 3, 4], _die_on_two, str, 2, summary)
    assert summary.done + len(summary.failures) == 4
    assert "2" in dict(summary.failures)  # items still queued may fail with it
    assert all("worker process died" in reason for _, reason in summary.failures)


def test_settings_change_names_each_changed_key():
    from asccl.data.prepare import settings_change

    now = {"features": "mel", "dtw_metric": "l1", "sample_rate": 16000}
    assert settings_change(now, dict(now)) is None
    assert settings_change(None, now) == "settings unknown"
    assert settings_change({**now, "dtw_metric": "cosine"}, now) == "dtw_metric: cosine -> l1"
    assert (
        settings_change({"features": "mel"}, now) == "dtw_metric: ? -> l1; sample_rate: ? -> 16000"
    )


def test_the_tracker_rule_is_recorded_with_every_crop_store():
    """A crop store's content depends on the tracker's rule (``hold``, re-detection), so it
    is recorded with the store: a store made by another rule (or an older asccl, which did
    not record it) is redone, and the data stage's tracker is built from the record."""
    from asccl.data.config import TRACKER_RULE
    from asccl.data.item_settings import settings_change
    from asccl.data.landmarks import FaceTracker

    settings = DataConfig(root="x").crop_settings()
    assert {k: settings[k] for k in TRACKER_RULE} == TRACKER_RULE
    # the tracker's own default is the recorded rule (a store made through crop_clip's
    # default tracker records the truth)
    assert FaceTracker(landmarker=None).hold == TRACKER_RULE["hold"]
    older = {k: v for k, v in settings.items() if k not in TRACKER_RULE}
    assert settings_change(older, settings) == "tracker_rule: ? -> 2; hold: ? -> 10"


def test_the_data_stage_tracker_takes_its_hold_from_the_recorded_settings(monkeypatch, tmp_path):
    """The crops are made with the ``hold`` their record names (a record says what made
    them): ``_CropWork`` builds its tracker from the settings it is given."""
    import asccl.data.landmarks as landmarks
    import asccl.data.prepare as prepare

    built = []

    class Stop(Exception):
        pass

    def fake_crop_clip(video, size, tracker, **rule):
        built.append(tracker.hold)
        raise Stop

    monkeypatch.setattr(landmarks, "make_landmarker", lambda name: object())
    monkeypatch.setattr("asccl.data.crops.crop_clip", fake_crop_clip)
    monkeypatch.setattr(prepare, "_TRACKERS", {})
    settings = {**DataConfig(root="x").crop_settings(), "hold": 3}
    clip = type("C", (), {"video": tmp_path / "v.mp4", "clip_id": "a"})()
    clip.video.write_bytes(b"fingerprinted before cropping")  # the store records its video
    with pytest.raises(Stop):
        prepare._CropWork(tmp_path, "jpeg", settings)(clip)
    assert built == [3]
