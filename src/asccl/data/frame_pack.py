"""Packed crop frames for random access at dataset scale (``asccl data pack``).

Training reads one frame pair at a time, at random, from thousands of clips. Read from the
per-clip stores (:mod:`asccl.data.crop_store`), nearly every read opens a store (MEAD:
~7,650 clips against 64 cached readers per DataLoader worker), which costs several times
the frame's decode. A pack holds the same JPEG bytes in a few large files opened once per
process, so a read is an index look-up, a slice of a memory map and one decode::

    <out>/crops.pack/index.npz        the frame index: clip id, frame -> shard, offset,
                                      length, CRC-32; each clip's valid mask and crop size;
                                      each store's size, mtime and fingerprint when packed
    <out>/crops.pack/shard_00000.bin  the JPEG bytes of up to ``shard_clips`` stores, each
                                      frame exactly the bytes its store holds
    <out>/crops.pack/shard_00000.npz  that shard's part of the index (the unit of resume)

Frames decode to the same pixels as from the stores (the same bytes, the same
``cv2.imdecode``), so training reads the same data from either: tests compare every
item's bytes and a short training run's weights. ``benchmarks/bench_reader.py`` measures
both readers against the bare decode of the same frames.

Writing (:func:`pack_crops`): every ``crops/**/*.npz`` store, sorted by clip id, in shards
of ``shard_clips`` clips. Every store to (re)pack is checked first (structure, JPEG
markers, its CRC-32, its first and last frame decoded:
:func:`~asccl.data.crop_store.check_clip_crops`): a damaged one fails the run, named,
before anything in the pack changes. Each store is stat'ed when listed and after it is
read (a store changed meanwhile fails the run). Each shard is written atomically, its ``.npz``
last; a rerun reuses every shard whose stores have the same sizes and mtimes, so a killed
run resumes and a rerun after a few changed stores rewrites only their shards.
``index.npz`` is removed before any shard is rewritten and written (atomically) last: a
pack without it is incomplete and is not read.

Reading (:class:`FramePack`, through :class:`asccl.training.dataset.PairedFrames`): the
index is loaded whole (its ``.npz`` CRC-32s checked: ~17 bytes per frame, ~17 MB at
MEAD's million frames, shared by forked workers). Shards are memory-mapped lazily, once per
process (the maps are keyed by process id and not pickled, so each DataLoader worker
maps its own). A pack is used only while it is fresh: :meth:`FramePack.require_fresh`
compares every store a dataset uses with what the index recorded (size and mtime; when
those differ, as after a copy, the store's zip directory: every member's CRC-32 and
size) and refuses a stale pack in one line. Integrity as the stores': a damaged index or
shard is a :class:`DataError` naming the file: each frame's CRC-32 is checked, and each
frame a dataset uses decoded, by :meth:`FramePack.verify` at construction; the shard's
size when it is mapped; and a decode failure when read.
"""

from __future__ import annotations

import itertools
import mmap
import os
import threading
import zipfile
import zlib
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from zipfile import BadZipFile

import numpy as np
from tqdm import tqdm

from asccl.data.crop_store import NPY_HEADER_LOCK, check_clip_crops, crop_path
from asccl.data.errors import DataError
from asccl.data.opencv import cv2
from asccl.data.runs import StageSummary
from asccl.io import atomic_write

__all__ = [
    "PACK_DIR",
    "SHARD_CLIPS",
    "FramePack",
    "open_frame_pack",
    "pack_crops",
    "pack_dir",
    "run_pack",
    "store_fingerprint",
]

PACK_DIR = "crops.pack"
INDEX_FILE = "index.npz"
PACK_VERSION = 1
#: clips per shard: at MEAD's ~130 frames x ~20 KB per clip, ~0.7 GB shards, ~30 of them
SHARD_CLIPS = 256
_REBUILD = "run `asccl data pack` again (or delete {pack} to read the crop stores)"

# Per-shard arrays, concatenated over shards into the index.
_CLIP_KEYS = ("clip_ids", "clip_frames", "clip_size", "store_size", "store_mtime_ns",
              "store_fingerprint")  # fmt: skip
