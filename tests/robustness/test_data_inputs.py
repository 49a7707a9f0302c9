"""Bad data inputs through the real command line: clips whose video and audio disagree,
file names that are not UTF-8 (``asccl data index``), and crop stores damaged after stage 1
(``asccl train-metric``). Every bad input is built here, at test time."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from asccl.cli import main
from asccl.data.clip_index import duration_tolerance, read_clip_index
from tests.data.builders import write_grey_video, write_wav
from tests.data.crop_damage import break_frames, flip_byte_in_place, rewrite_store
from tests.robustness.conftest import one_line_error, snapshot
from tests.training.conftest import stage1_64  # noqa: F401 (a fixture: the tiny stage-1 output)

# ----------------------------------------------------------------------------- data index


def add_clip(root: Path, clip: str, frames: int, fps: float, audio_s: float) -> Path:
    """MEAD clip ``"<speaker>/<emotion>/level_<n>/<NNN>"``: a 32x32 video of ``frames``
    frames at ``fps`` and ``audio_s`` seconds of audio. Returns the video's path."""
    speaker, rest = clip.split("/", 1)
    video = write_grey_video(root / speaker / "video/front" / f"{rest}.mp4", frames, fps)
    write_wav(root / speaker / "audio" / f"{rest}.m4a", audio_s)  # FFmpeg reads a WAV there
    return video


GOOD = {"M003/neutral/level_1/001": (30, 30, 1.0), "M003/angry/level_3/001": (36, 30, 1.1)}
#: clip -> (frames, fps, audio seconds, the problem the index reports)
BAD = {
    "M003/angry/level_3/002": (13, 12.5, 1.04, "frame rate 12.5 fps outside 20-60 fps"),
    "M003/angry/level_3/003": (600, 1000, 0.6, "frame rate 1000 fps outside 20-60 fps"),
    "M003/disgusted/level_3/028": (1, 30, 1 / 30, "video too short: 1 frame(s) at 30 fps"),
    "M003/disgusted/level_3/029": (30, 30, 3.0, "is shorter than its audio"),
    "M003/disgusted/level_3/030": (90, 30, 1.0, "is longer than its audio"),
    "M003/happy/level_3/001": (30, 30, 0.0, "audio track is empty (0 s of sound)"),
}


@pytest.fixture
def bad_tree(tmp_path) -> Path:
    root = tmp_path / "MEAD"
    for clip, (frames, fps, audio_s) in GOOD.items():
        add_clip(root, clip, frames, fps, audio_s)
    for clip, (frames, fps, audio_s, _) in BAD.items():
        add_clip(root, clip, frames, fps, audio_s)
    return root


def test_index_lists_each_bad_clip_with_its_reason_and_indexes_the_good(bad_tree, capsys):
    out = bad_tree.parent / "out"
    first = sorted(BAD)[0]  # items are probed in clip order; the error line names the first
    first_video = f"{bad_tree}/M003/video/front/{first.split('/', 1)[1]}.mp4"
    one_line_error(["data", "index", "--root", bad_tree, "--out", out, "--workers", "0"],
                   capsys, first_video, BAD[first][-1], str(len(BAD)))  # fmt: skip
    clips = read_clip_index(out / "clips.csv")
    assert sorted(c.clip_id for c in clips) == sorted(GOOD)  # never paired: not in the index
    assert all(c.fps == 30 and c.num_frames == GOOD[c.clip_id][0] for c in clips)
    log = next((out / "logs").glob("index-*.log")).read_text().splitlines()
    assert len(log) == len(BAD)
    for clip, (*_, problem) in BAD.items():
        video = f"{bad_tree}/M003/video/front/{clip.split('/', 1)[1]}.mp4"
        [entry] = [entry for entry in log if entry.startswith(f"{video}: ")]
        assert problem in entry, entry
        if clip == "M003/happy/level_3/001":  # the fault is the audio file: named too
            assert f"{bad_tree}/M003/audio/happy/level_3/001.m4a" in entry
        if "than its audio" in problem:
            assert f"{bad_tree}/M003/audio/disgusted/level_3/{clip[-3:]}.m4a" in entry
    # the pairs stage sees only good clips: one pair, aligned, no failure
    assert (
        main(["data", "pairs", "--root", str(bad_tree), "--out", str(out), "--workers", "0"]) == 0
    )
    assert "1 aligned on disk" in capsys.readouterr().out


def test_index_accepts_a_gap_within_two_frames_and_the_aac_slack(tmp_path, capsys):
    root = tmp_path / "MEAD"
    tolerance = duration_tolerance(30)
    add_clip(root, "M003/neutral/level_1/001", 30, 30, 1.0 + tolerance - 0.01)
    add_clip(root, "M003/angry/level_3/001", 30, 30, 1.0 + tolerance + 0.01)
    one_line_error(["data", "index", "--root", root, "--out", tmp_path / "out"], capsys,
                   "M003/video/front/angry/level_3/001.mp4", "shorter than its audio")  # fmt: skip
    [clip] = read_clip_index(tmp_path / "out" / "clips.csv")
    assert clip.clip_id == "M003/neutral/level_1/001"


