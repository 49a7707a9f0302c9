"""On-disk store of one clip's face crops (:class:`~asccl.data.crops.ClipCrops`), for training.

Two formats, one reader (:func:`open_clip_crops` tells them apart):

* ``"jpeg"`` (default): one uncompressed ``.npz`` file: ``jpeg_bytes`` (every frame's JPEG,
  quality 95, concatenated), ``offsets`` ``(N + 1,)`` int64 (frame i is
  ``jpeg_bytes[offsets[i]:offsets[i + 1]]``), and the metadata (landmarks, boxes, valid,
  fps); a frame costs one ``cv2.imdecode``.
* ``"npy"``: a folder ``<path>/`` holding ``frames.npy`` (raw ``(N, S, S, 3)`` uint8,
  memory-mapped on open: zero decode) and ``meta.npz`` (the same metadata).

Why JPEG is the default. ``python benchmarks/bench_crops.py`` (224x224 crops of a 100-frame
synthetic 1080p clip, this repo's 2-core CPU machine, shared, warm page cache):

======  ===========  ==========================  ===============
format  bytes/frame  random reads, reader open,  open + one read
                     frames/s per core           frames/s
======  ===========  ==========================  ===============
jpeg    16,548       3,200-4,100 (~0.3 ms each)  650-700
npy     151,655      11,000-69,000 (memory-      900-1,800
                     bound: varies with load)
======  ===========  ==========================  ===============

* Decoding is cheap next to training: a metric training step of 16 pairs reads 32
  frames, ~10 ms of one DataLoader worker's core, against ~1.2 s for a batch-2 IResNet-50
  step on this CPU (``benchmarks/README.md``) or tens of ms on a GPU: one or two workers
  keep up.
* Size decides at dataset scale: JPEG is 9x smaller. MEAD's 7,650 curated clips of ~34-272
  frames (the authors' pair lengths) hold ~0.3-2 M frames: at ~20 KB (real faces compress
  less than the synthetic one), 6-40 GB as JPEG, which fits in the page cache and on a
  64 GB disk; at 150 KB, 45-300 GB as ``npy``, whose random reads then go to the disk
  and lose their edge.
* The authors stored JPEG crops too (512x512). Quality 95 changes pixels by ~1 grey level
  on average.

Opening a JPEG store memory-maps its frame blob rather than reading it, so a DataLoader
read that misses the reader cache costs the metadata plus one frame: measured on a
166-frame 224x224 store (24 KB/frame), open + one frame 1.09 ms instead of 2.08 ms.

Use ``"npy"`` for small subsets where zero decode matters (e.g. CPU-bound experiments).

Writes are atomic (:func:`asccl.io.atomic_write`): a temporary sibling is written, then
renamed over ``path``; a killed process leaves either the old store or none, never a
half-written one
(:func:`validate_clip_crops` checks a store before a resumed run skips its clip).

A store damaged after it was written (a disk error, a partial copy, an edit) is caught by
:func:`check_clip_crops` before use, with one line naming the store: arrays of the wrong
shape or dtype, a frame whose bytes are not one whole JPEG (start and end markers), a
face-marked frame with NaN/inf landmarks or box, frame bytes that no longer match the
CRC-32 the ``.npz`` recorded, and any chosen frame that does not decode to ``(S, S, 3)``.
Training runs it on every store and every frame it will read
(:class:`asccl.training.dataset.PairedFrames`), so a store that fails only when decoded
stops the run before it starts, not in a DataLoader worker hours later.
"""

from __future__ import annotations

import os
import threading
import zipfile
from collections.abc import Iterable
from pathlib import Path
from zipfile import BadZipFile

import numpy as np

from asccl.data.crops import ClipCrops
from asccl.data.errors import DataError
from asccl.data.opencv import cv2
from asccl.io import atomic_write

__all__ = [
    "STORE_FORMATS",
    "STORE_SUFFIX",
    "ClipCropsReader",
    "check_clip_crops",
    "crop_path",
    "open_clip_crops",
    "read_clip_header",
    "validate_clip_crops",
    "write_clip_crops",
]

STORE_FORMATS = ("jpeg", "npy")  # the first is the default
#: A store's name ends with its format's suffix: a ``.npz`` file, or a ``.crops`` folder.
STORE_SUFFIX = {"jpeg": ".npz", "npy": ".crops"}
FORMAT_VERSION = 1
JPEG_QUALITY = 95
_FRAMES, _META = "frames.npy", "meta.npz"


