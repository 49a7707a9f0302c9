"""Paired face crops for metric training: one item per DTW frame pair (neutral, emotional).

Reads what stage 1 (:mod:`asccl.data.prepare`) wrote under its ``out`` folder::

    <data_dir>/pairs.csv                 aligned clip pairs, frame lists
    <data_dir>/crops/<clip id>.npz       face crops per clip ("jpeg"; "npy": <clip id>.crops/)
    <data_dir>/crops.pack/               optional: the "jpeg" stores packed for random access
                                         (``asccl data pack``, :mod:`asccl.data.frame_pack`)

Items are uint8 ``(3, S, S)`` RGB tensors; :func:`to_model_input` turns a batch into the
metric's float input on the device (uint8 is 4x cheaper to collate, pin and transfer).
"""

from __future__ import annotations

import json
import logging
import os
from collections import Counter, OrderedDict
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from asccl.data.crop_store import (
    STORE_SUFFIX,
    ClipCropsReader,
    check_clip_crops,
    crop_path,
    open_clip_crops,
    read_clip_header,
)
from asccl.data.errors import DataError
from asccl.data.frame_pack import PACK_DIR, FramePack, open_frame_pack
from asccl.data.item_settings import read_crop_record
from asccl.data.pair_files import read_pairs_table
from asccl.metric.preprocess import to_metric_input

__all__ = ["PairedFrames", "data_run_settings", "split_by_speaker", "to_model_input"]

log = logging.getLogger(__name__)

PAIRS_FILE = "pairs.csv"


