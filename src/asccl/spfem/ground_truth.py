"""The ground truth of ``asccl experiment``'s test clips, framed as the generators' outputs.

``asccl data synth`` writes, per (neutral clip, target emotion), the exact answer in
full-frame pixels: ``<ground_truth>/<emotion>/<speaker>_<NNN>.mp4`` (``NNN``: the neutral
clip's sentence) and ``.landmarks.npy`` ``(N, 68, 2)``. The generators see the data stage's
face crops of the neutral clip, resized to their image size, so each ground-truth frame ``t``
goes the neutral source's way exactly (:func:`frame_ground_truth`):

1. cropped with the neutral clip's crop box of frame ``t`` from its crop store
   (:func:`asccl.data.crops.crop_frame`, the store's crop size and ``pad`` setting; frames the
   store marks invalid stay black, as the store's do);
2. through the store's JPEG round trip when the store is JPEG (quality
   :data:`~asccl.data.crop_store.JPEG_QUALITY`, OpenCV both ways, as the store);
3. resized to the generator's size by :func:`asccl.spfem.data.frames_to_model` and back to
   uint8 as the results are; written as ``<results>/ground_truth/<setting>/<emotion>/
   <clip>.mp4`` with ``<clip>.landmarks.npy``: the landmarks mapped by the same box
   (:func:`asccl.data.crops.to_crop_coords`) and the resize (pixel centres:
   ``(q + 0.5) size / S - 0.5``).

So the ground truth of a neutral clip with target "neutral" (its own frames) is exactly its
source clip; ``tests/spfem/test_ground_truth.py`` checks that.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from asccl.data.crop_store import JPEG_QUALITY, ClipCropsReader, encode_jpegs
from asccl.data.crops import crop_frame, round_box, to_crop_coords
from asccl.data.errors import DataError
from asccl.evaluation.results import read_frames


def _pad_mode(reader: ClipCropsReader) -> str:
    """The ``pad`` the store was cropped with (its ``.settings.json``; "zeros" if absent)."""
    try:
        settings = json.loads(Path(f"{reader.path}.settings.json").read_text())
    except (OSError, ValueError):
        return "zeros"
    return settings.get("pad", "zeros") if isinstance(settings, dict) else "zeros"


def frame_ground_truth(
    reader: ClipCropsReader, truth_video: Path, truth_landmarks: np.ndarray | None, size: int
) -> tuple[np.ndarray, np.ndarray | None]:
    """Frame a full-frame ground-truth clip with the neutral source's crop store.

    Args:
        reader: the neutral clip's crop store (boxes, crop size, format).
        truth_video: the ground-truth video, frame ``t`` on the neutral clip's frame ``t``.
        truth_landmarks: ``(N, 68, 2)`` full-frame pixel landmarks, or ``None``.
        size: the generator's image side.

    Returns:
        ``(T, size, size, 3)`` uint8 frames and ``(T, 68, 2)`` float32 landmarks in those
        frames' pixels (``None`` without ``truth_landmarks``); ``T`` the shorter of the store
        and the ground truth.
    """
    from asccl.spfem.data import frames_to_model
    from asccl.spfem.results import _to_uint8

    full = read_frames(truth_video)
    boxes, valid = np.asarray(reader.boxes, np.float64), np.asarray(reader.valid, bool)
    t = min(len(full), len(boxes))
    if truth_landmarks is not None:
        if truth_landmarks.ndim != 3 or truth_landmarks.shape[1:] != (68, 2):
            raise DataError(truth_video, f"landmarks of shape {truth_landmarks.shape}, "
                            "expected (N, 68, 2)")  # fmt: skip
        t = min(t, len(truth_landmarks))
    crop, pad = reader.size, _pad_mode(reader)
    crops = np.zeros((t, crop, crop, 3), np.uint8)
    marks = np.full((t, 68, 2), np.nan, np.float32) if truth_landmarks is not None else None
    for i in range(t):
        if not valid[i] or not np.isfinite(boxes[i]).all():
            continue  # the store's frame is black and invalid: so is the ground truth's
        crop_frame(full[i], boxes[i], crop, pad, out=crops[i])
        if marks is not None:
            inside = to_crop_coords(truth_landmarks[i], round_box(boxes[i]), crop)
            marks[i] = (inside.astype(np.float64) + 0.5) * (size / crop) - 0.5
    if reader.format != "npy":
        from asccl.data.opencv import cv2

        data, offsets = encode_jpegs(crops, JPEG_QUALITY)
        for i in range(t):
            bgr = cv2.imdecode(data[offsets[i] : offsets[i + 1]], cv2.IMREAD_COLOR)
            crops[i] = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    model = frames_to_model(torch.from_numpy(crops).permute(0, 3, 1, 2), size)
    return _to_uint8(model), marks


def write_ground_truth(
    reader: ClipCropsReader, truth_video: Path, size: int, fps: float, out: Path
) -> Path:
    """Frame ``truth_video`` (and its ``.landmarks.npy`` when present) with
    :func:`frame_ground_truth` into ``out`` (``.mp4``) and ``out``'s ``.landmarks.npy``;
    an existing ``out`` is kept (the results' settings stamp decides what is redone)."""
    from asccl.data.video import write_video
    from asccl.io import atomic_write

    marks_out = out.with_name(f"{out.stem}.landmarks.npy")
    if out.is_file() and marks_out.is_file():
        return out
    marks_in = truth_video.with_name(f"{truth_video.stem}.landmarks.npy")
    truth_marks = np.load(marks_in, allow_pickle=False) if marks_in.is_file() else None
    frames, marks = frame_ground_truth(reader, truth_video, truth_marks, size)
    if marks is not None:
        with atomic_write(marks_out) as tmp, open(tmp, "wb") as handle:
            np.save(handle, marks)
    write_video(out, frames, fps=fps)
    return out


__all__ = ["frame_ground_truth", "write_ground_truth"]
