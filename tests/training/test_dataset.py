"""PairedFrames on a real stage-1 output (two demo speakers, one sentence each), its
speaker split, DataLoader workers, and to_model_input."""

import dataclasses
import json
import logging
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from tests.data.crop_damage import break_frames, flip_byte_in_place, rewrite_store
from torch.utils.data import DataLoader

from asccl.data.crop_store import open_clip_crops, write_clip_crops
from asccl.data.errors import DataError
from asccl.data.pair_files import read_pairs_table
from asccl.data.pairing import PairingRule
from asccl.data.prepare import DataConfig, crop_path, run_crops, run_index, run_pairs
from asccl.training.dataset import PairedFrames, split_by_speaker, to_model_input

DEMO = Path(__file__).resolve().parents[2] / "demo_data" / "MEAD"
SPEAKERS = ("W901", "W903")
SIZE = 32


@pytest.fixture(scope="module")
def stage1(tmp_path_factory) -> Path:
    """Stage 1 run for real on two demo speakers: neutral and angry sentence 001 each."""
    tmp = tmp_path_factory.mktemp("stage1")
    root = tmp / "MEAD"
    for speaker in SPEAKERS:
        for sub in ("video/front", "audio"):
            for emotion in ("neutral", "angry"):
                shutil.copytree(DEMO / speaker / sub / emotion, root / speaker / sub / emotion)
    rule = PairingRule(emotions=("angry",), sentences=("001",))
    config = DataConfig(root=root, out=tmp / "out", pairing=rule, crop_size=SIZE, workers=0)
    for run in (run_index, run_pairs, run_crops):
        assert run(config).failures == []
    return config.out


@pytest.fixture
def data(stage1, tmp_path) -> Path:
    """A copy of the stage-1 output that a test may damage."""
    return Path(shutil.copytree(stage1, tmp_path / "out"))


def store(data: Path, clip: str) -> Path:
    return crop_path(data, clip, "jpeg")


def expected_frame_pairs(data: Path, speakers=SPEAKERS) -> list[tuple[str, int, str, int]]:
    """Every frame pair of these speakers whose two frames are valid, in table order."""
    out = []
    for pair in read_pairs_table(data / "pairs.csv"):
        if pair.speaker not in speakers:
            continue
        valid_n = open_clip_crops(store(data, pair.neutral_clip)).valid
        valid_e = open_clip_crops(store(data, pair.emotional_clip)).valid
        for n, e in zip(pair.neutral_frames.tolist(), pair.emotional_frames.tolist(), strict=True):
            if valid_n[n] and valid_e[e]:
                out.append((pair.neutral_clip, n, pair.emotional_clip, e))
    return out


