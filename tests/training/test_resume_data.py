"""A resume checks the data training reads: the pairs as parsed (not pairs.csv's bytes)
and the crop stores' size and recorded settings; a checkpoint of an older asccl (a digest
of pairs.csv's bytes, no crops) still resumes on unchanged data."""

from __future__ import annotations

import dataclasses
import json
import logging
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from asccl.config import ConfigError
from asccl.data.crop_store import open_clip_crops, write_clip_crops
from asccl.data.item_settings import crop_settings_path
from asccl.data.opencv import cv2
from asccl.data.pair_files import write_pairs_table
from asccl.metric import MetricConfig
from asccl.training.config import TrainConfig
from asccl.training.resume import (
    LEGACY_PAIRS_KEY,
    PAIRS_KEY,
    check_resume,
    crop_settings,
    data_settings,
    file_digest,
    pairs_digest,
)
from asccl.training.train_metric import train_metric

SMALL = MetricConfig(backbone="iresnet18", image_size=64, num_anchors=(8, 4, 4, 2))
SETTINGS = {
    "init": "random", "val_speakers": ["W903"], "batch_size": 4, "lr": 1e-3, "seed": 0,
    "workers": 0, "checkpoint_every": 1, "val_every": 0, "val_batches": 1, "log_every": 1,
    "device": "cpu", "batchnorm": "frozen",
}  # fmt: skip


def config(data: Path, out: Path, steps: int) -> TrainConfig:
    return TrainConfig(data=data, out=out, metric=SMALL, max_steps=steps, **SETTINGS)


@pytest.fixture(scope="module")
def first_run(stage1_64, tmp_path_factory) -> Path:
    """A 1-step run on the 64 px stage-1 folder (checkpoint step_00000001)."""
    out = tmp_path_factory.mktemp("first") / "run"
    train_metric(config(stage1_64, out, 1))
    return out


@pytest.fixture
def trained(stage1_64, first_run, tmp_path) -> tuple[Path, Path]:
    """``(data, out)``: copies of the stage-1 folder and of :func:`first_run`, its
    checkpoint's recorded data folder moved to the copy (the rest as recorded)."""
    data = Path(shutil.copytree(stage1_64, tmp_path / "data"))
    out = Path(shutil.copytree(first_run, tmp_path / "run"))
    state_path = out / "checkpoints" / "step_00000001" / "state.json"
    state = json.loads(state_path.read_text())
    assert state["settings"]["data"] == json.dumps(str(stage1_64.resolve()))
    state["settings"]["data"] = json.dumps(str(data.resolve()))
    state_path.write_text(json.dumps(state))
    return data, out


def refusal(data: Path, out: Path) -> str:
    """The one-line refusal of resuming ``out``."""
    newest = out / "checkpoints" / "step_00000001"
    with pytest.raises(ConfigError, match=f"^{re.escape(str(newest))}: cannot resume") as err:
        train_metric(config(data, out, 1))
    assert "\n" not in str(err.value)
    return str(err.value)


def resumes(data: Path, out: Path, caplog) -> None:
    """``out`` resumes at step 1 (and, already there, trains no further step)."""
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="asccl.training"):
        train_metric(config(data, out, 1))
    assert f"resuming from {out / 'checkpoints' / 'step_00000001'} (step 1)" in caplog.messages


def stores(data: Path) -> list[Path]:
    return sorted((data / "crops").rglob("*.npz"))


@pytest.mark.slow
def test_other_crops_under_the_same_pairs_are_refused_naming_the_crop_size(trained):
    """The audit's case: crops/ replaced by stores of another size, pairs.csv unchanged
    (it resumed and trained on them). Here the same clips re-cropped at 48 px."""
    data, out = trained
    for store in stores(data):
        crops = open_clip_crops(store).read_all()
        frames = np.stack([cv2.resize(f, (48, 48), interpolation=cv2.INTER_AREA)
                           for f in crops.frames])  # fmt: skip
        smaller = dataclasses.replace(crops, frames=frames, landmarks=crops.landmarks * 0.75)
        write_clip_crops(smaller, store)
        recorded = json.loads(crop_settings_path(store).read_text())
        crop_settings_path(store).write_text(json.dumps({**recorded, "crop_size": 48}))
    line = refusal(data, out)
    assert "data_crops.size 64 -> 48 (other data: the crop size);" in line, line


@pytest.mark.slow
def test_crops_made_with_other_settings_are_refused_naming_the_setting(trained):
    data, out = trained
    for store in stores(data):  # all re-cropped alike (a mix is refused by the dataset)
        recorded = json.loads(crop_settings_path(store).read_text())
        crop_settings_path(store).write_text(json.dumps({**recorded, "detect_every": 3}))
    line = refusal(data, out)
    changed = f"data_crops.settings.detect_every {recorded['detect_every']} -> 3"
    assert f"{changed} (other data: the crop settings);" in line, line


@pytest.mark.slow
def test_other_pairs_are_refused_before_the_data_is_read(trained, monkeypatch):
    data, out = trained
    text = (data / "pairs.csv").read_text().splitlines(keepends=True)
    (data / "pairs.csv").write_text("".join(text[:-1]))  # one clip pair fewer
    monkeypatch.setattr("asccl.training.dataset.PairedFrames.__init__", None)  # not reached
    line = refusal(data, out)
    assert re.search(f'{PAIRS_KEY} "[0-9a-f]{{16}}" -> "[0-9a-f]{{16}}"', line), line
    assert "(other data: the pairs in pairs.csv)" in line