def _meta(crops: ClipCrops) -> dict[str, np.ndarray]:
    return {
        "format_version": np.int64(FORMAT_VERSION),
        "landmarks": np.asarray(crops.landmarks, np.float32),
        "source_landmarks": np.asarray(crops.source_landmarks, np.float32),
        "boxes": np.asarray(crops.boxes, np.float32),
        "valid": np.asarray(crops.valid, bool),
        "fps": np.float64(crops.fps),
        "frame_size": np.asarray(crops.frame_size, np.int64),
        "crop_size": np.int64(crops.size),
    }


def encode_jpegs(frames: np.ndarray, quality: int = JPEG_QUALITY) -> tuple[np.ndarray, np.ndarray]:
    """``(N, S, S, 3)`` uint8 RGB -> (``jpeg_bytes`` uint8 1-D, ``offsets`` ``(N + 1,)`` int64)."""
    params = [cv2.IMWRITE_JPEG_QUALITY, quality]
    chunks = []
    for i, frame in enumerate(frames):
        ok, buf = cv2.imencode(".jpg", cv2.cvtColor(frame, cv2.COLOR_RGB2BGR), params)
        if not ok:
            raise RuntimeError(f"cv2.imencode failed on frame {i}")
        chunks.append(buf.reshape(-1))
    offsets = np.zeros(len(chunks) + 1, np.int64)
    offsets[1:] = np.cumsum([len(c) for c in chunks])
    data = np.concatenate(chunks) if chunks else np.zeros(0, np.uint8)
    return data, offsets


def crop_path(out: Path, clip_id: str, fmt: str) -> Path:
    """Where the stage-1 folder ``out`` stores the crops of ``clip_id`` in format ``fmt``:
    ``out/crops/<clip id><suffix>``."""
    return out / "crops" / f"{clip_id}{STORE_SUFFIX[fmt]}"


def write_clip_crops(crops: ClipCrops, path: str | os.PathLike, format: str = "jpeg") -> Path:
    """Store ``crops`` at ``path`` atomically, replacing what is there; returns ``path``.

    ``format="jpeg"`` writes one file (name it e.g. ``<clip>.npz``); ``"npy"`` a folder
    (e.g. ``<clip>.crops``); either replaces a store of the other format.
    """
    if format not in STORE_FORMATS:
        raise ValueError(f"unknown store format {format!r}; valid: {', '.join(STORE_FORMATS)}")
    path = Path(path)
    if format == "jpeg":
        jpeg_bytes, offsets = encode_jpegs(crops.frames)
        with atomic_write(path) as tmp, open(tmp, "wb") as f:
            np.savez(f, jpeg_bytes=jpeg_bytes, offsets=offsets, **_meta(crops))
        return path
    with atomic_write(path, folder=True) as tmp_dir:
        with open(tmp_dir / _FRAMES, "wb") as f:
            np.save(f, np.ascontiguousarray(crops.frames, dtype=np.uint8))
        with open(tmp_dir / _META, "wb") as f:
            np.savez(f, **_meta(crops))
    return path


# numpy parses every ``.npy`` header with ``ast.literal_eval``; on CPython before 3.11.8 and
# 3.12.1 two threads doing that at once can fail with "SystemError: AST constructor
# recursion depth mismatch" (python/cpython gh-106905). Stores are opened from threads
# (:meth:`asccl.training.dataset.PairedFrames` checks them in a pool), so every header
# read in this module holds this lock; frame reads and checksums run without it.
NPY_HEADER_LOCK = threading.RLock()


