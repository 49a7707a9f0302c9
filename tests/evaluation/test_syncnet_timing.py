"""Which source frame each 25 fps image of syncnet_python's run_pipeline shows, against the
images the real ffmpeg CLIs wrote (``tests/evaluation/ffmpeg_cli/avi_timing_ffmpeg*.json``,
recorded by ``scripts/reference/record_avi_timing.py`` with FFmpeg 4.2.2, 5.1, 7.0.2 and
9.0.2: 4.x-6.x and 7+ pick differently)."""

from __future__ import annotations

import json
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from asccl.data.errors import DataError
from asccl.data.video import frame_times, probe_video
from asccl.evaluation.syncnet_timing import avi_frame_sources, nearest_frames

CLI = Path(__file__).parent / "ffmpeg_cli"
#: recording -> the behaviour that reproduces it
BEHAVIOURS = {"4": "4-6", "5": "4-6", "7": "7+", "9": "7+"}
RECORDS = {v: json.loads((CLI / f"avi_timing_ffmpeg{v}.json").read_text()) for v in BEHAVIOURS}
RECORD = RECORDS["5"]
CASES = RECORD["cases"]


def _times(case: dict) -> np.ndarray:
    return np.array([float(Fraction(t)) for t in case["times"]])


def _audio_start(case: dict) -> float:
    """The audio's start on the container's clock (the earlier stream starts at 0)."""
    video, audio = Fraction(case["video_start"]), Fraction(case["audio_start"])
    return float(audio - min(video, audio))


@pytest.mark.parametrize("version", sorted(BEHAVIOURS))
@pytest.mark.parametrize("name", sorted(CASES))
def test_images_are_the_ones_the_cli_wrote(name, version):
    record = RECORDS[version]
    case = record["cases"][name]
    assert f"version n{version}." in record["ffmpeg"] or f"version {version}." in record["ffmpeg"]
    fps = float(Fraction(case["r_frame_rate"]))
    got = avi_frame_sources(_times(case), fps, case["audio_rate"] or None,
                            audio_start=_audio_start(case), ffmpeg=BEHAVIOURS[version])  # fmt: skip
    assert got.tolist() == case["images"]


def test_the_two_behaviours_differ_on_most_clips():
    """Why the choice exists: 7.x+ keep frames 0-11 of 30 fps input and drop 12, 18, ...
    where 4.x-6.x drop 10, 16, ...; 30 of the 34 recorded clips give other images."""
    old, new = RECORDS["5"]["cases"], RECORDS["7"]["cases"]
    assert sum(old[k]["images"] != new[k]["images"] for k in old) == 30
    assert new["30fps"]["images"][:13] == [*range(12), 13]
    assert all(RECORDS["4"]["cases"][k]["images"] == old[k]["images"] for k in old)
    assert all(RECORDS["9"]["cases"][k]["images"] == new[k]["images"] for k in old)


def test_the_record_covers_what_matters():
    """Drops and repeats, late starts, every MP3 priming shift seen (0-4 slots), VFR."""
    shifts = {-(-1105 * 25 // c["audio_rate"]) for c in CASES.values() if c["audio_rate"]}
    assert shifts >= {1, 2, 3, 4}
    assert any(c["variable_rate"] for c in CASES.values())
    assert any(Fraction(c["video_start"]) > 0 for c in CASES.values())
    assert {c["container"] for c in CASES.values()} == {"mkv", "mp4"}
    assert "5.1" in RECORD["ffmpeg"]
    with pytest.raises(ValueError, match="ffmpeg must be one of"):
        avi_frame_sources([0.0], 25, ffmpeg="6")


def test_nearest_in_time_is_not_what_the_reference_shows():
    """The rule asccl used before: content at each image's own time. On 30 fps input the CLI
    keeps frames 0-9 and then drops every sixth (10, 16, 22, ...)."""
    case = CASES["30fps"]
    images = case["images"]
    assert images[:12] == [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 11, 12]
    nearest = nearest_frames(case["frames"], 30.0).tolist()
    assert nearest[:12] == [0, 1, 2, 4, 5, 6, 7, 8, 10, 11, 12, 13]
    assert len(nearest) != len(images) or nearest != images


def test_audio_priming_moves_video_later_and_repeats_the_first_frame():
    """With 16 kHz audio the muxer shifts the video 2 slots (ceil(1105 * 25 / 16000)): the
    first frame fills the gap it leaves. Without audio there is no shift."""
    times = np.arange(10) / 25
    assert avi_frame_sources(times, 25.0).tolist() == list(range(10))
    assert avi_frame_sources(times, 25.0, 16000).tolist() == [0, 0, 1, 1, *range(2, 10)]
    assert avi_frame_sources(times, 25.0, 48000).tolist() == [0, 1, 1, *range(2, 10)]
    assert avi_frame_sources(times, 25.0, 16000, priming=0).tolist() == list(range(10))


@pytest.mark.parametrize(
    "name", ["vfr_audio_16k", "mp4_video_late_aac_48k", "mp4_aac_48k", "mp4_editlist"]
)
def test_frame_times_are_ffprobes(name):
    """``frame_times`` gives the timestamps ffprobe reported, minus the container's start
    (exact fractions of a millisecond or of 1/15360 s; 1e-9 s covers float64 rounding).
    ``mp4_editlist`` (``-ss 0.5 -c copy``) holds 15 packets before its edit list's start,
    marked for discarding: not decoded, so not timed (45 frames, not 60)."""
    clip = next(CLI.glob(f"timing_{name}.*"))
    case = CASES[name]
    np.testing.assert_allclose(frame_times(clip), _times(case), rtol=0, atol=1e-9)
    fps = probe_video(clip).fps
    got = avi_frame_sources(frame_times(clip), fps, case["audio_rate"] or None)
    assert got.tolist() == case["images"]


def test_an_edit_list_cut_is_read_not_refused_as_truncated():
    """``ffmpeg -ss 0.5 -c copy`` (how clips are often cut) leaves 15 listed packets before the
    edit list's start, marked for discarding. The reader decodes the 45 kept frames (it
    called the file truncated: 45 of the 60 listed), each timed by ``frame_times``, and the
    probe counts 45 (the container lists 60; stage 1 sized its arrays by that)."""
    import av

    from asccl.evaluation.results import read_frames

    clip = CLI / "timing_mp4_editlist.mp4"
    with av.open(str(clip)) as container:
        assert container.streams.video[0].frames == 60
    assert probe_video(clip).num_frames == 45
    assert len(read_frames(clip)) == len(frame_times(clip)) == 45


def test_frame_times_refuse_a_missing_file(tmp_path):
    with pytest.raises(DataError, match="no such file"):
        frame_times(tmp_path / "none.mp4")


def test_bad_rates_are_refused():
    with pytest.raises(ValueError, match="fps"):
        avi_frame_sources([0.0], 0)
    with pytest.raises(ValueError, match="audio_rate"):
        avi_frame_sources([0.0], 25, -1)