def test_index_reports_names_that_are_not_utf8_and_indexes_the_rest(tmp_path, capsys):
    root = tmp_path / "MEAD"
    for clip, (frames, fps, audio_s) in GOOD.items():
        add_clip(root, clip, frames, fps, audio_s)
    odd = root / "M003/video/front/angry/level_3" / os.fsdecode(b"\xff02.mp4")
    shutil.copy(root / "M003/video/front/angry/level_3/001.mp4", odd)
    (root / os.fsdecode(b"W0\xe921")).mkdir()  # Latin-1 "é" in a speaker folder
    out = tmp_path / "out"
    assert main(["data", "index", "--root", str(root), "--out", str(out)]) == 0
    captured = capsys.readouterr()
    assert "2 names or files not understood" in captured.out and "Traceback" not in captured.err
    assert sorted(c.clip_id for c in read_clip_index(out / "clips.csv")) == sorted(GOOD)
    log = next((out / "logs").glob("index-*.log")).read_text(encoding="utf-8")
    assert f"{root}/M003/video/front/angry/level_3/\\xff02.mp4: name is not valid UTF-8" in log
    assert f"{root}/W0\\xe921: name is not valid UTF-8" in log


def test_index_refuses_a_root_that_is_not_utf8_in_one_line(tmp_path, capsys):
    root = tmp_path / os.fsdecode(b"caf\xe9")
    add_clip(root, "M003/neutral/level_1/001", 30, 30, 1.0)
    out = tmp_path / "out"
    line = one_line_error(["data", "index", "--root", root, "--out", out], capsys, "root")
    assert "caf" in line and "UTF-8" in line
    assert not out.exists()


# ----------------------------------------------------------------------------- train-metric

DAMAGED_CLIP = "W901/angry/level_3/001"  # a training clip (W903 validates)


def train_args(data: Path, out: Path, workers: int = 0) -> list[str]:
    toml = out.parent / f"{out.name}.toml"
    toml.write_text(
        f'data = "{data}"\ninit = "random"\nval_speakers = ["W903"]\nbatch_size = 4\n'
        f"max_steps = 2\nval_every = 0\nval_batches = 1\nworkers = {workers}\n"
        'device = "cpu"\n\n[metric]\nbackbone = "iresnet18"\nimage_size = 64\n'
        "num_anchors = [8, 4, 4, 2]\n"
    )
    return ["train-metric", "--config", toml, "--out", out]


def wrong_shape(path: Path) -> None:
    with np.load(path) as npz:
        rewrite_store(path, boxes=npz["boxes"][:, :2].copy())


def truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


@pytest.fixture
def stage1_copy(stage1_64, tmp_path) -> Path:  # noqa: F811 (the imported fixture)
    return Path(shutil.copytree(stage1_64, tmp_path / "data"))


@pytest.mark.parametrize(
    ("damage", "problem"),
    [
        (lambda p: break_frames(p, [5]), "frame 5: undecodable JPEG"),
        (truncate, "unreadable crop store"),
        (
            lambda p: flip_byte_in_place(p, 4),
            "frame bytes changed since the store was written (CRC-32 mismatch)",
        ),
        (wrong_shape, "arrays disagree in length or shape"),
    ],
    ids=["jpeg-fails-only-when-decoded", "truncated-npz", "byte-changed-on-disk", "wrong-shape"],
)
def test_train_metric_refuses_a_damaged_crop_store_before_it_starts(
    stage1_copy, tmp_path, capsys, damage, problem
):
    store = stage1_copy / "crops" / f"{DAMAGED_CLIP}.npz"
    damage(store)
    out = tmp_path / "metric"
    out.mkdir()
    (out / "notes.txt").write_text("an earlier file in --out\n")
    before = snapshot(out)
    line = one_line_error(train_args(stage1_copy, out), capsys, f"{store}: ")
    assert problem in line
    assert snapshot(out) == before  # nothing written, nothing changed


@pytest.mark.slow
def test_a_worker_reading_a_store_damaged_during_training_fails_in_one_line(
    stage1_copy, tmp_path, capsys, monkeypatch
):
    """The store passes the check, then breaks (a disk error, another job rewriting it):
    the DataLoader worker's DataError reaches the command line as one line naming it."""
    from asccl.training.dataset import PairedFrames

    store = stage1_copy / "crops" / f"{DAMAGED_CLIP}.npz"
    checked = PairedFrames._verify_stores

    def check_then_break(self: PairedFrames) -> None:
        checked(self)
        if "W901" in self.speakers():  # the training set: every frame of one clip breaks
            break_frames(store)

    monkeypatch.setattr(PairedFrames, "_verify_stores", check_then_break)
    line = one_line_error(train_args(stage1_copy, tmp_path / "metric", workers=2), capsys,
                          f"{store}: frame ")  # fmt: skip
    assert line.endswith(": undecodable JPEG")
