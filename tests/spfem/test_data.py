"""SPFEMFrames: DTW frame pairs as generator batches (shapes, ranges, labels, landmarks)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from asccl.data.clips import AlignedPair
from asccl.data.crop_store import crop_path, write_clip_crops
from asccl.data.crops import ClipCrops
from asccl.data.errors import DataError
from asccl.data.pair_files import write_pairs_table
from asccl.metric.preprocess import to_metric_input
from asccl.spfem.data import EMOTIONS, SPFEMFrames, emotion_label, frames_to_model
from asccl.training.dataset import to_model_input

FRAMES = 6


def write_stage1(root: Path, size: int = 32, emotions=("angry", "happy"),
                 speakers=("A01", "B02"), no_face=None) -> Path:  # fmt: skip
    """A tiny synthetic stage-1 output: per speaker a neutral clip and one clip per emotion
    (sentence 001, ``FRAMES`` frames of smooth noise, ``size`` px), DTW pairs with a repeated
    index, frame 1 of every neutral clip without a face, frame 2 with NaN landmarks.
    ``no_face``: ``{speaker: frames}`` of each neutral clip without a face instead (a speaker
    not named: none); the pixels and landmarks drawn stay the same."""
    rng = np.random.default_rng(0)
    pairs = []
    for speaker in speakers:
        clips = {"neutral": f"{speaker}/neutral/level_1/001"}
        clips.update({e: f"{speaker}/{e}/level_3/001" for e in emotions})
        for emotion, clip in clips.items():
            coarse = rng.integers(0, 256, (FRAMES, 4, 4, 3)).astype(np.float32)
            frames = np.repeat(np.repeat(coarse, size // 4, 1), size // 4, 2).astype(np.uint8)
            landmarks = rng.uniform(2, size - 2, (FRAMES, 68, 2)).astype(np.float32)
            valid = np.ones(FRAMES, bool)
            if emotion == "neutral":
                unseen = list((1,) if no_face is None else no_face.get(speaker, ()))
                valid[unseen] = False
                landmarks[unseen] = np.nan
                landmarks[2] = np.nan  # a face without landmarks: the clip mean stands in
            crops = ClipCrops(frames=frames, landmarks=landmarks, source_landmarks=landmarks,
                              boxes=np.zeros((FRAMES, 4), np.float32), valid=valid, fps=25.0,
                              frame_size=(size, size))  # fmt: skip
            path = crop_path(root, clip, "jpeg")
            path.parent.mkdir(parents=True, exist_ok=True)
            write_clip_crops(crops, path)
        for emotion in emotions:
            pairs.append(AlignedPair(speaker, emotion, clips["neutral"], clips[emotion],
                                     np.array([0, 1, 2, 3, 4, 5, 5]),
                                     np.array([0, 0, 1, 2, 3, 4, 5])))  # fmt: skip
    write_pairs_table(pairs, root / "pairs.csv")
    return root


@pytest.fixture(scope="module")
def stage1(tmp_path_factory) -> Path:
    return write_stage1(tmp_path_factory.mktemp("spfem_stage1"))


def test_items_have_the_documented_shapes_ranges_and_labels(stage1):
    data = SPFEMFrames(stage1)
    # 2 speakers x 2 emotions x 7 aligned frame pairs, minus the 1 pair using neutral frame 1
    assert len(data) == 2 * 2 * 6
    item = data[0]
    assert set(item) == {"image", "source", "target", "reference", "emotion", "target_emotion",
                         "source_landmarks", "target_landmarks"}  # fmt: skip
    for key in ("image", "source", "target", "reference"):
        assert item[key].shape == (3, 32, 32) and item[key].dtype == torch.float32
        assert item[key].min() >= -1.0 and item[key].max() <= 1.0
    assert item["image"] is item["source"] and item["reference"] is item["target"]
    assert item["emotion"].dtype == torch.int64 and item["emotion"].item() == 0
    assert EMOTIONS[0] == "neutral"
    labels = {data[i]["target_emotion"].item() for i in range(len(data))}
    assert labels == {emotion_label("angry"), emotion_label("happy")}
    for key in ("source_landmarks", "target_landmarks"):
        assert item[key].shape == (68, 2) and item[key].dtype == torch.float32
    every = torch.stack([data[i][k] for i in range(len(data))
                         for k in ("source_landmarks", "target_landmarks")])  # fmt: skip
    assert torch.isfinite(every).all() and every.min() >= 0 and every.max() <= 1


def test_pixels_and_landmarks_match_the_store(stage1):
    from asccl.data.crop_store import open_clip_crops

    data = SPFEMFrames(stage1)
    for i in range(len(data)):
        neutral_clip, n_frame, emotional_clip, e_frame = data.frame_pair(i)
        if n_frame == 2:
            break
    reader = open_clip_crops(crop_path(stage1, neutral_clip, "jpeg"))
    pixels = torch.from_numpy(reader.frame(n_frame)).permute(2, 0, 1).float() / 127.5 - 1
    assert torch.allclose(data[i]["source"], pixels, atol=1e-6)
    # frame 2's landmarks are NaN in the store: the mean of the clip's other frames
    expected = np.nanmean(np.where(np.isnan(reader.landmarks).any(axis=(1, 2))[:, None, None],
                                   np.nan, reader.landmarks), axis=0) / 32  # fmt: skip
    assert np.allclose(data[i]["source_landmarks"].numpy(), expected, atol=1e-6)
    target = open_clip_crops(crop_path(stage1, emotional_clip, "jpeg"))
    assert np.allclose(data[i]["target_landmarks"].numpy(), target.landmarks[e_frame] / 32)


def test_image_size_resizes_and_batches_are_tensor_only(stage1):
    data = SPFEMFrames(stage1, image_size=16)
    batch = next(iter(DataLoader(data, batch_size=4)))
    assert all(isinstance(v, torch.Tensor) for v in batch.values())
    assert batch["source"].shape == (4, 3, 16, 16) and batch["target_emotion"].shape == (4,)
    assert batch["source_landmarks"].shape == (4, 68, 2)


@pytest.mark.parametrize("size", [24, 32, 48])
def test_frames_follow_the_one_image_contract(size):
    """frames_to_model (generator inputs, ASCCL sources) and to_model_input (the metric
    trainer's batches) are to_metric_input on uint8 crops: equal to the bit, for any leading
    dimensions, and still the old rule (resize in 0..255, x / 127.5 - 1, clamp)."""
    g = torch.Generator().manual_seed(size)
    frames = torch.randint(0, 256, (2, 3, 3, 32, 32), generator=g, dtype=torch.uint8)
    x = frames_to_model(frames, size)
    assert x.shape == (2, 3, 3, size, size) and x.dtype == torch.float32
    flat = frames.flatten(0, 1)
    assert torch.equal(x.flatten(0, 1), to_metric_input(flat, size=size))
    assert torch.equal(x.flatten(0, 1), to_model_input(flat, size=size, flip_channels=False,
                                                       channels_last=False))  # fmt: skip
    assert torch.equal(frames_to_model(frames[0, 0], size), x[0, 0])  # one (3, S, S) frame
    old = flat.float()
    if size != 32:
        old = torch.nn.functional.interpolate(old, size=(size, size), mode="bilinear",
                                              antialias=True, align_corners=False)  # fmt: skip
    assert torch.equal(x.flatten(0, 1), (old / 127.5 - 1.0).clamp(-1.0, 1.0))
    with pytest.raises(TypeError, match="uint8"):
        frames_to_model(x, size)


def test_selection_and_clip_pairs(stage1):
    data = SPFEMFrames(stage1, exclude_speakers=["B02"], emotions=["happy"])
    assert data.speakers() == ["A01"] and data.emotions() == ["happy"]
    (pair,) = data.clip_pairs()
    assert (pair.speaker, pair.emotion, pair.sentence) == ("A01", "happy", "001")
    assert pair.target_label == emotion_label("happy")
    assert pair.reference_index(FRAMES).tolist() == [0, 0, 1, 2, 3, 4]
    frames, landmarks = data.read_clip(pair.neutral_clip)
    assert frames.shape == (FRAMES, 3, 32, 32) and landmarks.shape == (FRAMES, 68, 2)
    assert torch.isfinite(landmarks).all()
    first = data.first_item_per_emotion()
    assert len(first) == 1 and data[first[0]]["target_emotion"] == emotion_label("happy")


def test_emotions_without_a_label_are_an_error(tmp_path):
    root = write_stage1(tmp_path, emotions=("calm",), speakers=("A01",))
    with pytest.raises(DataError, match="calm"):
        SPFEMFrames(root)
    with pytest.raises(ValueError, match="unknown emotion 'calm'"):
        emotion_label("calm")
