"""LSE's inputs as syncnet_python's ``run_pipeline`` and ``evaluate`` make them: audio as
``ffmpeg -async 1 -ac 1 -vn -acodec pcm_s16le -ar 16000`` writes it (on the clip's clock,
libswresample), through the MP3 of ``video.avi`` with ``lse_codecs``; frames and crops through
its codecs (``lse_codecs``). Clips are built here with PyAV: 64x64 FFV1 video at 25 fps and
PCM audio. Each codec step is checked against the ffmpeg CLI in ``test_syncnet_*.py``."""

from __future__ import annotations

from dataclasses import replace
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from tests.one_thread import one_thread  # noqa: F401 (autouse: single-threaded torch)

from asccl.config import ConfigError, load_config
from asccl.data.audio import load_audio, load_audio_like_ffmpeg
from asccl.evaluation import lip_sync
from asccl.evaluation.cache import feature_recipe
from asccl.evaluation.config import EvalConfig
from asccl.evaluation.features import Extractors
from asccl.evaluation.framing import describe, syncnet_input
from asccl.evaluation.syncnet import SyncNet
from asccl.evaluation.syncnet_audio import avi_audio
from asccl.evaluation.syncnet_timing import avi_frame_sources
from asccl.evaluation.syncnet_video import (
    avi_frames_round_trip,
    avi_pictures_round_trip,
    crop_video_round_trip,
)

FPS, FRAMES, SIZE = 25, 30, 64


def _frames(seed: int = 0) -> np.ndarray:
    """``(FRAMES, 64, 64, 3)`` uint8: a smooth gradient with a moving noisy block."""
    rng = np.random.default_rng(seed)
    ramp = np.linspace(40, 200, SIZE)
    base = np.stack(
        [
            ramp[None, :] + 0 * ramp[:, None],
            ramp[:, None] + 0 * ramp,
            120 + 0 * ramp * ramp[:, None],
        ],
        -1,
    )
    out = np.repeat(base[None], FRAMES, 0)
    for i in range(FRAMES):
        y = 16 + (i % 8) * 3
        out[i, y : y + 16, 20:44] = rng.integers(0, 256, (16, 24, 3))
    return out.astype(np.uint8)


def _write_clip(path: Path, audio: np.ndarray, rate: int, layout: str, audio_start: int) -> Path:
    """Video (:func:`_frames`, from t = 0) and ``audio`` ``(C, S)`` int16 whose first sample is
    at ``audio_start / rate`` s (the stream's start time)."""
    with av.open(str(path), "w") as c:
        video = c.add_stream("ffv1", rate=FPS)
        video.width = video.height = SIZE
        video.pix_fmt = "yuv420p"
        sound = c.add_stream("pcm_s16le", rate=rate)
        sound.layout = layout
        for i, image in enumerate(_frames()):
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            frame.pts, frame.time_base = i, Fraction(1, FPS)
            c.mux(video.encode(frame))
        c.mux(video.encode(None))
        packed = np.ascontiguousarray(audio.T).reshape(1, -1)  # s16 is packed: (1, S * C)
        channels = audio.shape[0]
        for k in range(0, audio.shape[1], 1024):
            chunk = packed[:, k * channels : (k + 1024) * channels]
            frame = av.AudioFrame.from_ndarray(chunk, format="s16", layout=layout)
            frame.sample_rate, frame.pts, frame.time_base = rate, audio_start + k, Fraction(1, rate)
            c.mux(sound.encode(frame))
        c.mux(sound.encode(None))
    return path


def _speechy(seconds: float, rate: int, seed: int = 1) -> np.ndarray:
    """``(S,)`` float noise bursts with an envelope (not silent, not stationary)."""
    rng = np.random.default_rng(seed)
    t = np.arange(round(seconds * rate)) / rate
    return 0.3 * rng.standard_normal(t.size) * (0.5 + 0.5 * np.sin(2 * np.pi * 3 * t))


@pytest.fixture(scope="module")
def model() -> SyncNet:
    torch.manual_seed(0)
    net = SyncNet().eval()
    net.netfcaud[3].weight.data.mul_(10.0)  # audio embeddings as large as the video ones
    return net


class Fed:
    """What ``_lip_sync`` hands SyncNet: wraps ``lip_sync.evaluate_clip``."""

    def __init__(self, monkeypatch) -> None:
        self.calls: list[tuple[np.ndarray, np.ndarray]] = []
        original = lip_sync.evaluate_clip

        def spy(model, frames, audio, **kwargs):
            self.calls.append((np.asarray(frames).copy(), np.asarray(audio).copy()))
            return original(model, frames, audio, **kwargs)

        monkeypatch.setattr(lip_sync, "evaluate_clip", spy)