class ClipCropsReader:
    """Random access to one stored clip. Build with :func:`open_clip_crops`.

    Attributes:
        format: ``"npy"`` or ``"jpeg"``.
        landmarks, source_landmarks: ``(N, 68, 2)`` float32 (crop / source pixels; NaN if
            invalid). boxes: ``(N, 4)`` float32. valid: ``(N,)`` bool. fps: float.
        frame_size: source ``(width, height)``. size: crop side ``S``.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        if path.is_dir():
            self.format = "npy"
            self._frames = np.load(path / _FRAMES, mmap_mode="r")
            meta = np.load(path / _META)
        else:
            self.format = "jpeg"
            meta = np.load(path)
            # Map the JPEG blob instead of reading it: opening a store then costs its small
            # metadata only, and a frame read touches just that frame's bytes.
            self._jpeg = _map_npz_member(path, "jpeg_bytes.npy")
            if self._jpeg is None:
                self._jpeg = meta["jpeg_bytes"]
            self._offsets = meta["offsets"]
        with meta:
            version = int(meta["format_version"])
            if version != FORMAT_VERSION:
                raise DataError(path, f"crop store version {version}, expected {FORMAT_VERSION}")
            self.landmarks = meta["landmarks"]
            self.source_landmarks = meta["source_landmarks"]
            self.boxes = meta["boxes"]
            self.valid = meta["valid"]
            fps, frame_size, size = meta["fps"], meta["frame_size"], meta["crop_size"]
        _check_dtypes(path, self, fps, frame_size, size)
        self.fps = float(fps)
        self.frame_size = tuple(int(v) for v in frame_size)
        self.size = int(size)
        if not (np.isfinite(self.fps) and self.fps > 0 and self.size >= 1
                and min(self.frame_size) >= 1):  # fmt: skip
            raise DataError(
                path, f"crop store metadata out of range (fps {self.fps}, crop size "
                f"{self.size}, frame size {self.frame_size})"
            )  # fmt: skip
        n = len(self.valid)
        if self.format == "npy":
            frames_ok = self._frames.shape == (n, self.size, self.size, 3)
        else:
            offsets = self._offsets
            frames_ok = (
                offsets.shape == (n + 1,)
                and offsets[0] == 0
                and offsets[-1] == len(self._jpeg)
                and bool(np.all(np.diff(offsets) > 0))
            )
        shapes_ok = (
            self.landmarks.shape == (n, 68, 2)
            and self.source_landmarks.shape == (n, 68, 2)
            and self.boxes.shape == (n, 4)
        )
        if not frames_ok or not shapes_ok:
            raise DataError(path, "crop store arrays disagree in length or shape")

    def __len__(self) -> int:
        return len(self.valid)

    def frame(self, i: int) -> np.ndarray:
        """Frame ``i`` (negative counts from the end): ``(S, S, 3)`` uint8 RGB, a new array."""
        n = len(self)
        if not -n <= i < n:
            raise IndexError(f"frame {i} out of range for {n} frames ({self.path})")
        i %= n
        if self.format == "npy":
            return np.array(self._frames[i])
        return self._decode(i)

    def _decode(self, i: int) -> np.ndarray:
        buf = np.asarray(self._jpeg[self._offsets[i] : self._offsets[i + 1]])
        try:
            bgr = cv2.imdecode(buf, cv2.IMREAD_COLOR)
        except cv2.error as err:
            raise DataError(self.path, f"frame {i}: undecodable JPEG ({err.err})") from err
        if bgr is None:
            raise DataError(self.path, f"frame {i}: undecodable JPEG")
        if bgr.shape != (self.size, self.size, 3):
            raise DataError(
                self.path,
                f"frame {i}: JPEG decodes to {bgr.shape[1]}x{bgr.shape[0]}, the store's crops "
                f"are {self.size}x{self.size}",
            )
        return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)

    def read_all(self) -> ClipCrops:
        """Every frame and array, as a :class:`~asccl.data.crops.ClipCrops`."""
        frames = (
            np.array(self._frames)
            if self.format == "npy"
            else np.stack([self._decode(i) for i in range(len(self))])
        )
        return ClipCrops(
            frames=frames,
            landmarks=self.landmarks,
            source_landmarks=self.source_landmarks,
            boxes=self.boxes,
            valid=self.valid,
            fps=self.fps,
            frame_size=self.frame_size,
        )


def _map_npz_member(path: Path, name: str) -> np.ndarray | None:
    """Memory-map an uncompressed ``.npz`` member's array (``np.savez`` stores members
    uncompressed); ``None`` when it cannot be mapped (compressed, odd layout)."""
    try:
        with zipfile.ZipFile(path) as archive:
            info = archive.getinfo(name)
        if info.compress_type != zipfile.ZIP_STORED:
            return None
        with open(path, "rb") as handle:
            handle.seek(info.header_offset)
            local = handle.read(30)  # the local file header: lengths at bytes 26-29
            name_len, extra_len = (
                int.from_bytes(local[26:28], "little"),
                int.from_bytes(local[28:30], "little"),
            )
            handle.seek(info.header_offset + 30 + name_len + extra_len)
            version = np.lib.format.read_magic(handle)
            read_header = {
                (1, 0): np.lib.format.read_array_header_1_0,
                (2, 0): np.lib.format.read_array_header_2_0,
            }.get(version)
            if read_header is None:
                return None
            shape, fortran, dtype = read_header(handle)
            offset = handle.tell()
        if fortran or dtype.hasobject or len(shape) != 1:
            return None
        if shape[0] == 0:
            return np.zeros(0, dtype)
        return np.memmap(path, dtype=dtype, mode="r", offset=offset, shape=shape)
    except (OSError, ValueError, KeyError, zipfile.BadZipFile):
        return None


def _require_archive(path: Path) -> None:
    """:class:`DataError` unless ``path`` exists and its metadata file is a zip (``.npz``)
    archive: a garbage file would otherwise reach ``np.load``'s pickle refusal."""
    if not path.exists():
        raise DataError(path, "no such crop store")
    archive = path / _META if path.is_dir() else path
    if archive.is_file() and not zipfile.is_zipfile(archive):
        where = f"its {_META} " if path.is_dir() else ""
        raise DataError(path, f"unreadable crop store ({where}not an .npz archive)")


