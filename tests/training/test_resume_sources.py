"""Training's run settings carry a digest of the videos the crop stores were cut from
(each store's recorded ``"sources"``): a resume on stores remade from changed videos is
refused, a checkpoint of an older asccl (no such key) resumes on unchanged data.
End to end through ``train_metric``: tests/training/test_resume_data.py."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest

from asccl.config import ConfigError
from asccl.data.item_settings import crop_settings_path
from asccl.training.dataset import PairedFrames, data_run_settings
from asccl.training.resume import SOURCES_KEY, START_OVER, check_resume, sources_digest


def stores(data: Path) -> list[Path]:
    return sorted((data / "crops").rglob("*.npz"))


def test_the_digest_follows_each_clips_video_not_the_order():
    a = [("W901/angry/level_3/001", "00aa"), ("W901/neutral/level_1/001", "11bb")]
    assert sources_digest(a) == sources_digest(a[::-1]) == sources_digest(a + a[:1])
    assert len(sources_digest(a)) == 16
    other = [a[0], ("W901/neutral/level_1/001", "22cc")]  # one store cut from another video
    unrecorded = [a[0], ("W901/neutral/level_1/001", "unrecorded")]
    assert len({sources_digest(a), sources_digest(other), sources_digest(unrecorded)}) == 3


def test_the_datasets_record_the_sha256_of_each_stores_video(stage1_64):
    """The key equals the digest of the demo videos' own SHA-256s (hashed here, from the
    files, not from the records), over the clips both datasets read."""
    train = PairedFrames(stage1_64, speakers=["W901"], verify=False)
    val = PairedFrames(stage1_64, speakers=["W903"], verify=False)
    root = stage1_64.parent / "MEAD"
    expected = []
    for store in stores(stage1_64):
        clip = store.relative_to(stage1_64 / "crops").as_posix()[: -len(".npz")]
        speaker, emotion, level, sentence = clip.split("/")
        video = root / speaker / "video/front" / emotion / level / f"{sentence}.mp4"
        expected.append((clip, hashlib.sha256(video.read_bytes()).hexdigest()[:16]))
    assert len(expected) == 4
    assert sorted(train.store_sources + val.store_sources) == sorted(expected)
    assert data_run_settings(train, val)[SOURCES_KEY] == json.dumps(sources_digest(expected))
    # the sources are not settings: no per-store key reaches the merged crop settings
    assert not [k for k in data_run_settings(train, val) if "sha256" in k or "path" in k]


@pytest.fixture
def data(stage1_64, tmp_path) -> Path:
    return Path(shutil.copytree(stage1_64, tmp_path / "data"))


def remade_from_another_video(store: Path) -> None:
    """The store's record as ``asccl data prepare`` leaves it after recutting the store
    from a changed video (only the video's fingerprint differs)."""
    record = json.loads(crop_settings_path(store).read_text())
    record["sources"]["video"]["sha256"] = "0123456789abcdef"
    crop_settings_path(store).write_text(json.dumps(record))


def test_a_store_remade_from_another_video_is_refused(data, tmp_path):
    saved = data_run_settings(PairedFrames(data, verify=False))
    remade_from_another_video(stores(data)[0])
    now = data_run_settings(PairedFrames(data, verify=False))
    assert {k for k in now if now[k] != saved[k]} == {SOURCES_KEY}  # nothing else moved
    with pytest.raises(ConfigError) as err:
        check_resume(tmp_path, saved, now, 1, 2)
    line = str(err.value)
    assert f"{SOURCES_KEY} {saved[SOURCES_KEY]} -> {now[SOURCES_KEY]}" in line, line
    assert f"(other data: the videos the crops were cut from); {START_OVER}" in line, line


def test_a_checkpoint_without_the_key_resumes_on_unchanged_data(data, tmp_path):
    """An older asccl recorded the crop size and settings but no sources: compared on
    what it recorded (a changed crop setting is still refused)."""
    now = data_run_settings(PairedFrames(data, verify=False))
    older = {k: v for k, v in now.items() if k != SOURCES_KEY}
    check_resume(tmp_path, older, now, 1, 2)  # no error
    changed = {**older, "data_crops.settings.detect_every": "3"}
    with pytest.raises(ConfigError, match=r"data_crops\.settings\.detect_every 3 -> "):
        check_resume(tmp_path, changed, now, 1, 2)
    # a checkpoint of this asccl on stores without recorded sources: compared as such
    for store in stores(data):
        record = json.loads(crop_settings_path(store).read_text())
        del record["sources"]
        crop_settings_path(store).write_text(json.dumps(record))
    unrecorded = data_run_settings(PairedFrames(data, verify=False))
    assert unrecorded[SOURCES_KEY] != now[SOURCES_KEY]
    check_resume(tmp_path, unrecorded, unrecorded, 1, 2)
    with pytest.raises(ConfigError, match="the videos the crops were cut from"):
        check_resume(tmp_path, now, unrecorded, 1, 2)