_FRAME_KEYS = ("valid", "frame_offset", "frame_length", "frame_crc")


def pack_dir(out: str | os.PathLike) -> Path:
    """The pack of the stage-1 folder ``out``: ``out/crops.pack``."""
    return Path(out) / PACK_DIR


def _shard_name(k: int, suffix: str) -> str:
    return f"shard_{k:05d}{suffix}"


def store_fingerprint(path: str | os.PathLike) -> int:
    """CRC-32 over a store's zip directory: every member's name, CRC-32 and size.

    Equal fingerprints mean equal member contents (up to CRC-32 collisions) whatever the
    file's mtime, e.g. after a copy. Reads the directory only (~0.1 ms).
    """
    with zipfile.ZipFile(path) as archive:
        entries = sorted((i.filename, i.CRC, i.file_size) for i in archive.infolist())
    return zlib.crc32(repr(entries).encode())


def _split_in_place() -> bool:
    """Whether ``cv2.split(img, planes)`` fills the given arrays (this OpenCV's binding)."""
    img = np.arange(12, dtype=np.uint8).reshape(2, 2, 3)
    out = np.zeros((3, 2, 2), np.uint8)
    cv2.split(img, [out[2], out[1], out[0]])
    return bool(np.array_equal(out, img[:, :, ::-1].transpose(2, 0, 1)))


_SPLIT_IN_PLACE = _split_in_place()


def bgr_to_chw_rgb(bgr: np.ndarray) -> np.ndarray:
    """``(S, S, 3)`` uint8 BGR -> contiguous ``(3, S, S)`` uint8 RGB in one pass.

    The same values as ``cv2.cvtColor(bgr, COLOR_BGR2RGB).transpose(2, 0, 1)`` (a channel
    permutation), at ~8 us instead of ~40 us for a 224 px frame.
    """
    out = np.empty((3, *bgr.shape[:2]), np.uint8)
    if _SPLIT_IN_PLACE:
        cv2.split(bgr, [out[2], out[1], out[0]])
    else:  # pragma: no cover - an OpenCV binding that returns new planes
        out[:] = bgr[:, :, ::-1].transpose(2, 0, 1)
    return out


# ----------------------------------------------------------------------------- reading