class PairedFrames(Dataset):
    """Every frame pair of the selected aligned clip pairs whose two frames show a face.

    Item ``i`` is ``(neutral, emotional)``: uint8 ``(3, S, S)`` RGB tensors, contiguous
    (:meth:`frame_pair` says where they come from). Clips whose crop store is missing (stage
    1 made none: no face, a bad video) or shorter than their pairs say are left out with
    their pairs, logged as a warning and listed in :attr:`skipped`; frame pairs with a frame
    marked invalid (no face) are dropped. A store that exists but is damaged is an error,
    not a skip: training on what is left would silently change the data.

    Construction reads ``pairs.csv`` and each clip's ``valid`` mask, then (``verify``)
    checks every store it will read with
    :func:`~asccl.data.crop_store.check_clip_crops`: structure, JPEG markers, the frame
    bytes' CRC-32, and a decode of each frame an item uses, in threads (measured on this
    repo's shared 2-core machine, 224 px crops: 1,200-4,000 frames/s per core, so MEAD's
    ~1 M used frames take minutes on one core, well under one on a 16-core GPU host; each
    DDP process checks its own copy). A store that fails only when decoded is refused
    now, in one line naming it, not in a DataLoader worker later. Landmark and box values are not
    checked here: training does not read them (the crop stage's
    :func:`~asccl.data.crop_store.validate_clip_crops` does, and redoes such stores).
    Frames are read on access through crop store readers opened lazily and kept in a
    per-process LRU cache of ``cache_size`` clips (a "jpeg" reader holds its clip's JPEG
    bytes, about ``frames x 20 KB`` at 224 px); the cache is not pickled, so each
    DataLoader worker builds its own. A frame that fails to read there (the store changed
    since) raises :class:`DataError` naming the store, which a DataLoader re-raises in the
    main process as itself (see :class:`~asccl.data.errors.DataError`).

    Packed frames (``frame_pack``). With ``"auto"`` (default), when ``<data_dir>/crops.pack``
    holds a finished pack (``asccl data pack``) and ``crop_format`` is ``"jpeg"``, frames
    are read from it instead of the stores: the same bytes decoded the same way, so items
    are identical, at one memory-mapped slice and one decode per frame (no store opened;
    ``benchmarks/bench_reader.py``). The pack must be fresh: every store used, as packed
    (:meth:`~asccl.data.frame_pack.FramePack.require_fresh`), else construction stops with
    one line naming the first changed store. ``verify`` then checks each used frame's
    CRC-32 in the pack and decodes it. ``"on"`` requires a pack, ``"off"`` ignores it.

    Args:
        data_dir: a stage-1 ``out`` folder.
        speakers: keep only these speakers (``None``: all).
        exclude_speakers: leave these speakers out.
        emotions: keep only these emotions (``None``: all).
        crop_format: the store format stage 1 wrote (``"jpeg"`` or ``"npy"``).
        cache_size: open readers kept per process.
        verify: check every store and decode every frame used, at construction.
        frame_pack: ``"auto"``, ``"on"`` or ``"off"``: read frames from ``crops.pack``.

    Attributes:
        skipped: ``(clip id, reason)`` for every clip (or clip's pair) left out.
        num_no_face: frame pairs dropped because a frame has no face.
        size: the crop side ``S``.
        store_settings: the settings each store read records beside it (its
            ``.settings.json``; ``None``: none), for :func:`data_run_settings`.
        store_sources: ``(clip id, sha256 of the video it was cut from)`` of each store
            read, from the same file (``"unrecorded"``: an older asccl's store), for
            :func:`data_run_settings`.

    Raises:
        DataError: no ``pairs.csv``; a requested speaker or emotion absent from it; a
            damaged crop store (named); crop stores of different sizes; nothing usable left;
            a stale or damaged pack (named); ``frame_pack="on"`` without a pack.
    """

    def __init__(
        self,
        data_dir: str | os.PathLike,
        *,
        speakers: list[str] | None = None,
        exclude_speakers: tuple[str, ...] | list[str] = (),
        emotions: list[str] | None = None,
        crop_format: str = "jpeg",
        cache_size: int = 64,
        verify: bool = True,
        frame_pack: str = "auto",
    ) -> None:
        if frame_pack not in ("auto", "on", "off"):
            raise ValueError(f"frame_pack must be 'auto', 'on' or 'off', got {frame_pack!r}")
        if crop_format not in STORE_SUFFIX:
            raise ValueError(
                f"unknown crop_format {crop_format!r}; valid: {', '.join(STORE_SUFFIX)}"
            )
        if cache_size < 1:
            raise ValueError(f"cache_size must be >= 1, got {cache_size}")
        self.data_dir = Path(data_dir)
        self.crop_format = crop_format
        self.cache_size = cache_size
        table = _read_pairs(self.data_dir)
        pairs = _select(table, self.data_dir, speakers, exclude_speakers, emotions)
        clips = list(dict.fromkeys(c for p in pairs for c in (p.neutral_clip, p.emotional_clip)))
        self._pack = self._open_pack(frame_pack, clips)

        # One header read per clip: its valid mask and crop size; and its recorded settings.
        self.skipped: list[tuple[str, str]] = []
        self.store_settings: list[dict | None] = []
        self.store_sources: list[tuple[str, str]] = []
        valid: dict[str, np.ndarray] = {}
        sizes: dict[int, list[str]] = {}
        recorded: dict[str, list[str]] = {}  # the settings a store records (JSON) -> clips
        for clip in clips:
            path = crop_path(self.data_dir, clip, crop_format)
            if self._pack is not None:  # fresh: a clip is packed iff its store exists
                row = self._pack.row(clip)
                if row is None:
                    self.skipped.append((clip, "no such crop store"))
                    continue
                valid[clip], size = self._pack.header(row)
            elif not path.exists():
                self.skipped.append((clip, "no such crop store"))
                continue
            else:
                valid[clip], size = read_clip_header(path)  # DataError: damaged, refused
            sizes.setdefault(size, []).append(clip)
            settings, sources = read_crop_record(path)
            self.store_settings.append(settings)
            self.store_sources.append((clip, _video_sha(sources)))
            recorded.setdefault(json.dumps(settings, sort_keys=True), []).append(clip)
        if len(sizes) > 1:
            found = ", ".join(f"{s} px ({len(c)} clips, e.g. {c[0]})" for s, c in sizes.items())
            raise DataError(self.data_dir, f"crop stores differ in size: {found}")
        _refuse_mixed_settings(self.data_dir, recorded)
        self.size = next(iter(sizes), 0)

        # Items: (pair, neutral frame, emotional frame), int32; pairs point into clip ids.
        clip_index: dict[str, int] = {}
        pair_clips, pair_speaker, pair_emotion, chunks = [], [], [], []
        skipped_clips = {clip for clip, _ in self.skipped}
        dropped_pairs = self.num_no_face = 0
        for pair in pairs:
            if {pair.neutral_clip, pair.emotional_clip} & skipped_clips:
                dropped_pairs += 1
                continue
            sides = ((pair.neutral_clip, pair.neutral_frames),
                     (pair.emotional_clip, pair.emotional_frames))  # fmt: skip
            beyond = [
                (c, int(f.max()), len(valid[c])) for c, f in sides if f.max() >= len(valid[c])
            ]
            if beyond:
                clip, frame, n = beyond[0]
                partner = pair.emotional_clip if clip == pair.neutral_clip else pair.neutral_clip
                problem = f"its pair with {partner} uses frame {frame}, the store holds {n}"
                self.skipped.append((clip, problem))
                dropped_pairs += 1
                continue
            keep = valid[pair.neutral_clip][pair.neutral_frames]
            keep &= valid[pair.emotional_clip][pair.emotional_frames]
            self.num_no_face += int((~keep).sum())
            if not keep.any():
                continue
            index = len(pair_clips)
            pair_clips.append([clip_index.setdefault(c, len(clip_index)) for c, _ in sides])
            pair_speaker.append(pair.speaker)
            pair_emotion.append(pair.emotion)
            chunks.append(np.stack([np.full(int(keep.sum()), index), pair.neutral_frames[keep],
                                    pair.emotional_frames[keep]], axis=1))  # fmt: skip
        self._clip_ids = list(clip_index)
        self._pack_rows = [self._pack.row(c) for c in self._clip_ids] if self._pack else []
        self._pair_clips = np.array(pair_clips, np.int32).reshape(-1, 2)  # (P, 2) into clip ids
        self._pair_speaker = pair_speaker
        self._pair_emotion = pair_emotion
        self._items = (
            np.concatenate(chunks).astype(np.int32) if chunks else np.zeros((0, 3), np.int32)
        )
        self._readers: OrderedDict[str, ClipCropsReader] = OrderedDict()
        self._readers_pid = os.getpid()
        if verify:
            self._verify_stores()

        if self.skipped:
            reasons = Counter(_reason_kind(problem) for _, problem in self.skipped)
            log.warning(
                "%s: %d clip pair(s) dropped for %d unusable clip(s) (%s); e.g. %s: %s "
                "(all in .skipped)",
                self.data_dir, dropped_pairs, len(self.skipped),
                ", ".join(f"{n} {kind}" for kind, n in reasons.items()), *self.skipped[0],
            )  # fmt: skip
        if not len(self._items):
            why = self._why_empty(table, pairs)
            raise DataError(self.data_dir, f"no usable frame pairs: {why}")
        if self.num_no_face:
            log.info("%s: %d frame pair(s) without a face dropped", self.data_dir, self.num_no_face)

    def _why_empty(self, table: list, pairs: list) -> str:
        if not table:
            return f"{PAIRS_FILE} holds no pairs: run `asccl data pairs` first"
        if not pairs:
            return "no clip pair of the chosen speakers and emotions"
        if self.skipped:
            where = f"crops/<clip id>{STORE_SUFFIX[self.crop_format]}"
            return (
                f"no crop store usable ({self.skipped[0][0]}: {self.skipped[0][1]}; looked for "
                f"{where}): run `asccl data crops` first, or check crop_format "
                f"({self.crop_format!r})"
            )
        return "every frame pair has a frame without a face"

    def __len__(self) -> int:
        return len(self._items)

    def __getitem__(self, i: int) -> tuple[Tensor, Tensor]:
        """``(neutral, emotional)``: uint8 ``(3, S, S)`` RGB, contiguous."""
        pair, neutral_frame, emotional_frame = self._items[i].tolist()
        neutral_clip, emotional_clip = self._pair_clips[pair].tolist()
        if self._pack is not None:
            rows = self._pack_rows
            return (
                torch.from_numpy(self._pack.frame_chw(rows[neutral_clip], neutral_frame)),
                torch.from_numpy(self._pack.frame_chw(rows[emotional_clip], emotional_frame)),
            )
        return (
            _chw(self._frame(self._clip_ids[neutral_clip], neutral_frame)),
            _chw(self._frame(self._clip_ids[emotional_clip], emotional_frame)),
        )

    def _frame(self, clip: str, i: int) -> np.ndarray:
        """Frame ``i`` of ``clip``'s store; any failure is a :class:`DataError` naming it."""
        try:
            return self._reader(clip).frame(i)
        except DataError:
            raise
        except (OSError, ValueError, IndexError) as err:
            path = crop_path(self.data_dir, clip, self.crop_format)
            raise DataError(path, f"frame {i}: {type(err).__name__}: {err}") from err

    def _verify_stores(self) -> None:
        """:func:`check_clip_crops` on every store, decoding each frame an item uses."""
        used: dict[int, set[int]] = {}
        for side in (0, 1):
            clips = self._pair_clips[self._items[:, 0], side]
            for clip, frame in np.unique(np.stack([clips, self._items[:, 1 + side]], 1), axis=0):
                used.setdefault(int(clip), set()).add(int(frame))
        if self._pack is not None:
            self._pack.verify({self._pack_rows[clip]: frames for clip, frames in used.items()})
            return

        def check(clip: int) -> None:
            path = crop_path(self.data_dir, self._clip_ids[clip], self.crop_format)
            check_clip_crops(path, decode=sorted(used[clip]), values=False, checksum=True)

        workers = min(16, os.cpu_count() or 1, max(1, len(used)))
        with ThreadPoolExecutor(workers) as pool:  # cv2.imdecode releases the GIL
            for future in [pool.submit(check, clip) for clip in sorted(used)]:
                future.result()  # the first damaged store (in clip order) is the error

    def _open_pack(self, mode: str, clips: list[str]) -> FramePack | None:
        """The data folder's fresh pack when ``mode`` and the format allow (see the class)."""
        if mode == "off" or self.crop_format != "jpeg":
            if mode == "on":
                raise ValueError(
                    f"frame_pack='on' needs crop_format 'jpeg', not {self.crop_format!r}"
                )
            return None
        pack = open_frame_pack(self.data_dir)
        if pack is None and mode == "on":
            raise DataError(self.data_dir / PACK_DIR, "no finished pack: run `asccl data pack`")
        if pack is not None:
            pack.require_fresh(self.data_dir, clips)
        return pack

    def frame_pair(self, i: int) -> tuple[str, int, str, int]:
        """Where item ``i`` comes from: (neutral clip id, frame, emotional clip id, frame)."""
        pair, neutral_frame, emotional_frame = self._items[i].tolist()
        neutral_clip, emotional_clip = self._pair_clips[pair].tolist()
        return (self._clip_ids[neutral_clip], neutral_frame,
                self._clip_ids[emotional_clip], emotional_frame)  # fmt: skip

    def speakers(self) -> list[str]:
        """The speakers with at least one item, sorted."""
        return sorted(set(self._pair_speaker))

    def emotions(self) -> list[str]:
        """The emotions with at least one item, sorted."""
        return sorted(set(self._pair_emotion))

    def describe(self) -> str:
        """A few lines: totals, what was dropped, and items per speaker and emotion."""
        per_pair = np.bincount(self._items[:, 0], minlength=len(self._pair_speaker))
        counts: Counter[tuple[str, str]] = Counter()
        for speaker, emotion, n in zip(
            self._pair_speaker, self._pair_emotion, per_pair.tolist(), strict=True
        ):
            counts[speaker, emotion] += n
        speakers, emotions = self.speakers(), self.emotions()
        lines = [
            f"{self.data_dir}: {len(self)} frame pairs from {len(self._pair_speaker)} clip "
            f"pairs, {len(speakers)} speaker(s), {len(emotions)} emotion(s); "
            f"{self.size}x{self.size} crops ({self.crop_format}"
            f"{', read from ' + PACK_DIR if self._pack else ''})",
            f"dropped: {self.num_no_face} frame pair(s) with a frame without a face, "
            f"{len(self.skipped)} clip(s) unusable (see .skipped)",
        ]
        width = max(len("speaker"), *map(len, speakers))
        columns = [*emotions, "total"]
        lines.append(f"{'speaker':<{width}}  " + "  ".join(f"{c:>9}" for c in columns))
        for speaker in speakers:
            row = [counts[speaker, e] for e in emotions]
            row.append(sum(row))
            lines.append(f"{speaker:<{width}}  " + "  ".join(f"{n:>9}" for n in row))
        return "\n".join(lines)

    def _reader(self, clip: str) -> ClipCropsReader:
        """The clip's reader from this process's LRU cache, opened on a miss."""
        if self._readers_pid != os.getpid():  # a forked worker: start its own cache
            self._readers, self._readers_pid = OrderedDict(), os.getpid()
        reader = self._readers.get(clip)
        if reader is None:
            reader = open_clip_crops(crop_path(self.data_dir, clip, self.crop_format))
            self._readers[clip] = reader
            if len(self._readers) > self.cache_size:
                self._readers.popitem(last=False)
        else:
            self._readers.move_to_end(clip)
        return reader

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_readers"] = OrderedDict()  # open readers stay in their process
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._readers_pid = os.getpid()


