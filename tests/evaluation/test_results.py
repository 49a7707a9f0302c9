from pathlib import Path

import numpy as np
import pytest

from asccl.data.errors import DataError
from asccl.evaluation.results import make_demo_results, read_frames, scan_results

MEAD = Path(__file__).resolve().parents[2] / "demo_data" / "MEAD"


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