class FramePack:
    """Random access to a pack's frames. Build with :func:`open_frame_pack`.

    Clips are addressed by row (:meth:`row`); frames by their index in the clip.

    Attributes:
        path: the pack folder. index_path: its ``index.npz``.
        num_clips, num_frames: totals.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.index_path = path / INDEX_FILE
        try:
            with NPY_HEADER_LOCK, np.load(self.index_path) as index:
                arrays = {key: index[key] for key in index.files}
        except (OSError, ValueError, KeyError, EOFError, BadZipFile) as err:
            problem = " ".join(str(err).split())
            raise DataError(self.index_path, f"unreadable pack index ({problem})") from err
        missing = [k for k in ("version", "clip_shard", "clip_start", "shard_bytes",
                               *_CLIP_KEYS, *_FRAME_KEYS) if k not in arrays]  # fmt: skip
        if missing:
            raise DataError(self.index_path, f"pack index lacks {', '.join(missing)}")
        version = int(arrays["version"])
        if version != PACK_VERSION:
            raise DataError(
                self.index_path, f"pack version {version}, expected {PACK_VERSION}: "
                + _REBUILD.format(pack=path)
            )  # fmt: skip
        self._clip_ids = [str(c) for c in arrays["clip_ids"]]
        self._rows = {clip: row for row, clip in enumerate(self._clip_ids)}
        self._clip_shard = arrays["clip_shard"].astype(np.int64)
        self._clip_start = arrays["clip_start"].astype(np.int64)
        self._clip_size = arrays["clip_size"].astype(np.int64)
        self._store = (arrays["store_size"], arrays["store_mtime_ns"], arrays["store_fingerprint"])
        self._valid = arrays["valid"].astype(bool)
        self._offset = arrays["frame_offset"].astype(np.int64)
        self._length = arrays["frame_length"].astype(np.int64)
        self._crc = arrays["frame_crc"].astype(np.uint32)
        self._shard_bytes = arrays["shard_bytes"].astype(np.int64)
        self.num_clips, self.num_frames = len(self._clip_ids), len(self._valid)
        self._check_index()
        self._maps: dict[int, np.ndarray] = {}
        self._pid = os.getpid()
        self._lock = threading.Lock()

    def _check_index(self) -> None:
        c, f = self.num_clips, self.num_frames
        starts, ends = self._offset, self._offset + self._length
        ok = (
            self._clip_start.shape == (c + 1,)
            and self._clip_start[0] == 0
            and self._clip_start[-1] == f
            and bool(np.all(np.diff(self._clip_start) > 0))
            and all(len(a) == c for a in (self._clip_shard, self._clip_size, *self._store))
            and all(len(a) == f for a in (self._offset, self._length, self._crc))
            and bool(np.all((self._clip_shard >= 0) & (self._clip_shard < len(self._shard_bytes))))
            and bool(np.all((starts >= 0) & (self._length > 0)))
        )
        if ok:  # every frame inside its shard
            shard_of_frame = np.repeat(self._clip_shard, np.diff(self._clip_start))
            ok = bool(np.all(ends <= self._shard_bytes[shard_of_frame]))
        if not ok:
            raise DataError(self.index_path, "pack index arrays disagree in length or range")

    # ---- clips

    def row(self, clip: str) -> int | None:
        """The clip's row, ``None`` when the pack does not hold it."""
        return self._rows.get(clip)

    def clip_id(self, row: int) -> str:
        return self._clip_ids[row]

    def header(self, row: int) -> tuple[np.ndarray, int]:
        """The clip's ``valid`` mask ``(N,)`` bool and crop size, as the store holds them."""
        return self._valid[self._clip_start[row] : self._clip_start[row + 1]], int(
            self._clip_size[row]
        )

    def require_fresh(self, out: Path, clips: Iterable[str]) -> None:
        """Refuse the pack unless every one of ``clips`` is as its store is now.

        A clip must be in the pack iff its store exists, and that store must be the one
        packed: the same size and mtime, or else the same zip directory
        (:func:`store_fingerprint`).

        Raises:
            DataError: naming the index, the first stale store and how to rebuild.
        """
        sizes, mtimes, prints = self._store
        for clip in clips:
            path = crop_path(out, clip, "jpeg")
            row = self._rows.get(clip)
            try:
                stat = path.stat()
            except FileNotFoundError:
                stat = None
            if stat is None and row is None:
                continue  # no store, not packed: the caller skips the clip, as without a pack
            if stat is None:
                why = f"{path} no longer exists"
            elif row is None:
                why = f"{path} is not in it (stored after packing)"
            elif stat.st_size == sizes[row] and stat.st_mtime_ns == mtimes[row]:
                continue
            elif _fingerprint_or_none(path) == int(prints[row]):
                continue  # copied or touched: the same content
            else:
                why = f"{path} changed since packing"
            raise DataError(
                self.index_path, f"stale pack: {why}; " + _REBUILD.format(pack=self.path)
            )

    # ---- frames

    def _shard(self, k: int) -> np.ndarray:
        """Shard ``k``'s bytes, memory-mapped once per process."""
        if self._pid != os.getpid():  # a forked worker: map its own
            self._maps, self._pid, self._lock = {}, os.getpid(), threading.Lock()
        blob = self._maps.get(k)
        if blob is None:
            with self._lock:
                blob = self._maps.get(k)
                if blob is None:
                    blob = self._maps[k] = self._map(k)
        return blob

    def _map(self, k: int) -> np.ndarray:
        path = self.path / _shard_name(k, ".bin")
        try:
            with open(path, "rb") as handle:
                size = os.fstat(handle.fileno()).st_size
                if size != self._shard_bytes[k]:
                    raise DataError(
                        path, f"pack shard holds {size} bytes, its index says "
                        f"{self._shard_bytes[k]}: " + _REBUILD.format(pack=self.path)
                    )  # fmt: skip
                return np.frombuffer(mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ),
                                     np.uint8)  # fmt: skip
        except OSError as err:
            raise DataError(path, f"unreadable pack shard ({err.strerror or err})") from err

    def _bytes(self, row: int, i: int) -> tuple[np.ndarray, int]:
        n = int(self._clip_start[row + 1] - self._clip_start[row])
        if not 0 <= i < n:
            raise IndexError(f"frame {i} out of range for {n} frames ({self._clip_ids[row]})")
        k = int(self._clip_start[row]) + i
        offset = int(self._offset[k])
        return self._shard(int(self._clip_shard[row]))[offset : offset + int(self._length[k])], k

    def frame_chw(self, row: int, i: int) -> np.ndarray:
        """Frame ``i`` of clip ``row``: contiguous ``(3, S, S)`` uint8 RGB, a new array.

        Raises:
            DataError: the bytes do not decode to ``(S, S, 3)`` (naming the shard).
            IndexError: ``i`` outside the clip.
        """
        buf, _ = self._bytes(row, i)
        size = int(self._clip_size[row])
        try:
            bgr = cv2.imdecode(buf, cv2.IMREAD_COLOR)
        except cv2.error as err:
            bgr, detail = None, f" ({err.err})"
        else:
            detail = ""
        if bgr is None or bgr.shape != (size, size, 3):
            shape = "" if bgr is None else f" to {bgr.shape[1]}x{bgr.shape[0]}, not {size} px"
            raise DataError(
                self.path / _shard_name(int(self._clip_shard[row]), ".bin"),
                f"{self._clip_ids[row]} frame {i}: undecodable JPEG{detail}{shape}",
            )
        return bgr_to_chw_rgb(bgr)

    def verify(self, frames: dict[int, Iterable[int]], workers: int | None = None) -> None:
        """Check the bytes of the given frames (clip row -> frame indices) against their
        CRC-32s and decode each, in threads; the first failure (in row order) is a
        :class:`DataError` naming the shard."""

        def check(row: int) -> None:
            for i in sorted(frames[row]):
                buf, k = self._bytes(row, int(i))
                if zlib.crc32(buf) != int(self._crc[k]):
                    raise DataError(
                        self.path / _shard_name(int(self._clip_shard[row]), ".bin"),
                        f"{self._clip_ids[row]} frame {i}: bytes changed since packing "
                        "(CRC-32 mismatch): " + _REBUILD.format(pack=self.path),
                    )
                self.frame_chw(row, int(i))

        workers = workers or min(16, os.cpu_count() or 1, max(1, len(frames)))
        with ThreadPoolExecutor(workers) as pool:  # crc32 and imdecode release the GIL
            for future in [pool.submit(check, row) for row in sorted(frames)]:
                future.result()

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_maps"], state["_lock"] = {}, None  # maps stay in their process
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._pid, self._lock = os.getpid(), threading.Lock()