def _extractors(model: SyncNet, **settings) -> Extractors:
    ex = Extractors(EvalConfig(framing="none", **settings))
    ex._models["syncnet"] = model
    return ex


# ------------------------------------------------------------------ F1: the audio's start time


def test_late_audio_is_padded_onto_the_clips_clock(tmp_path, model):
    """Audio starting 0.4 s after the video scores as the same audio padded with 0.4 s of
    silence from t = 0 (syncnet_python's ``-async 1``: aresample first_pts=0). Both decode
    exactly (16 kHz mono s16 in and out: no conversion), so the scores are equal bit for
    bit; ignoring the start time pairs frame i with audio 10 frames later instead."""
    rate, late = 16000, 6400  # 0.4 s
    sound = np.rint(_speechy(FRAMES / FPS - 0.4, rate) * 32767).astype(np.int16)[None]
    padded = np.concatenate([np.zeros((1, late), np.int16), sound], 1)
    a = _write_clip(tmp_path / "late.mkv", sound, rate, "mono", audio_start=late)
    b = _write_clip(tmp_path / "padded.mkv", padded, rate, "mono", audio_start=0)
    with av.open(str(a)) as c:
        assert float(c.streams.audio[0].start_time * c.streams.audio[0].time_base) == 0.4
    np.testing.assert_array_equal(load_audio_like_ffmpeg(a), padded[0])
    np.testing.assert_array_equal(load_audio_like_ffmpeg(b), padded[0])
    ex = _extractors(model, lse_codecs=False)
    ra, rb = ex.compute("syncnet", a, None), ex.compute("syncnet", b, None)
    assert int(ra["windows"]) == int(rb["windows"]) == FRAMES - 5
    for key in ("lse_d", "lse_c", "offset"):
        assert ra[key] == rb[key], key


# ------------------------------------------------------------- F3: libswresample, not soxr


def test_lse_audio_is_ffmpegs_resampler_not_soxr(tmp_path, model, monkeypatch):
    """Stereo 48 kHz: the audio SyncNet gets equals PyAV's ``AudioResampler(s16, mono, 16000)``
    (FFmpeg's auto-inserted aresample, the CLI's ``-ac 1 -ar 16000 -acodec pcm_s16le``) of
    the decoded stream, and differs from the soxr path the data stage uses (``load_audio``,
    channel mean, soxr HQ, ``rint(x * 32768)``): rms about 1% of the signal's."""
    rate = 48000
    left = _speechy(FRAMES / FPS, rate)
    stereo = np.rint(np.stack([left, 0.6 * _speechy(FRAMES / FPS, rate, seed=2)]) * 32767)
    clip = _write_clip(tmp_path / "stereo.mkv", stereo.astype(np.int16), rate, "stereo", 0)
    resampler = av.AudioResampler(format="s16", layout="mono", rate=16000)
    with av.open(str(clip)) as c:
        chunks = [
            f.to_ndarray().reshape(-1) for fr in c.decode(audio=0) for f in resampler.resample(fr)
        ]
    chunks += [f.to_ndarray().reshape(-1) for f in resampler.resample(None)]
    expected = np.concatenate(chunks)
    fed = Fed(monkeypatch)
    _extractors(model, lse_codecs=False).compute("syncnet", clip, None)
    ((_, audio),) = fed.calls
    assert audio.dtype == np.int16
    np.testing.assert_array_equal(audio, expected)
    soxr = lip_sync.to_int16(load_audio(clip))
    n = min(len(soxr), len(audio))
    diff = np.abs(soxr[:n].astype(int) - audio[:n])
    assert diff.max() > 2  # not rounding: another resampler


def test_ffmpeg_s16_downmix_is_the_channel_mean(tmp_path):
    """L = 0.5, R = 0.25 full scale at 16 kHz (no resampling): s16 mono is their mean,
    0.375 * 32768 = 12288 (the 1/sqrt(2) gain is FFmpeg's for float output only)."""
    stereo = np.stack([np.full(16000, 16384), np.full(16000, 8192)]).astype(np.int16)
    clip = _write_clip(tmp_path / "dc.mkv", stereo, 16000, "stereo", 0)
    assert set(load_audio_like_ffmpeg(clip)[100:-100].tolist()) == {12288}


# --------------------------------------------------------- F2: run_pipeline's codec steps


