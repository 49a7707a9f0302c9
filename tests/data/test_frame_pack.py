"""The frame pack (``asccl data pack``): the same items as the crop stores, byte for byte,
in and out of DataLoader workers; resume; a stale pack refused and a damaged one caught,
each in one line naming the file."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from asccl.cli import main
from asccl.data import frame_pack
from asccl.data.crop_store import crop_path, write_clip_crops
from asccl.data.crops import ClipCrops
from asccl.data.errors import DataError
from asccl.data.frame_pack import FramePack, open_frame_pack, pack_crops, pack_dir
from asccl.data.pair_files import AlignedPair, write_pairs_table
from asccl.training.dataset import PairedFrames

SIZE = 32
SPEAKERS = ("M001", "W002")
EMOTIONS = ("angry", "happy")


def clip_crops(n: int, seed: int) -> ClipCrops:
    """Textured random crops (each frame's JPEG differs); frame 1 has no face."""
    rng = np.random.default_rng(seed)
    frames = rng.integers(0, 256, (n, SIZE, SIZE, 3), dtype=np.uint8)
    landmarks = (rng.random((n, 68, 2)) * SIZE).astype(np.float32)
    boxes = np.tile(np.array([0, 0, 64, 64], np.float32), (n, 1))
    valid = np.ones(n, bool)
    valid[1] = False
    landmarks[1], boxes[1], frames[1] = np.nan, np.nan, 0
    return ClipCrops(frames, landmarks, landmarks, boxes, valid, 25.0, (64, 64))


def make_stage1(out: Path) -> Path:
    """pairs.csv + crops/ for 2 speakers x 2 emotions, 9-frame clips with DTW-like
    repeated frames: 4 clip pairs, 6 clips."""
    pairs, seed = [], 0
    for speaker in SPEAKERS:
        neutral = f"{speaker}/neutral/level_1/001"
        write_clip_crops(clip_crops(9, seed), crop_path(out, neutral, "jpeg"))
        for emotion in EMOTIONS:
            seed += 1
            emotional = f"{speaker}/{emotion}/level_3/001"
            write_clip_crops(clip_crops(9, 100 + seed), crop_path(out, emotional, "jpeg"))
            frames_n = np.array([0, 1, 2, 2, 3, 4, 5, 6, 7, 8])
            frames_e = np.array([0, 0, 1, 2, 3, 3, 4, 6, 7, 8])
            pairs.append(AlignedPair(speaker, emotion, neutral, emotional, frames_n, frames_e))
    write_pairs_table(pairs, out / "pairs.csv")
    return out


@pytest.fixture(scope="module")
def stage1(tmp_path_factory) -> Path:
    return make_stage1(tmp_path_factory.mktemp("pack") / "out")


@pytest.fixture
def data(stage1, tmp_path) -> Path:
    """A copy a test may pack or damage (copy2 keeps mtimes, as a packed copy would)."""
    return Path(shutil.copytree(stage1, tmp_path / "out"))


def items(dataset) -> list[tuple[torch.Tensor, torch.Tensor]]:
    return [dataset[i] for i in range(len(dataset))]


def assert_same_items(a, b) -> None:
    assert len(a) == len(b)
    for (an, ae), (bn, be) in zip(a, b, strict=True):
        for x, y in ((an, bn), (ae, be)):
            assert x.dtype == y.dtype == torch.uint8 and x.shape == y.shape == (3, SIZE, SIZE)
            assert x.is_contiguous() and y.is_contiguous() and x.stride() == y.stride()
            assert torch.equal(x, y)  # exact: the same JPEG bytes, the same decoder


def test_pack_reads_the_same_bytes_as_the_stores(data):
    summary = pack_crops(data, shard_clips=4)  # 6 clips: 2 shards, one split across
    assert summary.failures == [] and summary.done == 2 and summary.skipped == 0
    assert sorted(p.name for p in pack_dir(data).iterdir()) == [
        "index.npz", "shard_00000.bin", "shard_00000.npz", "shard_00001.bin", "shard_00001.npz"
    ]  # fmt: skip
    stores = PairedFrames(data, frame_pack="off")
    packed = PairedFrames(data)  # auto: uses the pack
    assert packed._pack is not None and stores._pack is None
    assert "read from crops.pack" in packed.describe()
    assert len(stores) == len(packed) == 4 * 8  # 10 frame pairs, 2 with frame 1 (no face)
    assert [packed.frame_pair(i) for i in range(len(packed))] == [
        stores.frame_pair(i) for i in range(len(stores))
    ]
    assert_same_items(items(stores), items(packed))
    # a split of the data uses the pack too, and agrees
    assert_same_items(
        items(PairedFrames(data, speakers=["W002"], frame_pack="on")),
        items(PairedFrames(data, speakers=["W002"], frame_pack="off")),
    )


@pytest.mark.parametrize(
    "context", ["fork", pytest.param("spawn", marks=pytest.mark.slow)]
)  # fork: the maps are reset by pid; spawn: pickled without them (~15 s: imports torch)
def test_dataloader_workers(data, context):
    pack_crops(data)
    stores = PairedFrames(data, frame_pack="off")
    packed = PairedFrames(data, frame_pack="on")
    packed[0]  # maps a shard in this process: each worker must map its own
    assert packed._pack._maps

    def batches(dataset, context):
        loader = DataLoader(dataset, batch_size=5, num_workers=2, multiprocessing_context=context,
                            generator=torch.Generator().manual_seed(3), shuffle=True)  # fmt: skip
        return [torch.cat(b) for b in loader]

    expected = batches(stores, "fork")
    got = batches(packed, context)
    assert len(got) == len(expected) == 7  # 32 items in batches of 5
    for x, y in zip(got, expected, strict=True):
        assert torch.equal(x, y)


def one_line_refusal(data: Path) -> str:
    """The message of the DataError that ``PairedFrames(data)`` raises; asserts it is one
    line."""
    with pytest.raises(DataError) as err:
        PairedFrames(data)
    message = str(err.value)
    assert "\n" not in message
    return message


def test_stale_pack_is_refused_in_one_line(data):
    pack_crops(data)
    # touched but unchanged (as after a copy without mtimes): still fresh, by fingerprint
    neutral = crop_path(data, "M001/neutral/level_1/001", "jpeg")
    os.utime(neutral, ns=(1, 1))
    PairedFrames(data, frame_pack="on")
    # rewritten with other frames
    write_clip_crops(clip_crops(9, 999), neutral)
    message = one_line_refusal(data)
    assert message.startswith(f"{pack_dir(data) / 'index.npz'}: stale pack: {neutral} changed")
    assert "asccl data pack" in message
    PairedFrames(data, frame_pack="off")  # the stores themselves still read
    # a store removed since packing: the stores would skip it, the pack still holds it
    pack_crops(data)
    crop_path(data, "W002/happy/level_3/001", "jpeg").unlink()
    with pytest.raises(DataError, match="no longer exists"):
        PairedFrames(data)
    # a store added after packing
    pack_crops(data)
    write_clip_crops(clip_crops(9, 5), crop_path(data, "W002/happy/level_3/001", "jpeg"))
    with pytest.raises(DataError, match="is not in it"):
        PairedFrames(data)


def test_rerun_reuses_unchanged_shards(data):
    first = pack_crops(data, shard_clips=2)  # 3 shards
    assert (first.done, first.skipped) == (3, 0)
    index = (pack_dir(data) / "index.npz").read_bytes()
    again = pack_crops(data, shard_clips=2)
    assert (again.done, again.skipped) == (0, 3)
    assert (pack_dir(data) / "index.npz").read_bytes() == index
    # one store rewritten: only its shard is redone; the pack is fresh again
    write_clip_crops(clip_crops(9, 77), crop_path(data, "W002/angry/level_3/001", "jpeg"))
    third = pack_crops(data, shard_clips=2)
    assert (third.done, third.skipped) == (1, 2)
    assert_same_items(items(PairedFrames(data, frame_pack="off")), items(PairedFrames(data)))
    # fewer shards: the extra ones are removed
    pack_crops(data, shard_clips=4)
    assert sorted(p.name for p in pack_dir(data).glob("shard_*.bin")) == [
        "shard_00000.bin", "shard_00001.bin"
    ]  # fmt: skip


def test_unfinished_pack_is_not_read(data):
    pack_crops(data)
    (pack_dir(data) / "index.npz").unlink()  # as a killed pack run leaves it
    assert open_frame_pack(data) is None
    assert PairedFrames(data)._pack is None
    with pytest.raises(DataError, match="no finished pack"):
        PairedFrames(data, frame_pack="on")


def flip_byte(path: Path, offset: int) -> None:
    raw = bytearray(path.read_bytes())
    raw[offset] ^= 0x01
    path.write_bytes(bytes(raw))


def test_damaged_shard_is_caught_naming_it(data):
    pack_crops(data)
    pack = FramePack(pack_dir(data))
    # a byte inside a used frame's image data (past its header): it may still decode
    row = pack.row("W002/angry/level_3/001")
    k = int(pack._clip_start[row]) + 4
    shard = pack_dir(data) / f"shard_{int(pack._clip_shard[row]):05d}.bin"
    flip_byte(shard, int(pack._offset[k] + pack._length[k] // 2))
    message = one_line_refusal(data)
    assert message.startswith(f"{shard}: W002/angry/level_3/001 frame 4: bytes changed")
    assert "CRC-32 mismatch" in message
    # without verify the read itself fails on a broken JPEG, naming the shard
    flip_byte(shard, int(pack._offset[k] + pack._length[k] // 2))  # restore
    flip_byte(shard, int(pack._offset[k]) + 1)  # SOI marker: undecodable
    dataset = PairedFrames(data, verify=False)
    with pytest.raises(DataError, match=f"^{shard}: W002/angry/level_3/001 frame 4: undecodable"):
        items(dataset)


def test_damaged_or_truncated_files_are_one_line(data):
    pack_crops(data)
    index = pack_dir(data) / "index.npz"
    good = index.read_bytes()
    flip_byte(index, len(good) // 2)  # inside an array: zip's CRC-32 catches it
    with pytest.raises(DataError, match=f"^{index}: unreadable pack index"):
        PairedFrames(data)
    index.write_bytes(good)
    shard = pack_dir(data) / "shard_00000.bin"
    shard.write_bytes(shard.read_bytes()[:-10])
    with pytest.raises(DataError, match=f"^{shard}: pack shard holds .* bytes, its index says"):
        PairedFrames(data)


def test_pack_refuses_a_damaged_store(data):
    store = crop_path(data, "M001/happy/level_3/001", "jpeg")
    raw = store.read_bytes()
    soi = raw.index(b"\xff\xd8\xff")  # the first frame's JPEG inside jpeg_bytes.npy
    flip_byte(store, soi + 400)  # image data: decodes, but the zip CRC-32 no longer matches
    summary = pack_crops(data)
    assert [item for item, _ in summary.failures] == [str(store)]
    assert "CRC-32 mismatch" in summary.failures[0][1]
    assert not pack_dir(data).exists()  # nothing written


def test_cli_data_pack(data, capsys):
    assert main(["data", "pack", "--out", str(data)]) == 0
    out = capsys.readouterr().out
    assert "[pack] 1 done" in out and "6 clips, 54 frames" in out
    assert main(["data", "pack", "--out", str(data), "--crop_format", "npy"]) == 2
    assert "crop_format" in capsys.readouterr().err
    shutil.rmtree(data / "crops")
    assert main(["data", "pack", "--out", str(data)]) == 2
    assert "no JPEG crop stores" in capsys.readouterr().err


def test_chw_matches_cvtcolor_transpose():
    """The one-pass BGR -> (3, S, S) RGB equals the stores' cvtColor + permute."""
    import cv2

    bgr = np.random.default_rng(0).integers(0, 256, (7, 7, 3), dtype=np.uint8)
    expected = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB).transpose(2, 0, 1)
    out = frame_pack.bgr_to_chw_rgb(bgr)
    assert out.flags.c_contiguous and np.array_equal(out, expected)
