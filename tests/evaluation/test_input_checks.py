"""Inputs that used to give silently wrong numbers (audit 40): frame order in a frame
folder, 16-bit PNG frames, two clips of one name, another frame rate than the ground truth
or source, and a frame folder's LSE frame rate and audio length."""

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from asccl.data.errors import DataError
from asccl.data.video import write_video
from asccl.evaluation.config import EvalConfig, EvalSummary
from asccl.evaluation.results import ResultClip, read_frames, scan_results

from .test_results import tiny_frames

MEAD_CLIP = Path(__file__).parents[2] / "demo_data/MEAD/W903/video/front/happy/level_3/001.mp4"


def _frames_folder(folder: Path, frames: np.ndarray, names: list[str]) -> Path:
    folder.mkdir(parents=True)
    for frame, name in zip(frames, names, strict=True):
        Image.fromarray(frame).save(folder / name)
    return folder


def test_unpadded_frame_names_are_read_in_numeric_order(tmp_path):
    # 12 frames, each a flat grey of its own value: a text sort would read 0, 1, 10, 11, 2...
    frames = np.stack([np.full((8, 8, 3), 20 * i, np.uint8) for i in range(12)])
    folder = _frames_folder(tmp_path / "c", frames, [f"{i}.png" for i in range(12)])
    got = read_frames(folder)
    assert [int(f[0, 0, 0]) for f in got] == [20 * i for i in range(12)]
    assert np.array_equal(read_frames(folder, 3), frames[:3])  # the first 3 in that order
    text = _frames_folder(tmp_path / "t", frames[:3], ["b.png", "a.png", "c.png"])
    assert [int(f[0, 0, 0]) for f in read_frames(text)] == [20, 0, 40]  # no digits: by text


def test_two_frames_of_one_number_are_refused(tmp_path):
    frames = tiny_frames(2, 8)
    folder = _frames_folder(tmp_path / "c", frames, ["1.png", "01.png"])
    with pytest.raises(DataError, match="same frame number"):
        read_frames(folder)


def test_16_bit_grey_png_keeps_its_high_byte(tmp_path):
    # ramp 0..65472 in steps of 64: its 8-bit version is v >> 8 (0..255, mean 127.5);
    # convert("RGB") clipped every value above 255 to 255 (mean 254.4)
    ramp = (np.arange(32 * 32).reshape(32, 32) * 64).astype(np.uint16)
    folder = tmp_path / "g"
    folder.mkdir()
    Image.fromarray(ramp).save(folder / "0.png")
    with Image.open(folder / "0.png") as image:
        assert image.mode.startswith("I")  # a 16-bit grey PNG
    got = read_frames(folder)
    assert got.dtype == np.uint8 and got.shape == (1, 32, 32, 3)
    assert np.array_equal(got[0], np.repeat((ramp >> 8).astype(np.uint8)[..., None], 3, 2))


def test_16_bit_rgb_png_keeps_its_high_byte(tmp_path):
    cv2 = pytest.importorskip("cv2")  # PIL writes no 16-bit RGB PNG
    rgb = (np.arange(16 * 16 * 3).reshape(16, 16, 3) * 85).astype(np.uint16)
    (tmp_path / "c").mkdir()
    cv2.imwrite(str(tmp_path / "c" / "0.png"), rgb[..., ::-1])  # OpenCV writes BGR
    assert np.array_equal(read_frames(tmp_path / "c")[0], (rgb >> 8).astype(np.uint8))


def test_two_clips_of_one_name_are_a_problem_and_neither_is_used(tmp_path):
    def vid(path: Path, seed: int) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_video(path, tiny_frames(3, 16, seed), fps=25)

    vid(tmp_path / "sources/happy/A_001.mp4", 1)
    vid(tmp_path / "sources/happy/A_001.avi", 2)
    vid(tmp_path / "sources/happy/A_002.mp4", 3)
    vid(tmp_path / "m/inter_id/happy/A_001.mp4", 4)
    vid(tmp_path / "m/inter_id/happy/A_002.mp4", 5)
    vid(tmp_path / "m/inter_id/happy/A_002.mkv", 6)
    (tmp_path / "m/inter_id/happy/A_002").mkdir()
    index = scan_results(tmp_path)
    assert index.sources == {"happy": {"A_002": tmp_path / "sources/happy/A_002.mp4"}}
    assert [(c.name, c.source) for c in index.clips] == [("A_001", None)]
    text = "\n".join(index.problems)
    assert "sources/happy/A_001: 2 clips of the same name (A_001.avi, A_001.mp4)" in text
    assert "m/inter_id/happy/A_002: 3 clips of the same name (A_002, A_002.mkv, A_002.mp4)" in text
    assert "A_001.mp4: its source sources/happy/A_001 is ambiguous" in text