def open_clip_crops(path: str | os.PathLike) -> ClipCropsReader:
    """Open a store written by :func:`write_clip_crops` (either format).

    Raises:
        DataError: missing, unreadable or inconsistent store.
    """
    path = Path(path)
    _require_archive(path)
    try:
        with NPY_HEADER_LOCK:
            return ClipCropsReader(path)
    except DataError:
        raise
    except (OSError, ValueError, TypeError, KeyError, IndexError, EOFError, BadZipFile) as err:
        raise DataError(path, f"unreadable crop store ({' '.join(str(err).split())})") from err


def check_clip_crops(
    path: str | os.PathLike,
    expected_frames: int | None = None,
    *,
    decode: str | Iterable[int] = "ends",
    values: bool = True,
    checksum: bool = False,
) -> ClipCropsReader:
    """Open ``path`` and check it is a complete, consistent store; returns its reader.

    Checks, each failure one :class:`DataError` line naming the store:

    * it opens: arrays present, of the right dtypes and of agreeing shapes
      (:func:`open_clip_crops`), with at least one frame (``expected_frames`` if given);
    * ``values``: every face-marked (``valid``) frame has finite landmarks, source
      landmarks and box, as :func:`~asccl.data.crops.crop_clip` writes them (frames without
      a face hold NaN by design);
    * "jpeg": every frame's bytes are one whole JPEG: its start (``FF D8``) and end
      (``FF D9``) markers where the offsets say, which catches truncated, overwritten and
      shifted frames without decoding them;
    * "jpeg", ``checksum``: the frame bytes still match the CRC-32 the ``.npz`` recorded
      when it was written, which catches any changed byte, even one inside a JPEG's
      image data that would decode, without an error, to wrong pixels;
    * the frames chosen by ``decode`` decode to ``(S, S, 3)``: ``"ends"`` the first and the
      last, ``"all"`` every frame, or the given indices.

    Cost: the marker check reads 4 bytes per frame; the checksum reads the store once
    (CRC-32 runs at GB/s); a decode takes ~0.3 ms per 224 px frame.
    """
    reader = open_clip_crops(path)
    n = len(reader)
    if n == 0:
        raise DataError(reader.path, "crop store holds no frames")
    if expected_frames is not None and n != expected_frames:
        raise DataError(
            reader.path, f"crop store holds {n} frames, its video has {expected_frames}"
        )
    for name in ("landmarks", "source_landmarks", "boxes") if values else ():
        array = getattr(reader, name).reshape(n, -1)
        bad = np.flatnonzero(reader.valid & ~np.isfinite(array).all(axis=1))
        if len(bad):
            raise DataError(
                reader.path,
                f"frame {bad[0]}: marked as a face but its {name.replace('_', ' ')} hold NaN "
                f"or inf ({len(bad)} such frame(s))",
            )
    if reader.format == "jpeg":
        _check_jpeg_markers(reader)
        if checksum:
            _check_crc(reader.path, "jpeg_bytes.npy")
    if isinstance(decode, str):
        if decode not in ("ends", "all"):
            raise ValueError(f"decode must be 'ends', 'all' or frame indices, got {decode!r}")
        chosen = range(n) if decode == "all" else sorted({0, n - 1})
    else:
        chosen = decode
    for i in chosen:
        reader.frame(int(i))
    return reader


def _check_crc(path: Path, member: str) -> None:
    """Read ``member`` of the zip ``path`` through; zipfile compares its CRC-32 at the end."""
    try:
        with zipfile.ZipFile(path) as archive, archive.open(member) as handle:
            while handle.read(1 << 22):
                pass
    except (BadZipFile, OSError, KeyError) as err:
        problem = " ".join(str(err).split())
        if "CRC" in problem:
            problem = "frame bytes changed since the store was written (CRC-32 mismatch)"
        raise DataError(path, f"unreadable crop store ({problem})") from err


