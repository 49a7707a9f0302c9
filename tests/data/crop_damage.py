"""Damage done to a written "jpeg" crop store (``asccl.data.crop_store``), as a bad disk or
an edited copy would: for the tests that check each reader refuses it naming the file."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def rewrite_store(path: Path, **changes) -> None:
    """Rewrite the store ``path`` with some members replaced (a value of None: removed)."""
    with np.load(path) as npz:
        members = {name: npz[name] for name in npz.files}
    for name, value in changes.items():
        if value is None:
            members.pop(name)
        else:
            members[name] = value
    with open(path, "wb") as handle:
        np.savez(handle, **members)


def break_frames(path: Path, frames: list[int] | None = None) -> None:
    """Zero the JPEG tables (bytes 2-199) of ``frames`` (all by default); their markers stay
    intact, so the store opens and only decoding those frames fails."""
    with np.load(path) as npz:
        blob, offsets = npz["jpeg_bytes"].copy(), npz["offsets"]
    for i in range(len(offsets) - 1) if frames is None else frames:
        blob[offsets[i] + 2 : offsets[i] + 200] = 0
    rewrite_store(path, jpeg_bytes=blob)


def flip_byte_in_place(path: Path, frame: int) -> None:
    """Change one byte (xor 0x55) in the middle of ``frame``'s JPEG data, in the file as
    written (its zip CRC-32 now disagrees), as a disk error would."""
    from asccl.data.crop_store import open_clip_crops

    reader = open_clip_crops(path)
    start, end = reader._offsets[frame], reader._offsets[frame + 1]
    position = reader._jpeg.offset + (start + end) // 2  # the memory-mapped blob's place
    data = bytearray(path.read_bytes())
    data[position] ^= 0x55
    path.write_bytes(bytes(data))