def _gt_tree(tmp_path: Path, result_fps: float, truth_fps: float, n: int = 12) -> Path:
    frames = tiny_frames(n, 16)
    for part, fps in (("sources", 30), ("ground_truth/inter_id", truth_fps),
                      ("m/inter_id", result_fps)):  # fmt: skip
        path = tmp_path / part / "happy" / "A_001.mp4"
        path.parent.mkdir(parents=True)
        write_video(path, frames, fps=fps)
    return tmp_path


@pytest.mark.parametrize(("result_fps", "scored"), [(15, False), (30000 / 1001, True)])
def test_ground_truth_at_another_frame_rate_is_not_scored(tmp_path, result_fps, scored):
    from asccl.evaluation.ground_truth_features import (
        _rate_mismatch,
        extract_ground_truth,
        ground_truth_jobs,
    )

    root = _gt_tree(tmp_path / "r", result_fps, 30)
    index = scan_results(root)
    config = EvalConfig(results=root, out=tmp_path / "eval", metrics=("ground_truth",))
    clip = index.clips[0]
    truth = root / "ground_truth/inter_id/happy/A_001.mp4"
    # 12 frames at 29.97 vs 30 fps drift 12 * 0.03 / 29.97 = 0.012 frame: the same rate
    assert (_rate_mismatch(clip.path, truth, clip.source, config) == "") == scored
    if scored:
        return
    summary = EvalSummary()
    assert extract_ground_truth(ground_truth_jobs(index), index, None, config, summary) == {}
    reason = summary.failures[str(clip.path)]
    assert reason.startswith("ground-truth metrics not scored: 15 fps, its ground truth")
    assert "30 fps" in reason


def test_csim_at_another_frame_rate_than_its_source_is_not_scored(tmp_path):
    from asccl.evaluation.scoring import scored_units

    root = _gt_tree(tmp_path / "r", 15, 30)
    index = scan_results(root)
    config = EvalConfig(results=root, out=tmp_path / "eval", metrics=("csim",))
    clip = index.clips[0]
    entry = {"features": np.ones((12, 4), np.float32), "frame_index": np.arange(12),
             "frames": np.int64(12)}  # fmt: skip
    features = {("arcface", clip.path): entry, ("arcface", clip.source): entry}
    summary = EvalSummary()
    assert scored_units(index.clips, features, config, summary) == set()
    assert "CSIM not scored: 15 fps, its source" in summary.failures[str(clip.path)]
    same = _gt_tree(tmp_path / "s", 30, 30)
    clip = scan_results(same).clips[0]
    features = {("arcface", clip.path): entry, ("arcface", clip.source): entry}
    assert len(scored_units([clip], features, config, EvalSummary())) == 1


@pytest.mark.skipif(not MEAD_CLIP.is_file(), reason="demo_data not present")
def test_frame_folder_lse_uses_its_source_rate_and_checks_the_audio_length(tmp_path):
    from asccl.evaluation.features import frame_rate
    from asccl.evaluation.scoring import _audio_gap

    # MEAD: 30 fps, 91 frames, 3.008 s of audio (91 / 30 = 3.033 s, 0.025 s apart)
    config = EvalConfig(results=tmp_path, out=tmp_path / "eval")  # frame_folder_fps 25
    full, half = tmp_path / "full", tmp_path / "half"
    _frames_folder(full, np.zeros((91, 2, 2, 3), np.uint8), [f"{i}.png" for i in range(91)])
    _frames_folder(half, np.zeros((45, 2, 2, 3), np.uint8), [f"{i}.png" for i in range(45)])
    assert frame_rate(full, MEAD_CLIP, config) == 30.0
    assert frame_rate(full, None, config) == 25.0  # no source video: frame_folder_fps
    # a sound file as the source (the audio LSE reads): it has no frame rate of its own
    audio_only = MEAD_CLIP.parents[4] / "audio" / "happy" / "level_3" / "001.m4a"
    assert frame_rate(full, audio_only, config) == 25.0  # was DataError: no video stream
    clip = ResultClip("m", "inter_id", "happy", "A", full, MEAD_CLIP)
    assert _audio_gap(clip, str(MEAD_CLIP), config) == ""
    # at 25 fps the 91 frames would last 3.64 s: 0.63 s more than the audio, over the
    # 2 / 25 + 0.07 = 0.15 s allowed; at 30 fps they fit
    orphan = ResultClip("m", "inter_id", "happy", "A", full, None)
    assert "0.632 s apart, more than the 0.150 s allowed" in _audio_gap(orphan, str(MEAD_CLIP),
                                                                         config)  # fmt: skip
    # 45 frames at 30 fps = 1.5 s against 3.008 s of audio: 1.508 s apart (> 0.137 s)
    short = ResultClip("m", "inter_id", "happy", "A", half, MEAD_CLIP)
    gap = _audio_gap(short, str(MEAD_CLIP), config)
    assert gap.startswith("45 frames at 30 fps (a frame folder at its source's rate) = 1.500 s")
    assert "1.508 s apart, more than the 0.137 s allowed" in gap