def validate_clip_crops(path: str | os.PathLike, expected_frames: int | None = None) -> bool:
    """Whether ``path`` holds a complete, consistent store (for resuming a cropping run).

    :func:`check_clip_crops` with its defaults (every frame's JPEG markers, the first and
    last frame decoded), and, if given, ``expected_frames`` frames. Never raises for a bad
    store: answers ``False``.
    """
    try:
        check_clip_crops(path, expected_frames)
    except (DataError, OSError, ValueError, IndexError):  # not a usable store
        return False
    return True


def _check_dtypes(
    path: Path, reader: ClipCropsReader, fps: np.ndarray, frame_size: np.ndarray, size: np.ndarray
) -> None:
    """The arrays' dtypes and ranks, as :func:`write_clip_crops` writes them."""
    arrays = {
        "landmarks": (reader.landmarks, "f"),
        "source_landmarks": (reader.source_landmarks, "f"),
        "boxes": (reader.boxes, "f"),
        "valid": (reader.valid, "b"),
        "fps": (fps, "fiu"),
        "frame_size": (frame_size, "iu"),
        "crop_size": (size, "iu"),
    }
    if reader.format == "npy":
        arrays["frames.npy"] = (reader._frames, "u")
    else:
        arrays["jpeg_bytes"] = (reader._jpeg, "u")
        arrays["offsets"] = (reader._offsets, "iu")
    for name, (array, kinds) in arrays.items():
        if array.dtype.kind not in kinds or (name in ("frames.npy", "jpeg_bytes")
                                             and array.dtype.itemsize != 1):  # fmt: skip
            raise DataError(path, f"crop store array {name} has dtype {array.dtype}")
    ranks = {"valid": 1, "fps": 0, "crop_size": 0, "frame_size": 1}
    if reader.format == "jpeg":
        ranks.update(jpeg_bytes=1, offsets=1)
    for name, rank in ranks.items():
        array = arrays[name][0]
        if array.ndim != rank or (name == "frame_size" and array.shape != (2,)):
            raise DataError(path, f"crop store array {name} has shape {array.shape}")


def _check_jpeg_markers(reader: ClipCropsReader) -> None:
    """Every frame's bytes start with SOI (FF D8) and end with EOI (FF D9)."""
    offsets = reader._offsets
    starts, ends = offsets[:-1], offsets[1:]
    short = np.flatnonzero(ends - starts < 4)
    if len(short):
        i = int(short[0])
        raise DataError(reader.path, f"frame {i}: {int(ends[i] - starts[i])} bytes, not a JPEG")
    blob = reader._jpeg
    good = (
        (blob[starts] == 0xFF)
        & (blob[starts + 1] == 0xD8)
        & (blob[ends - 2] == 0xFF)
        & (blob[ends - 1] == 0xD9)
    )
    if not good.all():
        bad = np.flatnonzero(~good)
        raise DataError(
            reader.path,
            f"frame {bad[0]}: not one whole JPEG (start/end markers missing; {len(bad)} such "
            "frame(s))",
        )


def read_clip_header(path: str | os.PathLike) -> tuple[np.ndarray, int]:
    """A crop store's ``valid`` mask and crop size, without reading its frames.

    Reads only the metadata members of the store's ``.npz`` (the "jpeg" file itself, or
    "npy"'s ``meta.npz``); :func:`open_clip_crops` would load every frame's JPEG bytes.
    The full consistency check happens when a frame is first read.
    """
    path = Path(path)
    _require_archive(path)
    try:
        with NPY_HEADER_LOCK, np.load(path / _META if path.is_dir() else path) as meta:
            version = int(meta["format_version"])
            valid = np.asarray(meta["valid"], dtype=bool)
            size = int(meta["crop_size"])
    except (OSError, ValueError, TypeError, KeyError, IndexError, EOFError, BadZipFile) as err:
        raise DataError(path, f"unreadable crop store ({' '.join(str(err).split())})") from err
    if version != FORMAT_VERSION:
        raise DataError(path, f"crop store version {version}, expected {FORMAT_VERSION}")
    if valid.ndim != 1 or not len(valid):
        raise DataError(path, f"crop store holds no frames (valid mask {valid.shape})")
    return valid, size
