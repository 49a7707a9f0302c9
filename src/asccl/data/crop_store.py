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

Writes are atomic: a temporary sibling is written, then renamed over ``path``; a killed
process leaves either the old store or none, never a half-written one
(:func:`validate_clip_crops` checks a store before a resumed run skips its clip).
"""

from __future__ import annotations

import os
import shutil
import tempfile
import zipfile
from pathlib import Path

import numpy as np

try:
    import cv2
except ImportError as err:  # pragma: no cover - depends on the environment
    raise ImportError(
        "asccl.data.crop_store needs OpenCV: pip install 'opencv-python-headless<5'"
    ) from err

from asccl.data.crops import ClipCrops
from asccl.data.errors import DataError

__all__ = [
    "STORE_FORMATS",
    "ClipCropsReader",
    "open_clip_crops",
    "read_clip_header",
    "validate_clip_crops",
    "write_clip_crops",
]

STORE_FORMATS = ("jpeg", "npy")  # the first is the default
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


def write_clip_crops(crops: ClipCrops, path: str | os.PathLike, format: str = "jpeg") -> Path:
    """Store ``crops`` at ``path`` atomically, replacing what is there; returns ``path``.

    ``format="jpeg"`` writes one file (name it e.g. ``<clip>.npz``); ``"npy"`` a folder
    (e.g. ``<clip>.crops``). The parent folder must exist.
    """
    if format not in STORE_FORMATS:
        raise ValueError(f"unknown store format {format!r}; valid: {', '.join(STORE_FORMATS)}")
    path = Path(path)
    prefix = f".{path.name}.tmp-"
    if format == "jpeg":
        jpeg_bytes, offsets = encode_jpegs(crops.frames)
        fd, tmp = tempfile.mkstemp(prefix=prefix, dir=path.parent)
        try:
            with os.fdopen(fd, "wb") as f:
                np.savez(f, jpeg_bytes=jpeg_bytes, offsets=offsets, **_meta(crops))
            if path.is_dir():
                shutil.rmtree(path)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return path

    tmp_dir = Path(tempfile.mkdtemp(prefix=prefix, dir=path.parent))
    try:
        with open(tmp_dir / _FRAMES, "wb") as f:
            np.save(f, np.ascontiguousarray(crops.frames, dtype=np.uint8))
        with open(tmp_dir / _META, "wb") as f:
            np.savez(f, **_meta(crops))
        _replace_with_dir(tmp_dir, path)
    except BaseException:
        shutil.rmtree(tmp_dir, ignore_errors=True)
        raise
    return path


def _replace_with_dir(tmp_dir: Path, path: Path) -> None:
    """Rename ``tmp_dir`` to ``path``; an old ``path`` is moved aside first, then deleted."""
    if not path.exists() and not path.is_symlink():
        os.replace(tmp_dir, path)
        return
    old = Path(tempfile.mkdtemp(prefix=f".{path.name}.old-", dir=path.parent))
    os.replace(path, old / "x")
    os.replace(tmp_dir, path)
    shutil.rmtree(old, ignore_errors=True)


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
            self.fps = float(meta["fps"])
            self.frame_size = tuple(int(v) for v in meta["frame_size"])
            self.size = int(meta["crop_size"])
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
        if not frames_ok or self.landmarks.shape != (n, 68, 2) or self.boxes.shape != (n, 4):
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
        buf = self._jpeg[self._offsets[i] : self._offsets[i + 1]]
        bgr = cv2.imdecode(buf, cv2.IMREAD_COLOR)
        if bgr is None:
            raise DataError(self.path, f"frame {i}: undecodable JPEG")
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


def open_clip_crops(path: str | os.PathLike) -> ClipCropsReader:
    """Open a store written by :func:`write_clip_crops` (either format).

    Raises:
        DataError: missing, unreadable or inconsistent store.
    """
    path = Path(path)
    if not path.exists():
        raise DataError(path, "no such crop store")
    try:
        return ClipCropsReader(path)
    except DataError:
        raise
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as err:
        raise DataError(path, f"unreadable crop store ({' '.join(str(err).split())})") from err


def validate_clip_crops(path: str | os.PathLike, expected_frames: int | None = None) -> bool:
    """Whether ``path`` holds a complete, consistent store (for resuming a cropping run).

    Opens it, checks the arrays agree, reads the first and last frame, and, if given, that
    it holds ``expected_frames`` frames. Never raises for a bad store: answers ``False``.
    """
    try:
        reader = open_clip_crops(path)
        n = len(reader)
        if n == 0 or (expected_frames is not None and n != expected_frames):
            return False
        return all(reader.frame(i).shape == (reader.size, reader.size, 3) for i in (0, n - 1))
    except Exception:  # any failure to read means "not a usable store"
        return False


def read_clip_header(path: str | os.PathLike) -> tuple[np.ndarray, int]:
    """A crop store's ``valid`` mask and crop size, without reading its frames.

    Reads only the metadata members of the store's ``.npz`` (the "jpeg" file itself, or
    "npy"'s ``meta.npz``); :func:`open_clip_crops` would load every frame's JPEG bytes.
    The full consistency check happens when a frame is first read.
    """
    path = Path(path)
    if not path.exists():
        raise DataError(path, "no such crop store")
    try:
        with np.load(path / _META if path.is_dir() else path) as meta:
            version = int(meta["format_version"])
            valid = np.asarray(meta["valid"], dtype=bool)
            size = int(meta["crop_size"])
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as err:
        raise DataError(path, f"unreadable crop store ({' '.join(str(err).split())})") from err
    if version != FORMAT_VERSION:
        raise DataError(path, f"crop store version {version}, expected {FORMAT_VERSION}")
    if valid.ndim != 1 or not len(valid):
        raise DataError(path, f"crop store holds no frames (valid mask {valid.shape})")
    return valid, size