def _fingerprint_or_none(path: Path) -> int | None:
    try:
        return store_fingerprint(path)
    except (OSError, BadZipFile):
        return None


def open_frame_pack(out: str | os.PathLike) -> FramePack | None:
    """The pack of the stage-1 folder ``out``; ``None`` when it has none (no
    ``crops.pack/index.npz``: never packed, or a pack run that has not finished).

    Raises:
        DataError: an index that exists but is damaged or of another version.
    """
    path = pack_dir(out)
    if not (path / INDEX_FILE).is_file():
        return None
    return FramePack(path)


# ----------------------------------------------------------------------------- writing


@dataclass
class _Store:
    clip: str
    path: Path
    size: int
    mtime_ns: int


def _stores(out: Path) -> list[_Store]:
    """Every ``crops/**/*.npz`` store (hidden temporaries left out), sorted by clip id."""
    crops = out / "crops"
    found = []
    for path in crops.rglob("*.npz") if crops.is_dir() else ():
        rel = path.relative_to(crops)
        if any(part.startswith(".") for part in rel.parts) or not path.is_file():
            continue
        stat = path.stat()
        found.append(_Store(rel.as_posix()[: -len(".npz")], path, stat.st_size, stat.st_mtime_ns))
    return sorted(found, key=lambda s: s.clip)