def split_by_speaker(
    data_dir: str | os.PathLike, val_speakers: list[str], **kwargs
) -> tuple[PairedFrames, PairedFrames]:
    """``(train, val)``: train holds every speaker but ``val_speakers``, val holds those.

    ``kwargs`` (``emotions``, ``crop_format``, ``cache_size``) go to both datasets.

    Raises:
        DataError: a validation speaker is not in ``pairs.csv`` (the message lists those
            that are), or either side has nothing usable.
    """
    for name in ("speakers", "exclude_speakers"):
        if name in kwargs:
            raise TypeError(f"split_by_speaker chooses the speakers itself; drop {name}=")
    if not val_speakers:
        raise ValueError("val_speakers is empty: name at least one validation speaker")
    present = sorted({p.speaker for p in _read_pairs(Path(data_dir))})
    absent = [s for s in val_speakers if s not in present]
    if absent:
        raise DataError(
            data_dir,
            f"validation speaker {', '.join(absent)} not in the data; speakers: "
            f"{', '.join(present)}",
        )
    train = PairedFrames(data_dir, exclude_speakers=list(val_speakers), **kwargs)
    val = PairedFrames(data_dir, speakers=list(val_speakers), **kwargs)
    return train, val


def _refuse_mixed_settings(data_dir: Path, recorded: dict[str, list[str]]) -> None:
    """DataError when the crop stores record different settings (e.g. ``--shard`` runs made
    with another ``detect_every``): training would mix crops of two procedures. Stores
    with no record (older asccl, other tools) are not compared."""
    groups = {k: c for k, c in recorded.items() if k != "null"}
    if len(groups) < 2:
        return
    settings = {k: json.loads(k) for k in groups}
    keys = sorted({key for value in settings.values() for key in value})
    differing = [
        key for key in keys if len({json.dumps(v.get(key)) for v in settings.values()}) > 1
    ]
    found = "; ".join(
        ", ".join(f"{key} {json.dumps(settings[k].get(key))}" for key in differing)
        + f" ({len(clips)} stores, e.g. {clips[0]})"
        for k, clips in groups.items()
    )
    raise DataError(
        data_dir,
        f"crop stores made with different settings: {found}; rerun asccl data crops without "
        "--shard (it redoes the stores made with other settings)",
    )


