"""``asccl data pack`` on bad inputs: one stderr line naming the file, the pack as it was."""

from __future__ import annotations

import numpy as np

from asccl.cli import main
from asccl.data.crop_store import crop_path, write_clip_crops
from asccl.data.crops import ClipCrops
from asccl.data.frame_pack import pack_dir
from tests.robustness.conftest import one_line_error, snapshot


def write_store(out, clip: str, seed: int):
    rng = np.random.default_rng(seed)
    n, size = 4, 32
    landmarks = (rng.random((n, 68, 2)) * size).astype(np.float32)
    frames = rng.integers(0, 256, (n, size, size, 3), dtype=np.uint8)
    boxes = np.zeros((n, 4), np.float32)
    crops = ClipCrops(frames, landmarks, landmarks, boxes, np.ones(n, bool), 25.0, (64, 64))
    return write_clip_crops(crops, crop_path(out, clip, "jpeg"))


def test_a_damaged_store_fails_the_pack_naming_it_and_keeps_the_pack(tmp_path, capsys):
    out = tmp_path / "out"
    write_store(out, "A/neutral/001", 0)
    store = write_store(out, "A/angry/001", 1)
    assert main(["data", "pack", "--out", str(out)]) == 0
    before = snapshot(pack_dir(out))
    raw = bytearray(store.read_bytes())
    raw[raw.index(b"\xff\xd8\xff") + 300] ^= 0x01  # inside a frame's JPEG: the CRC-32 differs
    store.write_bytes(bytes(raw))
    line = one_line_error(["data", "pack", "--out", out], capsys, store)
    assert "CRC-32" in line
    assert snapshot(pack_dir(out)) == before


def test_no_stores_is_one_line_naming_the_folder(tmp_path, capsys):
    (tmp_path / "out").mkdir()
    one_line_error(["data", "pack", "--out", tmp_path / "out"], capsys, tmp_path / "out" / "crops")
    assert not pack_dir(tmp_path / "out").exists()


def test_npy_stores_are_refused_naming_the_key(tmp_path, capsys):
    line = one_line_error(
        ["data", "pack", "--out", tmp_path, "--crop_format", "npy"], capsys, "crop_format"
    )
    assert "npy" in line
