"""``avi_audio`` against the ffmpeg 5.1 CLI: syncnet_python's ``video.avi`` (MP3 by libmp3lame)
then ``audio.wav`` (s16 mono 16 kHz), recorded by ``scripts/reference/record_avi_audio.py`` into
``tests/evaluation/ffmpeg_cli/avi_audio_*.npz`` (see its README). Both sides run LAME 3.100 and
the same libavfilter/libswresample arithmetic (ffmpeg 5.1's s16 resampling asked for
explicitly), so the emulation must equal the CLI sample for sample: no tolerance."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from tests.evaluation.syncnet_audio_clips import (
    CLICK_TIMES,
    CLIPS,
    DEMO_CLIP,
    build_clip,
    signal_digest,
)

from asccl.data.audio import load_audio_like_ffmpeg
from asccl.data.errors import DataError
from asccl.evaluation.syncnet_audio import SYNCNET_AUDIO_RATE, avi_audio

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = Path(__file__).parent / "ffmpeg_cli"
NAMES = [*CLIPS, "demo"]


def _recorded(name: str) -> dict:
    with np.load(FIXTURES / f"avi_audio_{name}.npz") as data:
        return {key: data[key] for key in data.files}


def _clip(name: str, folder: Path) -> Path:
    if name == "demo":
        return ROOT / DEMO_CLIP
    assert signal_digest(CLIPS[name]) == str(_recorded(name)["signal_sha256"]), (
        "the clip builder no longer makes the recorded clip: re-record the fixtures"
    )
    return build_clip(name, folder)


@pytest.mark.parametrize("name", NAMES)
def test_avi_audio_equals_the_cli(name: str, tmp_path: Path) -> None:
    cli = _recorded(name)
    got = avi_audio(_clip(name, tmp_path))
    assert got.source_rate == int(cli["rate"])  # 96 kHz -> 48 kHz, 7 kHz -> 8 kHz: as the CLI
    assert got.priming == int(cli["priming"]) == 1105  # read from the encoder, not assumed
    assert got.samples.dtype == np.int16
    assert len(got.samples) == len(cli["samples"])
    np.testing.assert_array_equal(got.samples, cli["samples"])


def test_ffmpeg_7_does_not_pad_a_late_audio_stream(tmp_path: Path) -> None:
    """``late32k``'s audio starts 0.12 s after its video. FFmpeg 7.0.2's CLI (recorded in
    ``avi_audio_late32k_ffmpeg7.npz``) does not pad it: the AVI's sound begins with the
    stream's first sample, 0.12 s early against the video; ``ffmpeg="7+"`` equals that sample
    for sample, and the 4-6 emulation (padded) does not. Clips whose audio starts with the
    video give the same samples under both (measured: 6 of the 8 recorded clips; ``rate96k``
    differs by at most 35 of 32767 on 5% of samples, a resampler change before LAME)."""
    with np.load(FIXTURES / "avi_audio_late32k_ffmpeg7.npz") as data:
        cli = {key: data[key] for key in data.files}
    assert str(cli["ffmpeg_version"]).startswith("ffmpeg version 7.0.2")
    clip = _clip("late32k", tmp_path)
    new = avi_audio(clip, ffmpeg="7+")
    np.testing.assert_array_equal(new.samples, cli["samples"])
    assert new.start == pytest.approx(0.12, abs=1e-6)
    old = avi_audio(clip)  # 0.12 s of silence first (whole MP3 frames: the lengths round)
    assert len(old.samples) > len(new.samples) and not np.any(old.samples[:1900])
    assert np.any(new.samples[:1900])
    with pytest.raises(ValueError, match="ffmpeg must be one of"):
        avi_audio(clip, ffmpeg="7")


@pytest.mark.parametrize("name", ["mono16k", "stereo44k", "late32k"])
def test_the_old_path_misses_the_mp3_delay(name: str, tmp_path: Path) -> None:
    """``load_audio_like_ffmpeg`` (no MP3 step) is not what the CLI gives: the CLI's sound lags
    it by the priming, ``1105 / rate`` s, which the cross-correlation peak finds to within
    the half-sample rounding of resampling that delay to 16 kHz (plus one sample of slack)."""
    cli = _recorded(name)
    old = load_audio_like_ffmpeg(_clip(name, tmp_path)).astype(np.float64)
    ref = cli["samples"].astype(np.float64)
    assert len(old) != len(ref) or not np.array_equal(old, ref)
    n = min(len(old), len(ref))
    lags = np.arange(0, 2000)
    corr = [np.dot(old[: n - lag], ref[lag:n]) for lag in lags]
    expected = 1105 * SYNCNET_AUDIO_RATE / int(cli["rate"])
    assert abs(lags[int(np.argmax(corr))] - expected) <= 1.5


def test_clicks_land_at_their_time_plus_the_priming(tmp_path: Path) -> None:
    """In the 16 kHz mono clip (no resampling), each click's largest sample in the CLI's audio
    is at its time plus exactly 1105 samples."""
    cli = _recorded("mono16k")["samples"].astype(np.int64)
    for when in CLICK_TIMES:
        k = round(when * SYNCNET_AUDIO_RATE) + 1105
        window = np.abs(cli[k - 40 : k + 40])
        assert k - 40 + int(np.argmax(window)) == pytest.approx(k, abs=2)
    got = avi_audio(_clip("mono16k", tmp_path))
    assert got.priming_seconds == pytest.approx(1105 / 16000)


def test_missing_file_and_no_audio_stream(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no such file"):
        avi_audio(tmp_path / "absent.mp4")
    video_only = tmp_path / "video.mkv"
    import av

    with av.open(str(video_only), "w") as c:
        stream = c.add_stream("ffv1", rate=25)
        stream.width = stream.height = 16
        frame = av.VideoFrame.from_ndarray(np.zeros((16, 16, 3), np.uint8), format="rgb24")
        c.mux(stream.encode(frame))
        c.mux(stream.encode(None))
    with pytest.raises(DataError, match="no audio stream"):
        avi_audio(video_only)
    garbage = tmp_path / "noise.wav"
    garbage.write_bytes(b"not a sound file at all" * 10)
    with pytest.raises(DataError):
        avi_audio(garbage)