def data_run_settings(*datasets: PairedFrames) -> dict[str, str]:
    """The run-settings keys of the crop stores ``datasets`` read (their crop size and
    recorded settings: :func:`~asccl.training.resume.crop_settings`; the digest of the
    videos they were cut from: :func:`~asccl.training.resume.sources_digest`), for a
    trainer to add to the settings its checkpoints record, so that a resume on other crops
    is refused.

    Raises:
        DataError: the datasets' crops differ in size.
    """
    from asccl.training.resume import SOURCES_KEY, crop_settings, sources_digest

    sizes = {d.size for d in datasets if d.store_settings}
    if len(sizes) > 1:
        found = ", ".join(f"{d.data_dir}: {d.size} px" for d in datasets)
        raise DataError(datasets[0].data_dir, f"crop stores differ in size: {found}")
    keys = crop_settings(next(iter(sizes), 0), [s for d in datasets for s in d.store_settings])
    sources = sources_digest(s for d in datasets for s in d.store_sources)
    return {**keys, SOURCES_KEY: json.dumps(sources)}


def _video_sha(sources: dict | None) -> str:
    """The sha256 a store's recorded sources give its video; ``"unrecorded"`` if none."""
    video = (sources or {}).get("video")
    sha = video.get("sha256") if isinstance(video, dict) else None
    return sha if isinstance(sha, str) else "unrecorded"