def _load_part(path: Path) -> dict[str, np.ndarray] | None:
    """A shard's index part, ``None`` when missing or unreadable (the shard is redone)."""
    try:
        with NPY_HEADER_LOCK, np.load(path) as part:
            return {key: part[key] for key in part.files}
    except (OSError, ValueError, KeyError, EOFError, BadZipFile):
        return None


def _reusable(part: dict | None, shard: list[_Store], bin_path: Path) -> bool:
    if part is None or int(part.get("version", -1)) != PACK_VERSION:
        return False
    try:
        return (
            [str(c) for c in part["clip_ids"]] == [s.clip for s in shard]
            and part["store_size"].tolist() == [s.size for s in shard]
            and part["store_mtime_ns"].tolist() == [s.mtime_ns for s in shard]
            and bin_path.is_file()
            and bin_path.stat().st_size == int(part["shard_bytes"])
        )
    except KeyError:
        return False


def _read_store(store: _Store) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """A store's ``(jpeg_bytes, offsets, valid, crop_size)`` (checked before by
    :func:`_check_stores`); :class:`DataError` naming it when damaged or changed since."""
    try:
        with NPY_HEADER_LOCK, np.load(store.path) as z:  # zipfile checks each CRC-32
            arrays = z["jpeg_bytes"], z["offsets"], z["valid"].astype(bool), int(z["crop_size"])
    except (OSError, ValueError, KeyError, EOFError, BadZipFile) as err:
        problem = " ".join(str(err).split())
        if "CRC" in problem:
            problem = "frame bytes changed since the store was written (CRC-32 mismatch)"
        raise DataError(store.path, f"unreadable crop store ({problem})") from err
    stat = store.path.stat()
    if (stat.st_size, stat.st_mtime_ns) != (store.size, store.mtime_ns):
        raise DataError(store.path, "crop store changed while being packed: pack again")
    return arrays


def _check_stores(stores: list[_Store], summary: StageSummary) -> None:
    """Every store's structure, JPEG markers, frame bytes' CRC-32, first and last frame
    (:func:`~asccl.data.crop_store.check_clip_crops`); failures go to ``summary``."""
    for store in tqdm(stores, desc="pack: checking stores", unit="clip", leave=False):
        try:
            check_clip_crops(store.path, decode="ends", values=False, checksum=True)
        except DataError as err:
            summary.failures.append((err.path, err.problem))


def _write_shard(shard: list[_Store], bin_path: Path, progress: tqdm) -> dict[str, np.ndarray]:
    """Write one shard's bytes atomically; returns its index part."""
    part: dict[str, list] = {key: [] for key in (*_CLIP_KEYS, *_FRAME_KEYS)}
    base = 0
    with atomic_write(bin_path) as tmp, open(tmp, "wb") as handle:
        for store in shard:
            jpeg, offsets, valid, size = _read_store(store)
            view = memoryview(jpeg)
            handle.write(view)
            part["clip_ids"].append(store.clip)
            part["clip_frames"].append(len(valid))
            part["clip_size"].append(size)
            part["store_size"].append(store.size)
            part["store_mtime_ns"].append(store.mtime_ns)
            part["store_fingerprint"].append(store_fingerprint(store.path))
            part["valid"].append(valid)
            part["frame_offset"].append(base + offsets[:-1])
            part["frame_length"].append(np.diff(offsets))
            crcs = [zlib.crc32(view[a:b]) for a, b in itertools.pairwise(offsets.tolist())]
            part["frame_crc"].append(np.array(crcs, np.uint32))
            base += len(jpeg)
            progress.update()
    return {
        "version": np.int64(PACK_VERSION),
        "shard_bytes": np.int64(base),
        "clip_ids": np.array(part["clip_ids"], dtype=str),
        **{k: np.array(part[k], np.int64) for k in _CLIP_KEYS[1:]},
        "valid": np.concatenate(part["valid"]),
        "frame_offset": np.concatenate(part["frame_offset"]).astype(np.int64),
        "frame_length": np.concatenate(part["frame_length"]).astype(np.int64),
        "frame_crc": np.concatenate(part["frame_crc"]),
    }