@pytest.mark.slow
def test_the_same_pairs_saved_by_excel_resume(trained, caplog):
    """A byte order mark and CRLF line ends (Excel) change the bytes, not the pairs: the
    run resumes (it was refused as changed data)."""
    data, out = trained
    path = data / "pairs.csv"
    path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes().replace(b"\n", b"\r\n"))
    resumes(data, out, caplog)


@pytest.mark.slow
def test_a_checkpoint_of_an_older_asccl_resumes_on_the_same_pairs_csv(trained, caplog):
    """An older asccl recorded ``data_pairs_csv`` (the bytes of pairs.csv) and no crops:
    it resumes while those bytes are the same, and is refused once they differ."""
    data, out = trained
    state_path = out / "checkpoints" / "step_00000001" / "state.json"
    state = json.loads(state_path.read_text())
    settings = {k: v for k, v in state["settings"].items()
                if k != PAIRS_KEY and not k.startswith("data_crops.")}  # fmt: skip
    settings[LEGACY_PAIRS_KEY] = json.dumps(file_digest(data / "pairs.csv"))
    state_path.write_text(json.dumps({**state, "settings": settings}))
    old = out.with_name("old")
    shutil.copytree(out, old)
    resumes(data, out, caplog)
    path = data / "pairs.csv"
    path.write_bytes(path.read_bytes().replace(b"\n", b"\r\n"))  # the bytes it recorded
    line = refusal(data, old)
    assert "the bytes of pairs.csv (a checkpoint of an older asccl)" in line, line


@pytest.mark.slow
def test_crops_remade_from_changed_videos_are_refused(trained, caplog):
    """A store recut from a changed video (its record's video hash differs; size and
    settings alike) is refused; a checkpoint of an older asccl, without the sources key,
    resumes on the unchanged stores."""
    data, out = trained
    state_path = out / "checkpoints" / "step_00000001" / "state.json"
    state = json.loads(state_path.read_text())
    older = {k: v for k, v in state["settings"].items() if k != "data_crops.sources"}
    assert older != state["settings"]  # this asccl recorded the key
    old = out.with_name("old")
    shutil.copytree(out, old)
    old_state = old / "checkpoints" / "step_00000001" / "state.json"
    old_state.write_text(json.dumps({**state, "settings": older}))
    store = stores(data)[0]
    record = json.loads(crop_settings_path(store).read_text())
    original = crop_settings_path(store).read_text()
    record["sources"]["video"]["sha256"] = "0123456789abcdef"
    crop_settings_path(store).write_text(json.dumps(record))
    line = refusal(data, out)
    assert "(other data: the videos the crops were cut from);" in line, line
    crop_settings_path(store).write_text(original)  # unchanged data again
    resumes(data, old, caplog)


# ----------------------------------------------------------------------------- pieces


def test_the_pairs_digest_follows_the_rows_not_the_bytes(tmp_path, stage1_64):
    from asccl.data.pair_files import read_pairs_table

    pairs = read_pairs_table(stage1_64 / "pairs.csv")
    plain = write_pairs_table(pairs, tmp_path / "plain.csv")
    costs = write_pairs_table([dataclasses.replace(p, dtw_cost=p.dtw_cost + 1) for p in pairs],
                              tmp_path / "costs.csv")  # fmt: skip
    shifted = dataclasses.replace(pairs[0], emotional_frames=pairs[0].emotional_frames + 1)
    frames = write_pairs_table([shifted, *pairs[1:]], tmp_path / "frames.csv")
    order = write_pairs_table(pairs[::-1], tmp_path / "order.csv")  # the item order moves
    assert pairs_digest(plain) == pairs_digest(costs) == pairs_digest(stage1_64 / "pairs.csv")
    assert len({pairs_digest(p) for p in (plain, frames, order)}) == 3
    assert pairs_digest(tmp_path / "none.csv") == "missing"
    assert data_settings(tmp_path)[PAIRS_KEY] == "missing"


def test_crop_settings_merge_the_stores_records():
    same = {"crop_size": 64, "detect_every": 10, "pad": "zeros"}
    assert crop_settings(64, [same, same]) == {
        "data_crops.size": "64", "data_crops.settings.detect_every": "10",
        "data_crops.settings.pad": '"zeros"',
    }  # fmt: skip
    mixed = crop_settings(64, [same, {**same, "detect_every": 3}, None])
    assert (
        mixed["data_crops.settings.detect_every"] == '["unrecorded", 10, 3]'
    )  # sorted as JSON text
    assert crop_settings(32, [None]) == {"data_crops.size": "32",
                                         "data_crops.settings": '"unrecorded"'}  # fmt: skip


def test_crop_keys_are_compared_once_known(tmp_path):
    """``TrainingRun``'s first check runs before the dataset opens the stores: the saved
    crop keys wait; the second (with them) compares them."""
    saved = {"lr": "0.1", **crop_settings(64, [{"pad": "zeros"}])}
    check_resume(tmp_path, saved, {"lr": "0.1"}, 1, None)
    with pytest.raises(ConfigError, match=r"data_crops\.settings\.pad \"zeros\" -> \"edge\""):
        check_resume(tmp_path, saved, {"lr": "0.1", **crop_settings(64, [{"pad": "edge"}])}, 1, 2)