def to_model_input(
    batch_uint8: Tensor, *, size: int, flip_channels: bool, channels_last: bool
) -> Tensor:
    """A uint8 batch from :class:`PairedFrames` to the metric's input, on its own device.

    Call after ``.to(device, non_blocking=True)``: the conversion runs where the batch is.

    Args:
        batch_uint8: ``(B, 3, S, S)`` uint8 RGB.
        size: output side; bilinear antialiased resize when ``S != size``.
        flip_channels: RGB -> BGR (the metric's ``MetricConfig`` says which it wants).
        channels_last: return in ``torch.channels_last`` memory format.

    Returns:
        ``(B, 3, size, size)`` float32 in [-1, 1] (``x / 127.5 - 1``):
        :func:`~asccl.metric.preprocess.to_metric_input`, the one image contract.
    """
    if batch_uint8.dtype != torch.uint8:
        raise TypeError(f"expected a uint8 batch, got {batch_uint8.dtype}")
    images = to_metric_input(batch_uint8, flip_channels=flip_channels, size=size)
    if channels_last:
        images = images.contiguous(memory_format=torch.channels_last)
    return images


# ----------------------------------------------------------------------------- helpers


def _read_pairs(data_dir: Path) -> list:
    path = data_dir / PAIRS_FILE
    if not path.is_file():
        raise DataError(
            data_dir, f"no {PAIRS_FILE}: not a stage-1 output folder, or `asccl data pairs` "
            "has not run"
        )  # fmt: skip
    return read_pairs_table(path)