def pack_crops(out: str | os.PathLike, *, shard_clips: int = SHARD_CLIPS) -> StageSummary:
    """Pack every JPEG crop store of the stage-1 folder ``out`` into ``out/crops.pack``.

    Resumes: shards whose stores are unchanged (size, mtime) are kept. A damaged store is
    a failure in the summary (named), found before anything in the pack changes.

    Raises:
        DataError: ``out/crops`` holds no ``.npz`` store.
    """
    out = Path(out)
    if shard_clips < 1:
        raise ValueError(f"shard_clips must be >= 1, got {shard_clips}")
    stores = _stores(out)
    if not stores:
        raise DataError(out / "crops", "no JPEG crop stores (*.npz): run `asccl data crops` first")
    dest = pack_dir(out)
    summary = StageSummary("pack")
    plan = [stores[i : i + shard_clips] for i in range(0, len(stores), shard_clips)]
    parts: list[dict | None] = []
    for k, shard in enumerate(plan):
        part = _load_part(dest / _shard_name(k, ".npz"))
        parts.append(part if _reusable(part, shard, dest / _shard_name(k, ".bin")) else None)
    todo = [k for k, part in enumerate(parts) if part is None]
    stale = sorted(
        p for p in dest.glob("shard_*") if not p.stem[6:].isdigit() or int(p.stem[6:]) >= len(plan)
    )
    index = dest / INDEX_FILE
    _check_stores([store for k in todo for store in plan[k]], summary)
    if summary.failures:  # nothing in the pack changed
        summary.notes.append("pack left as it was: the stores above need `asccl data crops`")
        return summary
    dest.mkdir(parents=True, exist_ok=True)
    if todo or stale or not index.is_file():
        index.unlink(missing_ok=True)  # incomplete from here until the new index is in
    for path in stale:
        path.unlink()
    with tqdm(total=sum(len(plan[k]) for k in todo), desc="pack", unit="clip",
              leave=False) as progress:  # fmt: skip
        for k in todo:
            (dest / _shard_name(k, ".npz")).unlink(missing_ok=True)  # the commit mark goes first
            try:
                part = _write_shard(plan[k], dest / _shard_name(k, ".bin"), progress)
            except DataError as err:
                summary.failures.append((err.path, err.problem))
                continue
            with atomic_write(dest / _shard_name(k, ".npz")) as tmp, open(tmp, "wb") as handle:
                np.savez(handle, **part)
            parts[k] = part
    summary.done, summary.skipped = len(todo) - len(summary.failures), len(plan) - len(todo)
    if summary.failures:
        summary.notes.append("pack index not written: the stores above need `asccl data crops`")
        return summary
    _write_index(index, parts)
    frames = sum(len(p["valid"]) for p in parts)
    total = sum(int(p["shard_bytes"]) for p in parts)
    summary.notes.append(
        f"{len(stores)} clips, {frames} frames, {total / 2**30:.2f} GiB in {len(plan)} shard(s)"
    )
    summary.outputs["pack"] = index
    return summary


def _write_index(index: Path, parts: list[dict]) -> None:
    merged = {
        key: np.concatenate([p[key] for p in parts])
        for key in ("clip_ids", *_CLIP_KEYS[1:], *_FRAME_KEYS)
    }
    merged["clip_ids"] = merged["clip_ids"].astype(str)
    merged["clip_shard"] = np.repeat(np.arange(len(parts)), [len(p["clip_ids"]) for p in parts])
    merged["clip_start"] = np.concatenate([[0], np.cumsum(merged["clip_frames"])]).astype(np.int64)
    merged["shard_bytes"] = np.array([int(p["shard_bytes"]) for p in parts], np.int64)
    with atomic_write(index) as tmp, open(tmp, "wb") as handle:
        np.savez(handle, version=np.int64(PACK_VERSION), **merged)


def run_pack(config) -> StageSummary:
    """``asccl data pack``: :func:`pack_crops` on ``config.out`` (a
    :class:`~asccl.data.config.DataConfig`; its ``crop_format`` must be ``"jpeg"``)."""
    from asccl.config import ConfigError

    if config.crop_format != "jpeg":
        raise ConfigError(
            f"crop_format: a pack holds JPEG stores' bytes; {config.crop_format!r} stores "
            "are read directly (memory-mapped already)"
        )
    return pack_crops(config.out)