def test_lse_codecs_feed_syncnet_what_run_pipeline_feeds_it(tmp_path, model, monkeypatch):
    """On (the default): the crops are the clean framing of run_pipeline's 25 fps images
    (16 kHz audio: the MP3 priming moves the video 2 images; frames 0 and 1 fill the gap) through
    the full-frame codecs (the clip's own decoded pictures, kept frames only; not the RGB
    frames re-encoded) and the crop video's, and the audio is
    ``avi_audio``'s; off: the clean crops of the same frame pick and the clean audio. The
    codecs cost about 30 dB PSNR (the crop video's MJPEG at 200 kb/s dominates)."""
    sound = np.rint(_speechy(FRAMES / FPS, 16000) * 32767).astype(np.int16)[None]
    clip = _write_clip(tmp_path / "clip.mkv", sound, 16000, "mono", 0)
    frames = _decoded(clip)
    fed = Fed(monkeypatch)
    assert EvalConfig().lse_codecs is True
    _extractors(model).compute("syncnet", clip, None)
    _extractors(model, lse_codecs=False).compute("syncnet", clip, None)
    (on, on_audio), (off, off_audio) = fed.calls

    np.testing.assert_array_equal(off, syncnet_input(frames, np.arange(FRAMES), "none").frames)
    np.testing.assert_array_equal(off_audio, load_audio_like_ffmpeg(clip))

    avi = avi_audio(clip)
    sources = avi_frame_sources(np.arange(FRAMES) / FPS, FPS, avi.source_rate)
    assert sources[:5].tolist() == [0, 0, 1, 1, 2]
    kept = np.unique(sources)
    with av.open(str(clip)) as c:  # the CLI encodes the clip's own decoded pictures
        pictures = [f for i, f in enumerate(c.decode(video=0)) if i in set(kept.tolist())]
    coded = frames.copy()
    coded[kept] = avi_pictures_round_trip(pictures)
    assert not np.array_equal(coded[kept], avi_frames_round_trip(frames[kept]))
    np.testing.assert_array_equal(
        on, crop_video_round_trip(syncnet_input(coded, sources, "none").frames)
    )
    np.testing.assert_array_equal(on_audio, avi.samples)
    clean = syncnet_input(frames, sources, "none").frames
    mse = np.mean((on.astype(float) - clean) ** 2)
    assert 20 < 10 * np.log10(255**2 / mse) < 45


def _decoded(clip: Path) -> np.ndarray:
    from asccl.evaluation.results import read_frames

    return read_frames(clip, 0)


def test_codecs_option_is_validated_recorded_and_captioned(tmp_path):
    with pytest.raises(ConfigError, match="lse_codecs"):
        EvalConfig(lse_codecs="yes")
    assert load_config(EvalConfig, None, ["--lse_codecs", "false"]).lse_codecs is False
    clip = tmp_path / "c.mp4"
    on = feature_recipe(EvalConfig(), "syncnet", clip, None, None)
    off = feature_recipe(replace(EvalConfig(), lse_codecs=False), "syncnet", clip, None, None)
    assert {k for k in on if on[k] != off.get(k)} == {"lse_codecs", "lse_audio"}
    assert "lse_audio" in on
    words = describe("track", "track", "pytorch-fid", 0.4, "dlib")
    assert "run_pipeline codecs" in words["lse"]
    off_words = describe("track", "track", "pytorch-fid", 0.4, "dlib", False)["lse"]
    assert "codec steps left out" in off_words and "run_pipeline codecs" not in off_words


def test_ffmpeg_generation_is_validated_recorded_and_captioned(tmp_path):
    """``lse_ffmpeg``: "4-6" by default, "7+" on request; another value is refused; the
    cache recipe and the LSE caption name it (another generation recomputes LSE)."""
    assert EvalConfig().lse_ffmpeg == "4-6"
    with pytest.raises(ConfigError, match=r"lse_ffmpeg.*'4-6', '7\+'"):
        EvalConfig(lse_ffmpeg="7")
    seven = load_config(EvalConfig, None, ["--lse_ffmpeg", "7+"])
    clip = tmp_path / "c.mp4"
    on = feature_recipe(EvalConfig(), "syncnet", clip, None, None)
    off = feature_recipe(seven, "syncnet", clip, None, None)
    assert {k for k in on if on[k] != off.get(k)} == {"lse_ffmpeg"}
    assert "ffmpeg 7+ makes them" in describe("track", "track", "pytorch-fid", 0.4, "dlib",
                                              True, "7+")["lse"]  # fmt: skip


def test_table_caption_follows_the_codecs_option():
    """The tables' caption names the LSE input procedure of the run's own config."""
    from asccl.evaluation.report import table_caption

    config = EvalConfig(metrics=("lse",))
    assert "run_pipeline codecs" in table_caption(config, "single")
    off = table_caption(replace(config, lse_codecs=False), "single")
    assert "codec steps left out" in off and "run_pipeline codecs" not in off
