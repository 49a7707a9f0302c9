from pathlib import Path

import numpy as np
import pytest

from asccl.data.errors import DataError
from asccl.data.video import write_video
from asccl.evaluation.results import make_demo_results, read_frames, scan_results

MEAD = Path(__file__).resolve().parents[2] / "demo_data" / "MEAD"


def tiny_frames(n: int = 6, size: int = 32, seed: int = 0) -> np.ndarray:
    """``(n, size, size, 3)`` uint8: blocky random frames (8x8 blocks survive H.264)."""
    rng = np.random.default_rng(seed)
    blocks = rng.integers(0, 256, (n, size // 8, size // 8, 3), dtype=np.uint8)
    return blocks.repeat(8, axis=1).repeat(8, axis=2)


def write_tiny_results(
    root: Path,
    *,
    methods: tuple[str, ...] = ("baseline", "asccl"),
    emotions: tuple[str, ...] = ("happy", "sad"),
    names: tuple[str, ...] = ("A_001", "A_002"),
    frames: int = 6,
) -> Path:
    """A results folder of tiny 32x32 videos (``frames`` frames, 25 fps, no audio): each
    source, and per method a noisy copy of it (method ``i`` with noise seed ``i``)."""
    for e, emotion in enumerate(emotions):
        for c, name in enumerate(names):
            source = tiny_frames(frames, seed=10 * e + c)
            _video(root / "sources" / emotion / f"{name}.mp4", source)
            for m, method in enumerate(methods):
                noise = np.random.default_rng(m).integers(-20, 21, source.shape)
                result = np.clip(source.astype(int) + noise, 0, 255).astype(np.uint8)
                _video(root / method / "inter_id" / emotion / f"{name}.mp4", result)
    return root


def _video(path: Path, frames: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    write_video(path, frames, fps=25.0)
    return path


def _touch(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"not a real video")
    return path


def test_scan_lists_methods_settings_emotions_and_problems(tmp_path):
    for emotion in ("happy", "sad"):
        _touch(tmp_path / "sources" / emotion / "W901_001.mp4")
        _touch(tmp_path / "baseline" / "inter_id" / emotion / "W901_001.mp4")
    _touch(tmp_path / "asccl" / "inter_id" / "happy" / "W901_001.mp4")  # sad missing
    _touch(tmp_path / "asccl" / "inter_id" / "happy" / "W901_999.mp4")  # no source
    _touch(tmp_path / "asccl" / "inter_id" / "joyful" / "W901_001.mp4")  # unknown emotion
    (tmp_path / "asccl" / "inter_id" / "happy" / "W901_002").mkdir()  # frame folder
    _touch(tmp_path / "sources" / "happy" / "W901_002.mp4")
    _touch(tmp_path / "references" / "inter_id" / "happy" / "W901_001.mp4")

    index = scan_results(tmp_path)
    assert index.methods == ["asccl", "baseline"]
    assert index.settings == ["inter_id"]
    assert index.emotions == ["happy", "sad"]
    asccl = index.select(method="asccl")
    assert [c.name for c in asccl] == ["W901_001", "W901_002", "W901_999"]
    assert asccl[0].reference == tmp_path / "references/inter_id/happy/W901_001.mp4"
    assert asccl[1].path.is_dir() and asccl[2].source is None
    problems = "\n".join(index.problems)
    assert "missing emotion(s) ['sad']" in problems and "asccl/inter_id" in problems
    assert "unknown emotion folder 'joyful'" in problems
    assert "W901_999.mp4: no matching source" in problems
    assert "no method has emotion(s)" in problems


def test_scan_reports_unknown_setting_and_missing_sources(tmp_path):
    _touch(tmp_path / "ganmut" / "single" / "fear" / "a.mp4")
    _touch(tmp_path / "ganmut" / "cross-id" / "fear" / "a.mp4")
    index = scan_results(tmp_path)
    assert index.settings == ["single"]
    problems = "\n".join(index.problems)
    assert "unknown setting 'cross-id'" in problems and "no sources folder" in problems


def test_scan_rejects_a_folder_without_methods(tmp_path):
    with pytest.raises(DataError, match="no method folders"):
        scan_results(tmp_path)
    with pytest.raises(DataError, match="not found"):
        scan_results(tmp_path / "absent")


def test_demo_results_and_read_frames(tmp_path):
    root = make_demo_results(MEAD, tmp_path, emotions=("happy",), sentences=("001",),
                             frame_folder_frames=4)  # fmt: skip
    index = scan_results(root)
    assert index.problems[-1].startswith("inter_id: no method has")
    assert len(index.problems) == 1
    (baseline,) = index.select(method="baseline")
    (asccl,) = index.select(method="asccl")
    video = read_frames(baseline.path, max_frames=4)
    folder = read_frames(asccl.path)
    assert video.shape == folder.shape == (4, 256, 256, 3) and video.dtype == np.uint8
    np.testing.assert_array_equal(video, folder)
    bad = _touch(tmp_path / "bad.mp4")
    with pytest.raises(DataError, match=r"bad\.mp4"):
        read_frames(bad)


def test_scan_reports_empty_levels_and_files_that_are_not_clips(tmp_path):
    write_tiny_results(tmp_path, methods=("baseline",), emotions=("happy",), names=("A_001",))
    (tmp_path / "baseline" / "cross_id").mkdir()  # a setting without emotion folders
    (tmp_path / "baseline" / "inter_id" / "happy" / "notes.txt").write_text("hi")
    (tmp_path / "baseline" / "inter_id" / "happy" / "A_002").mkdir()  # an empty frame folder
    index = scan_results(tmp_path)
    problems = "\n".join(index.problems)
    assert f"{tmp_path / 'baseline' / 'cross_id'}: setting folder holds no emotion" in problems
    assert "notes.txt: not a video" in problems
    assert [c.name for c in index.clips] == ["A_001", "A_002"]  # the empty folder is a clip...
    with pytest.raises(DataError, match="A_002: no frames"):  # ...that cannot be read
        read_frames(index.clips[1].path)