def test_items_are_the_stored_frames_of_each_frame_pair(stage1):
    dataset = PairedFrames(stage1)
    expected = expected_frame_pairs(stage1)
    assert len(dataset) == len(expected) > 100
    assert [dataset.frame_pair(i) for i in range(len(dataset))] == expected
    assert dataset.speakers() == list(SPEAKERS) and dataset.size == SIZE
    assert dataset.skipped == [] and dataset.num_no_face == 0
    readers = {}
    for i in (0, 1, len(dataset) // 2, len(dataset) - 1):
        neutral_clip, n, emotional_clip, e = expected[i]
        neutral, emotional = dataset[i]
        for tensor, clip, frame in ((neutral, neutral_clip, n), (emotional, emotional_clip, e)):
            assert tensor.dtype == torch.uint8 and tensor.shape == (3, SIZE, SIZE)
            assert tensor.is_contiguous()
            reader = readers.setdefault(clip, open_clip_crops(store(stage1, clip)))
            assert torch.equal(tensor, torch.from_numpy(reader.frame(frame)).permute(2, 0, 1))
    summary = dataset.describe()
    assert f"{len(dataset)} frame pairs" in summary and "W901" in summary and "angry" in summary


def test_frame_pairs_without_a_face_are_dropped(data):
    clip = "W901/neutral/level_1/001"
    crops = open_clip_crops(store(data, clip)).read_all()
    valid = crops.valid.copy()
    valid[[3, 10, 11]] = False
    write_clip_crops(dataclasses.replace(crops, valid=valid), store(data, clip))
    dataset = PairedFrames(data)
    expected = expected_frame_pairs(data)
    assert [dataset.frame_pair(i) for i in range(len(dataset))] == expected
    dropped = [(n, e) for p in read_pairs_table(data / "pairs.csv") if p.neutral_clip == clip
               for n, e in zip(p.neutral_frames, p.emotional_frames, strict=True)
               if n in (3, 10, 11)]  # fmt: skip
    assert dataset.num_no_face == len(dropped) >= 3
    assert not {p[1] for p in expected if p[0] == clip} & {3, 10, 11}


def test_missing_crop_stores_are_skipped_with_a_warning(data, caplog):
    store(data, "W903/angry/level_3/001").unlink()  # stage 1 made none (e.g. no face)
    with caplog.at_level(logging.WARNING, logger="asccl.training.dataset"):
        dataset = PairedFrames(data)
    assert dataset.speakers() == ["W901"]
    assert dataset.skipped == [("W903/angry/level_3/001", "no such crop store")]
    expected = expected_frame_pairs(data, speakers=("W901",))
    assert [dataset.frame_pair(i) for i in range(len(dataset))] == expected
    message = caplog.records[-1].getMessage()
    assert "1 clip pair(s) dropped for 1 unusable clip(s)" in message
    assert "1 missing crop store" in message


def _not_a_zip(path: Path) -> None:
    path.write_bytes(b"not a zip file")


def _truncated(path: Path) -> None:
    path.write_bytes(path.read_bytes()[:-300])


def _int_boxes(path: Path) -> None:
    with np.load(path) as npz:
        rewrite_store(path, boxes=npz["boxes"].astype(np.int64))


def _short_landmarks(path: Path) -> None:
    with np.load(path) as npz:
        rewrite_store(path, landmarks=npz["landmarks"][:-1])


@pytest.mark.parametrize(
    ("damage", "problem"),
    [
        (_not_a_zip, "unreadable crop store"),
        (_truncated, "unreadable crop store"),
        (lambda p: break_frames(p, [7]), "frame 7: undecodable JPEG"),
        (lambda p: flip_byte_in_place(p, 4), "frame bytes changed since the store was written"),
        (_int_boxes, "array boxes has dtype int64"),
        (_short_landmarks, "arrays disagree in length or shape"),
    ],
)
def test_a_damaged_crop_store_is_refused_at_construction_naming_it(data, damage, problem):
    path = store(data, "W903/neutral/level_1/001")
    damage(path)
    with pytest.raises(DataError, match=problem) as info:
        PairedFrames(data)
    assert str(info.value).startswith(f"{path}: ") and "\n" not in str(info.value)
    with pytest.raises(DataError, match=problem):
        split_by_speaker(data, ["W903"])  # what train-metric builds


def test_landmark_values_do_not_stop_training(data):
    """Training reads frames and the valid mask only: NaN landmarks on a face frame (which
    the crop stage would redo) leave the items as they were."""
    path = store(data, "W903/neutral/level_1/001")
    before = [PairedFrames(data).frame_pair(i) for i in range(3)]
    with np.load(path) as npz:
        landmarks = npz["landmarks"].copy()
    landmarks[5] = np.nan
    rewrite_store(path, landmarks=landmarks)
    assert [PairedFrames(data).frame_pair(i) for i in range(3)] == before


def test_a_store_damaged_after_construction_fails_in_a_worker_as_one_data_error(data):
    """A DataLoader worker's DataError reaches the main process as itself, one line."""
    clip = "W901/angry/level_3/001"
    dataset = PairedFrames(data)
    used = sorted({e for _, _, c, e in map(dataset.frame_pair, range(len(dataset)))
                   if c == clip})  # fmt: skip
    break_frames(store(data, clip), [used[len(used) // 2]])
    loader = DataLoader(dataset, batch_size=8, num_workers=2)
    with pytest.raises(DataError) as info:
        list(loader)
    assert str(info.value) == (
        f"{store(data, clip)}: frame {used[len(used) // 2]}: undecodable JPEG"
    )
    assert info.value.path == str(store(data, clip))
    with pytest.raises(DataError, match=f"frame {used[len(used) // 2]}: undecodable JPEG"):
        PairedFrames(data)  # a new build finds it
    assert len(PairedFrames(data, verify=False)) == len(dataset)  # without the check: builds


def test_stores_that_disagree_with_the_pairs_are_reported(data):
    clip = "W901/angry/level_3/001"
    crops = open_clip_crops(store(data, clip)).read_all()
    short = dataclasses.replace(
        crops, **{f: getattr(crops, f)[:40] for f in ("frames", "landmarks",
                  "source_landmarks", "boxes", "valid")}
    )  # fmt: skip
    write_clip_crops(short, store(data, clip))
    dataset = PairedFrames(data)
    assert dataset.speakers() == ["W903"]
    [(skipped_clip, reason)] = dataset.skipped
    assert skipped_clip == clip and "the store holds 40" in reason
    small = dataclasses.replace(crops, frames=np.ascontiguousarray(crops.frames[:, ::2, ::2]))
    write_clip_crops(small, store(data, clip))
    with pytest.raises(DataError, match=r"crop stores differ in size: 32 px .* 16 px"):
        PairedFrames(data)


def test_stores_made_with_other_settings_are_refused_naming_them(data):
    """Shard runs with another detect_every left crops of two procedures in one folder;
    training mixed them. The recorded settings are compared: one line naming the setting,
    each group's value and store count, and how to redo them."""
    from asccl.data.item_settings import crop_settings_path

    path = crop_settings_path(store(data, "W901/angry/level_3/001"))
    recorded = json.loads(path.read_text())
    assert recorded["detect_every"] != 3
    path.write_text(json.dumps({**recorded, "detect_every": 3}))
    with pytest.raises(DataError) as err:
        PairedFrames(data)
    line = str(err.value)
    assert "\n" not in line and "crop stores made with different settings" in line
    assert f"detect_every {recorded['detect_every']} (3 stores" in line
    assert "detect_every 3 (1 stores, e.g. W901/angry/level_3/001)" in line
    assert "rerun asccl data crops without --shard" in line
    assert "crop_size" not in line  # only what differs
    path.unlink()  # a store with no record (an older asccl) is not compared
    assert len(PairedFrames(data)) > 0


def test_nothing_usable_is_a_data_error(data, tmp_path):
    with pytest.raises(DataError, match=r"no pairs\.csv"):
        PairedFrames(tmp_path / "nowhere")
    with pytest.raises(DataError, match=r"no usable frame pairs.*crop_format \('npy'\)"):
        PairedFrames(data, crop_format="npy")  # stage 1 wrote jpeg stores
    with pytest.raises(ValueError, match="unknown crop_format 'png'; valid: jpeg, npy"):
        PairedFrames(data, crop_format="png")
    shutil.rmtree(data / "crops")
    with pytest.raises(DataError, match=r"no usable frame pairs.*run `asccl data crops` first"):
        PairedFrames(data)


def test_speaker_and_emotion_filters(stage1):
    everyone = PairedFrames(stage1)
    w901 = PairedFrames(stage1, speakers=["W901"])
    w903 = PairedFrames(stage1, exclude_speakers=["W901"])
    assert (w901.speakers(), w903.speakers()) == (["W901"], ["W903"])
    assert len(w901) + len(w903) == len(everyone)
    assert len(PairedFrames(stage1, emotions=["angry"])) == len(everyone)
    with pytest.raises(DataError, match="emotion happy not in the data; emotions: angry"):
        PairedFrames(stage1, emotions=["happy"])
    with pytest.raises(DataError, match="speaker W021 not in the data; speakers: W901, W903"):
        PairedFrames(stage1, exclude_speakers=["W021"])
    with pytest.raises(TypeError, match="list of names"):
        PairedFrames(stage1, speakers="W901")


def test_split_by_speaker(stage1):
    train, val = split_by_speaker(stage1, ["W903"], emotions=["angry"])
    assert (train.speakers(), val.speakers()) == (["W901"], ["W903"])
    assert len(train) + len(val) == len(PairedFrames(stage1))
    with pytest.raises(DataError, match="validation speaker W021 not in the data; speakers: "
                                        "W901, W903"):  # fmt: skip
        split_by_speaker(stage1, ["W021"])


def test_workers_yield_the_batches_of_the_main_process(stage1):
    dataset = PairedFrames(stage1, cache_size=2)
    dataset[0], dataset[len(dataset) - 1]  # fill the cache: it must not travel to workers
    assert len(pickle.loads(pickle.dumps(dataset))._readers) == 0
    assert len(pickle.dumps(dataset)) < 20_000
    loaders = [
        DataLoader(dataset, batch_size=16, shuffle=False, num_workers=n, pin_memory=False)
        for n in (0, 2)
    ]
    batches = [list(loader) for loader in loaders]
    assert len(batches[0]) == len(batches[1]) == -(-len(dataset) // 16)
    assert batches[0][0][0].shape == (16, 3, SIZE, SIZE)
    for (n0, e0), (n1, e1) in zip(*batches, strict=True):
        assert torch.equal(n0, n1) and torch.equal(e0, e1)
    assert len(dataset._readers) <= 2  # the LRU cache stays bounded


def test_to_model_input_range_flip_resize_layout():
    batch = torch.randint(0, 256, (2, 3, 8, 8), dtype=torch.uint8)
    batch[0, :, 0, 0], batch[0, :, 0, 1] = 0, 255
    x = to_model_input(batch, size=8, flip_channels=False, channels_last=False)
    assert x.dtype == torch.float32 and x.shape == (2, 3, 8, 8)
    assert torch.equal(x, batch.float() / 127.5 - 1)  # to_metric_input's uint8 rule
    assert x[0, :, 0, 0].eq(-1).all() and x[0, :, 0, 1].eq(1).all()
    flipped = to_model_input(batch, size=8, flip_channels=True, channels_last=False)
    assert torch.equal(flipped, x.flip(1))
    small = to_model_input(batch, size=4, flip_channels=False, channels_last=True)
    assert small.shape == (2, 3, 4, 4)
    assert small.is_contiguous(memory_format=torch.channels_last)
    reference = F.interpolate(x, size=(4, 4), mode="bilinear", antialias=True)
    torch.testing.assert_close(small, reference)
    with pytest.raises(TypeError, match="uint8"):
        to_model_input(x, size=8, flip_channels=False, channels_last=False)
    with pytest.raises(ValueError, match=r"\(2, 8, 8\)"):
        to_model_input(batch[:, 0], size=8, flip_channels=False, channels_last=False)
    assert np.isfinite(x.numpy()).all()


# ----------------------------------------------------------------------------- frame pack


def test_a_pack_gives_the_same_batches_in_dataloader_workers(data):
    """``asccl data pack`` on a real stage-1 output: seeded shuffled batches from 2 forked
    workers, equal byte for byte with and without the pack (the same JPEG bytes, the same
    decoder: no tolerance)."""
    from asccl.data.frame_pack import pack_crops

    stores = PairedFrames(data, frame_pack="off")
    assert pack_crops(data).failures == []
    packed = PairedFrames(data)  # found and used: frame_pack="auto"
    assert packed._pack is not None

    def batches(dataset):
        loader = DataLoader(dataset, batch_size=7, shuffle=True, num_workers=2,
                            multiprocessing_context="fork",
                            generator=torch.Generator().manual_seed(0))  # fmt: skip
        return list(loader)

    expected, got = batches(stores), batches(packed)
    assert len(got) == len(expected) == -(-len(stores) // 7)
    for (gn, ge), (en, ee) in zip(got, expected, strict=True):
        assert torch.equal(gn, en) and torch.equal(ge, ee)


@pytest.mark.slow  # ~25 s on 2 shared cores: two short training runs
def test_training_from_a_pack_ends_with_the_same_weights(stage1_64, tmp_path, caplog):
    """Two short ``train_metric`` runs, one reading the crop stores and one the pack of the
    same stores: the same batches in, so bit-identical weights out (``save_metric`` writes
    identical bytes for identical weights)."""
    from asccl.data.frame_pack import pack_crops
    from asccl.metric import MetricConfig
    from asccl.training.config import TrainConfig
    from asccl.training.train_metric import train_metric

    data = Path(shutil.copytree(stage1_64, tmp_path / "data"))
    small = MetricConfig(backbone="iresnet18", image_size=64, num_anchors=(8, 4, 4, 2))
    settings = {"init": "random", "val_speakers": ["W903"], "batch_size": 4, "seed": 0,
                "workers": 0, "max_steps": 2, "val_batches": 1, "device": "cpu",
                "batchnorm": "frozen", "metric": small}  # fmt: skip
    from_stores = train_metric(TrainConfig(data=data, out=tmp_path / "stores", **settings))
    assert pack_crops(data).failures == []
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="asccl"):
        from_pack = train_metric(TrainConfig(data=data, out=tmp_path / "pack", **settings))
    assert "read from crops.pack" in caplog.text  # the run did read the pack
    assert from_pack.read_bytes() == from_stores.read_bytes()
