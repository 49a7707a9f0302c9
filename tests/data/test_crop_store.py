"""Both crop store formats: round trips, atomic replacement, validation for resume, and
check_clip_crops on stores damaged after writing (each refusal one line naming the store)."""

from __future__ import annotations

import numpy as np
import pytest
from tests.data.crop_damage import flip_byte_in_place, rewrite_store

from asccl.data import crop_store
from asccl.data.crop_store import (
    check_clip_crops,
    open_clip_crops,
    validate_clip_crops,
    write_clip_crops,
)
from asccl.data.crops import ClipCrops
from asccl.data.errors import DataError

FORMATS = ("npy", "jpeg")


def make_crops(n: int = 6, size: int = 64, seed: int = 0) -> ClipCrops:
    """Smooth random crops (JPEG-friendly); frame 2 invalid like crop_clip makes it."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size] / size
    frames = np.stack(
        [
            np.stack([np.sin(6 * xx + p) * 100 + 128, yy * 200 + 20, (xx + yy) * 100 + p], -1)
            for p in rng.random(n) * 3
        ]
    ).astype(np.uint8)
    landmarks = (rng.random((n, 68, 2)) * size).astype(np.float32)
    boxes = np.tile(np.array([10, 20, 110, 120], np.float32), (n, 1))
    valid = np.ones(n, bool)
    valid[2] = False
    frames[2] = 0
    landmarks[2] = np.nan
    boxes[2] = np.nan
    return ClipCrops(frames, landmarks, landmarks * 2, boxes, valid, 29.97, (640, 480))


def store_path(tmp_path, fmt):
    return tmp_path / ("clip.crops" if fmt == "npy" else "clip.npz")


def assert_same_metadata(reader, crops):
    np.testing.assert_array_equal(reader.landmarks, crops.landmarks)
    np.testing.assert_array_equal(reader.source_landmarks, crops.source_landmarks)
    np.testing.assert_array_equal(reader.boxes, crops.boxes)
    np.testing.assert_array_equal(reader.valid, crops.valid)
    assert reader.fps == crops.fps and reader.frame_size == crops.frame_size
    assert reader.size == crops.size and len(reader) == len(crops)


@pytest.mark.parametrize("fmt", FORMATS)
def test_round_trip(tmp_path, fmt):
    crops = make_crops()
    path = write_clip_crops(crops, store_path(tmp_path, fmt), format=fmt)
    reader = open_clip_crops(path)
    assert reader.format == fmt
    assert_same_metadata(reader, crops)
    for i in range(len(crops)):
        frame = reader.frame(i)
        assert frame.shape == (64, 64, 3) and frame.dtype == np.uint8
        error = np.abs(frame.astype(int) - crops.frames[i]).mean()
        assert error == 0 if fmt == "npy" else error < 2.0, (i, error)
    np.testing.assert_array_equal(reader.frame(-1), reader.frame(len(crops) - 1))
    with pytest.raises(IndexError, match="frame 6 out of range for 6"):
        reader.frame(6)
    again = reader.read_all()
    assert isinstance(again, ClipCrops) and again.frames.shape == crops.frames.shape


def test_jpeg_is_the_default_and_keeps_rgb_order(tmp_path):
    crops = make_crops()
    crops.frames[:] = (220, 30, 90)
    reader = open_clip_crops(write_clip_crops(crops, tmp_path / "c.npz"))
    assert reader.format == "jpeg" and (tmp_path / "c.npz").is_file()
    np.testing.assert_allclose(reader.frame(0).mean(axis=(0, 1)), (220, 30, 90), atol=2)


@pytest.mark.parametrize(("first", "second"), [(a, b) for a in FORMATS for b in FORMATS])
def test_rewrite_replaces_and_leaves_no_temporaries(tmp_path, first, second):
    path = tmp_path / "clip.store"
    write_clip_crops(make_crops(seed=0), path, format=first)
    write_clip_crops(make_crops(n=4, seed=1), path, format=second)
    reader = open_clip_crops(path)
    assert len(reader) == 4 and reader.format == second
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip.store"]


@pytest.mark.parametrize("fmt", FORMATS)
def test_failed_write_keeps_the_old_store(tmp_path, fmt, monkeypatch):
    path = store_path(tmp_path, fmt)
    write_clip_crops(make_crops(), path, format=fmt)

    def crash(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(crop_store.np, "savez", crash)
    with pytest.raises(OSError, match="disk full"):
        write_clip_crops(make_crops(n=3), path, format=fmt)
    monkeypatch.undo()
    assert len(open_clip_crops(path)) == 6 and validate_clip_crops(path)
    assert [p.name for p in tmp_path.iterdir()] == [path.name]


@pytest.mark.parametrize("fmt", FORMATS)
def test_validate(tmp_path, fmt):
    path = write_clip_crops(make_crops(), store_path(tmp_path, fmt), format=fmt)
    assert validate_clip_crops(path)
    assert validate_clip_crops(path, expected_frames=6)
    assert not validate_clip_crops(path, expected_frames=7)
    assert not validate_clip_crops(tmp_path / "missing")


def test_validate_rejects_damaged_npy_store(tmp_path):
    path = write_clip_crops(make_crops(), tmp_path / "a.crops", format="npy")
    frames = path / "frames.npy"
    data = frames.read_bytes()
    frames.write_bytes(data[: len(data) - 100])
    assert not validate_clip_crops(path)
    path = write_clip_crops(make_crops(), tmp_path / "b.crops", format="npy")
    (path / "meta.npz").unlink()
    assert not validate_clip_crops(path)
    path = write_clip_crops(make_crops(), tmp_path / "c.crops", format="npy")
    np.save(path / "frames.npy", np.zeros((5, 64, 64, 3), np.uint8))  # one frame short
    assert not validate_clip_crops(path)


def test_validate_rejects_damaged_jpeg_store(tmp_path):
    path = write_clip_crops(make_crops(), tmp_path / "a.npz", format="jpeg")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    assert not validate_clip_crops(path)
    garbage = tmp_path / "g.npz"
    garbage.write_bytes(b"not a store" * 100)
    assert not validate_clip_crops(garbage)
    with pytest.raises(DataError, match=f"{garbage}: unreadable crop store"):
        open_clip_crops(garbage)


def test_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="'png'; valid: jpeg, npy"):
        write_clip_crops(make_crops(), tmp_path / "x", format="png")
    with pytest.raises(DataError, match="no such crop store"):
        open_clip_crops(tmp_path / "nothing")


def test_jpeg_blob_is_memory_mapped_not_read(tmp_path, monkeypatch):
    """Opening a JPEG store maps its frame blob; frames equal those of a full load."""
    path = write_clip_crops(_demo_crops_for_mapping(), tmp_path / "clip.npz", format="jpeg")
    mapped = open_clip_crops(path)
    assert isinstance(mapped._jpeg, np.memmap)
    monkeypatch.setattr(crop_store, "_map_npz_member", lambda *_: None)  # the old full read
    loaded = open_clip_crops(path)
    assert not isinstance(loaded._jpeg, np.memmap)
    np.testing.assert_array_equal(np.asarray(mapped._jpeg), loaded._jpeg)
    for i in range(len(mapped)):
        np.testing.assert_array_equal(mapped.frame(i), loaded.frame(i))


def _demo_crops_for_mapping():
    from asccl.data.crops import ClipCrops

    rng = np.random.default_rng(0)
    n, size = 5, 32
    return ClipCrops(
        frames=rng.integers(0, 255, (n, size, size, 3), dtype=np.uint8),
        landmarks=rng.random((n, 68, 2), dtype=np.float32) * size,
        source_landmarks=rng.random((n, 68, 2), dtype=np.float32) * 100,
        boxes=np.tile(np.array([0, 0, 100, 100], np.float32), (n, 1)),
        valid=np.ones(n, bool),
        fps=30.0,
        frame_size=(128, 128),
    )


# ----------------------------------------------------------------------------- damaged stores


def jpeg_store(tmp_path):
    crops = make_crops()
    path = write_clip_crops(crops, tmp_path / "clip.npz")
    with np.load(path) as npz:
        return path, crops, npz["jpeg_bytes"].copy(), npz["offsets"].copy()


def assert_refused(path, problem, **kwargs):
    """check_clip_crops refuses ``path`` in one line naming it; validate says False."""
    with pytest.raises(DataError, match=problem) as info:
        check_clip_crops(path, **kwargs)
    assert str(info.value).startswith(f"{path}: ") and "\n" not in str(info.value)
    if not kwargs:
        assert not validate_clip_crops(path)
    return str(info.value)


@pytest.mark.parametrize("fmt", FORMATS)
def test_check_passes_good_stores_and_returns_the_reader(tmp_path, fmt):
    path = write_clip_crops(make_crops(), store_path(tmp_path, fmt), format=fmt)
    for decode in ("ends", "all", [1, 3]):
        reader = check_clip_crops(path, 6, decode=decode)
        assert len(reader) == 6 and reader.format == fmt
    assert_refused(path, "holds 6 frames, its video has 7", expected_frames=7)
    with pytest.raises(ValueError, match="decode must be"):
        check_clip_crops(path, decode="some")


def test_a_frame_overwritten_with_other_bytes_is_caught_without_decoding(tmp_path):
    path, _, blob, offsets = jpeg_store(tmp_path)
    start, end = offsets[3], offsets[4]
    blob[start:end] = np.random.default_rng(0).integers(0, 256, end - start, np.uint8)
    rewrite_store(path, jpeg_bytes=blob)
    assert len(open_clip_crops(path)) == 6  # it opens: only a decode of frame 3 would fail
    assert_refused(path, r"frame 3: not one whole JPEG \(start/end markers missing; 1 such")


def test_a_frame_cut_short_is_caught(tmp_path):
    path, _, blob, offsets = jpeg_store(tmp_path)
    cut = offsets[2] + (offsets[3] - offsets[2]) // 2  # frame 2 loses its second half
    blob = np.concatenate([blob[:cut], blob[offsets[3] :]])
    offsets[3:] -= offsets[3] - cut
    rewrite_store(path, jpeg_bytes=blob, offsets=offsets)
    assert_refused(path, "frame 2: not one whole JPEG")


def test_a_frame_with_a_broken_header_is_caught_when_decoded(tmp_path):
    """Markers intact, tables zeroed: only a decode tells, so "all" decodes every frame."""
    path, _, blob, offsets = jpeg_store(tmp_path)
    blob[offsets[3] + 2 : offsets[3] + 200] = 0
    rewrite_store(path, jpeg_bytes=blob)
    assert check_clip_crops(path)  # first and last frame decode
    assert_refused(path, "frame 3: undecodable JPEG", decode="all")
    assert_refused(path, "frame 3: undecodable JPEG", decode=[3])
    with pytest.raises(DataError, match=f"{path}: frame 3: undecodable JPEG"):
        open_clip_crops(path).frame(3)


def test_a_byte_changed_inside_a_frame_is_caught_by_the_checksum(tmp_path):
    path, *_ = jpeg_store(tmp_path)
    flip_byte_in_place(path, 3)
    assert check_clip_crops(path, decode="ends")  # markers intact, ends decode
    message = assert_refused(path, "CRC-32 mismatch", checksum=True)
    assert "frame bytes changed since the store was written" in message
    (tmp_path / "intact").mkdir()
    intact, *_ = jpeg_store(tmp_path / "intact")
    assert check_clip_crops(intact, checksum=True, decode="all")


def test_a_frame_of_another_size_is_caught_when_decoded(tmp_path):
    path, crops, *_ = jpeg_store(tmp_path)
    small = crop_store.encode_jpegs(crops.frames[:, ::2, ::2].copy())  # 32x32 JPEGs
    rewrite_store(path, jpeg_bytes=small[0], offsets=small[1])
    assert_refused(path, "frame 0: JPEG decodes to 32x32, the store's crops are 64x64")


def test_a_truncated_store_is_unreadable(tmp_path):
    path, *_ = jpeg_store(tmp_path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 300])  # the zip's directory is at the end
    assert_refused(path, "unreadable crop store")


@pytest.mark.parametrize(
    ("member", "value", "problem"),
    [
        ("landmarks", np.zeros((6, 5, 2), np.float32), "arrays disagree in length or shape"),
        ("boxes", np.zeros((5, 4), np.float32), "arrays disagree in length or shape"),
        ("landmarks", np.zeros((6, 68, 2), np.int64), "array landmarks has dtype int64"),
        ("valid", np.ones(6, np.uint8), "array valid has dtype uint8"),
        ("jpeg_bytes", "int32", "array jpeg_bytes has dtype int32"),
        ("offsets", "float64", "array offsets has dtype float64"),
        ("valid", np.ones((6, 1), bool), r"array valid has shape \(6, 1\)"),
        ("frame_size", np.array([640, 480, 3]), r"array frame_size has shape \(3,\)"),
        ("fps", np.float64(0.0), "metadata out of range"),
        ("fps", np.float64(np.nan), "metadata out of range"),
        ("crop_size", np.int64(0), "metadata out of range"),
        ("format_version", np.int64(7), "crop store version 7, expected 1"),
        ("format_version", np.array([1, 1]), "unreadable crop store"),
        ("landmarks", None, "unreadable crop store"),
    ],
)
def test_wrong_shapes_dtypes_and_values_are_refused(tmp_path, member, value, problem):
    path, _, blob, offsets = jpeg_store(tmp_path)
    if isinstance(value, str):  # a dtype for the named member
        value = {"jpeg_bytes": blob, "offsets": offsets}[member].astype(value)
    rewrite_store(path, **{member: value})
    assert_refused(path, problem)


@pytest.mark.parametrize("member", ["landmarks", "source_landmarks", "boxes"])
@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_a_face_frame_with_nan_landmarks_is_refused(tmp_path, member, bad):
    path, crops, *_ = jpeg_store(tmp_path)
    values = np.asarray(getattr(crops, member)).copy()
    values[4, 0] = bad  # frame 4 is marked as a face (frame 2 is not, and is NaN already)
    rewrite_store(path, **{member: values})
    name = member.replace("_", " ")
    assert_refused(path, f"frame 4: marked as a face but its {name} hold NaN or inf")


def test_nan_landmarks_of_a_frame_without_a_face_are_fine(tmp_path):
    path, crops, *_ = jpeg_store(tmp_path)
    assert not crops.valid[2] and np.isnan(crops.landmarks[2]).all()
    assert check_clip_crops(path, decode="all") and validate_clip_crops(path)


def test_values_false_leaves_landmarks_unchecked(tmp_path):
    path, crops, *_ = jpeg_store(tmp_path)
    landmarks = crops.landmarks.copy()
    landmarks[4] = np.nan
    rewrite_store(path, landmarks=landmarks)
    assert not validate_clip_crops(path)  # the crop stage redoes it
    assert check_clip_crops(path, values=False, decode="all")  # readers of frames only


def test_npy_store_with_wrong_frame_dtype_is_refused(tmp_path):
    path = write_clip_crops(make_crops(), tmp_path / "a.crops", format="npy")
    np.save(path / "frames.npy", np.zeros((6, 64, 64, 3), np.float32))
    assert_refused(path, "array frames.npy has dtype float32")


@pytest.mark.parametrize("fmt", FORMATS)
def test_threads_never_parse_npy_headers_at_once(tmp_path, fmt, monkeypatch):
    """numpy parses .npy headers with ast.literal_eval, which CPython < 3.11.8 cannot run
    in two threads at once (gh-106905: a SystemError failed CI once). Every opening and
    header read here holds NPY_HEADER_LOCK: with a parse made slow enough that 8 threads
    would overlap without the lock, no two parses ever run together."""
    import ast
    import threading
    import time
    from concurrent.futures import ThreadPoolExecutor

    from asccl.data.crop_store import read_clip_header

    paths = [
        write_clip_crops(make_crops(seed=i), tmp_path / f"{i}{store_path(tmp_path, fmt).name}",
                         format=fmt)
        for i in range(8)
    ]  # fmt: skip
    real_literal_eval, guard = ast.literal_eval, threading.Lock()
    inside, most = [0], [0]

    def slow_literal_eval(text):
        with guard:
            inside[0] += 1
            most[0] = max(most[0], inside[0])
        time.sleep(0.002)
        try:
            return real_literal_eval(text)
        finally:
            with guard:
                inside[0] -= 1

    monkeypatch.setattr(ast, "literal_eval", slow_literal_eval)
    with ThreadPoolExecutor(8) as pool:
        readers = list(pool.map(open_clip_crops, paths))
        headers = list(pool.map(read_clip_header, paths))
    assert most[0] == 1  # parses happened, and one at a time
    assert [len(r) for r in readers] == [6] * 8 and all(v.sum() == 5 for v, _ in headers)