def _select(pairs: list, data_dir: Path, speakers, exclude_speakers, emotions) -> list:
    """The pairs of the chosen speakers and emotions; a name absent from the table is an
    error (a typo must not silently change a split)."""
    for name, value in (("speakers", speakers), ("exclude_speakers", exclude_speakers),
                        ("emotions", emotions)):  # fmt: skip
        if isinstance(value, str):
            raise TypeError(f"{name} must be a list of names, got the string {value!r}")
    for what, chosen, present in (
        ("speaker", speakers, {p.speaker for p in pairs}),
        ("speaker", exclude_speakers, {p.speaker for p in pairs}),
        ("emotion", emotions, {p.emotion for p in pairs}),
    ):
        absent = [name for name in chosen or () if name not in present]
        if absent:
            raise DataError(
                data_dir,
                f"{what} {', '.join(absent)} not in the data; {what}s: "
                f"{', '.join(sorted(present)) or 'none'}",
            )
    excluded = set(exclude_speakers)
    return [
        p for p in pairs
        if (speakers is None or p.speaker in speakers)
        and p.speaker not in excluded
        and (emotions is None or p.emotion in emotions)
    ]  # fmt: skip


def _reason_kind(problem: str) -> str:
    """A short label to count skip reasons by."""
    if problem == "no such crop store":
        return "missing crop store"
    return "frame index beyond the store" if "the store holds" in problem else "other"


def _chw(frame: np.ndarray) -> Tensor:
    """``(S, S, 3)`` uint8 -> contiguous ``(3, S, S)`` uint8 tensor."""
    return torch.from_numpy(frame).permute(2, 0, 1).contiguous()
