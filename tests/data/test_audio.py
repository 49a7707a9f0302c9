"""load_audio (PyAV decoding, trimming, errors) and frame_features (video-grid features),
against librosa as the reference."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from asccl.data.audio import (
    FEATURE_KINDS,
    FEATURE_PRESETS,
    SILENCE_PEAK,
    frame_features,
    load_audio,
    num_video_frames,
    require_alignable,
)
from asccl.data.errors import DataError

av = pytest.importorskip("av")
librosa = pytest.importorskip("librosa")

SR = 16000


def chirp(num_samples: int, sample_rate: int = SR, gate_hz: float = 3.0) -> np.ndarray:
    """A gated rising chirp: not periodic, so a wrong offset or stretch shows."""
    t = np.arange(num_samples) / sample_rate
    gate = np.sin(2 * np.pi * gate_hz * t) > 0
    return (0.4 * np.sin(2 * np.pi * (200 * t + 600 * t**2)) * gate).astype(np.float32)


PACK = {  # float samples in [-1, 1] -> a packed PCM sample format
    "s16": lambda x: (x * 32767).round().astype(np.int16),
    "s32": lambda x: (x * (2**31 - 1)).round().astype(np.int32),
    "flt": lambda x: x.astype(np.float32),
    "u8": lambda x: (x * 127 + 128).round().astype(np.uint8),
}


def write_audio(
    path: Path, channels: np.ndarray, sample_rate: int, codec: str, video: bool = False
) -> Path:
    """Encode ``(C, S)`` float samples with PyAV (``pcm_s16le`` -> WAV, ``aac`` -> MP4/M4A)."""
    layout = {1: "mono", 2: "stereo"}[len(channels)]
    with av.open(str(path), "w") as container:
        if video:
            vstream = container.add_stream("mpeg4", rate=30)
            vstream.width, vstream.height, vstream.pix_fmt = 32, 32, "yuv420p"
        stream = container.add_stream(codec, rate=sample_rate, layout=layout)
        fmt = stream.format.name
        for start in range(0, channels.shape[1], 1024):
            chunk = channels[:, start : start + 1024]
            if fmt == "fltp":  # planar: (C, S)
                data = np.ascontiguousarray(chunk, dtype=np.float32)
            else:  # packed: (1, S * C) interleaved
                data = PACK[fmt](np.clip(chunk, -1, 1)).T.reshape(1, -1)
            frame = av.AudioFrame.from_ndarray(data, format=fmt, layout=layout)
            frame.sample_rate, frame.pts = sample_rate, start
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
        if video:
            for _ in range(round(channels.shape[1] / sample_rate * 30)):
                image = np.zeros((32, 32, 3), np.uint8)
                container.mux(vstream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
            container.mux(vstream.encode(None))
    return path


def best_lag(y: np.ndarray, x: np.ndarray, max_lag: int = 1200) -> int:
    """The shift of ``y`` against ``x`` that correlates best (positive: ``y`` is late)."""
    n = min(len(x), len(y)) - 2 * max_lag
    scores = [np.dot(y[max_lag + lag : max_lag + lag + n], x[max_lag : max_lag + n])
              for lag in range(-max_lag, max_lag + 1)]  # fmt: skip
    return int(np.argmax(scores)) - max_lag


# ----------------------------------------------------------------------------- load_audio


def test_wav_loads_exactly(tmp_path):
    x = chirp(32000)
    y = load_audio(write_audio(tmp_path / "a.wav", x[None], SR, "pcm_s16le"))
    assert y.dtype == np.float32 and y.shape == (32000,)
    np.testing.assert_allclose(y, x, atol=1.0 / 32767)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # audioread's imports, in librosa
@pytest.mark.parametrize("codec", ["pcm_s16le", "pcm_s32le", "pcm_f32le", "pcm_u8"])
def test_wav_equals_librosa_load(tmp_path, codec):
    """48 kHz stereo WAV -> 16 kHz mono: the same samples as librosa.load (soxr HQ)."""
    x = chirp(48000 * 2, sample_rate=48000)
    path = write_audio(tmp_path / "s.wav", np.stack([x, -0.5 * x[::-1]]), 48000, codec)
    y = load_audio(path)
    ref = librosa.load(path, sr=SR)[0]
    assert y.shape == ref.shape == (32000,)
    np.testing.assert_allclose(y, ref, atol=1e-6)


def test_m4a_is_trimmed_to_its_duration_and_not_shifted(tmp_path):
    x = chirp(32000)
    path = write_audio(tmp_path / "a.m4a", x[None], SR, "aac")
    with av.open(str(path)) as c:  # the decoder really pads to whole AAC frames
        assert sum(f.samples for f in c.decode(c.streams.audio[0])) == 32768
    y = load_audio(path)
    assert y.shape == (32000,)
    assert best_lag(y, x) == 0
    assert np.corrcoef(y, x)[0, 1] > 0.95


def test_mp4_audio_track_stereo_is_averaged(tmp_path):
    x = chirp(32000)
    path = write_audio(tmp_path / "v.mp4", np.stack([x, np.zeros_like(x)]), SR, "aac", video=True)
    y = load_audio(path)
    assert y.shape == (32000,)
    # Mean of the channels: half the left one (FFmpeg's own downmix would give 0.707, the
    # left channel alone 1). With y = 0.5 x + e (e: AAC's error), gain - 0.5 = <e, x> / <x, x>,
    # so |gain - 0.5| <= |e| / |x| (Cauchy-Schwarz). AAC at its default bit rate keeps
    # |e| / |0.5 x| near 1 % (measured 1.3 % on this fixed chirp and encoder): bound 6.7e-3.
    # abs=0.02 is 3x that (measured |gain - 0.5| = 7.3e-4) and 10x below 0.707 - 0.5.
    gain = np.dot(y, x) / np.dot(x, x)
    assert gain == pytest.approx(0.5, abs=0.02)


def test_resamples_48k_stereo_wav(tmp_path):
    sr_in, seconds = 48000, 1.5
    t = np.arange(int(sr_in * seconds)) / sr_in
    left, right = 0.5 * np.sin(2 * np.pi * 440 * t), 0.3 * np.sin(2 * np.pi * 440 * t)
    y = load_audio(write_audio(tmp_path / "b.wav", np.stack([left, right]), sr_in, "pcm_s16le"))
    assert abs(len(y) - int(SR * seconds)) <= 1
    spectrum = np.abs(np.fft.rfft(y))
    assert np.argmax(spectrum) * SR / len(y) == pytest.approx(440, abs=2)
    middle = y[2000:-2000]  # away from the resampler's edges
    assert np.abs(middle).max() == pytest.approx(0.4, abs=0.01)  # (0.5 + 0.3) / 2
    assert load_audio(tmp_path / "b.wav", sample_rate=8000).shape[0] == pytest.approx(12000, abs=1)


def test_an_estimated_duration_does_not_cut_audio(tmp_path):
    """Raw ADTS AAC declares a duration guessed from the bit rate: keep every sample."""
    x = chirp(32000)
    y = load_audio(write_audio(tmp_path / "a.aac", x[None], SR, "aac"))
    assert len(y) >= 32000
    assert np.corrcoef(y[1024 : 1024 + 30000], x[:30000])[0, 1] > 0.9  # 1024 priming samples


def _assert_one_line_error(path: Path, fragment: str) -> None:
    with pytest.raises(DataError) as info:
        load_audio(path)
    message = str(info.value)
    assert message.startswith(str(path)), message
    assert fragment in message, message
    assert "\n" not in message
    assert info.value.__cause__ is None  # no FFmpeg traceback chained to it


def test_errors_missing_dir_empty(tmp_path):
    _assert_one_line_error(tmp_path / "nope.m4a", "no such file")
    _assert_one_line_error(tmp_path, "not a file")
    (tmp_path / "empty.wav").write_bytes(b"")
    _assert_one_line_error(tmp_path / "empty.wav", "empty file")


@pytest.mark.parametrize("name", ["random.m4a", "random.wav", "text.mp4"])
def test_errors_undecodable(tmp_path, name):
    path = tmp_path / name
    rng = np.random.default_rng(0)
    path.write_bytes(b"hello\n" * 500 if name.startswith("text") else rng.bytes(20000))
    _assert_one_line_error(path, "cannot be opened")


def test_error_truncated_m4a(tmp_path):
    data = write_audio(tmp_path / "a.m4a", chirp(32000)[None], SR, "aac").read_bytes()
    (tmp_path / "half.m4a").write_bytes(data[: len(data) // 2])  # the index (moov) is at the end
    _assert_one_line_error(tmp_path / "half.m4a", "cannot be opened")


def test_error_corrupt_packets(tmp_path):
    data = bytearray(write_audio(tmp_path / "a.m4a", chirp(32000)[None], SR, "aac").read_bytes())
    data[3000:6000] = np.random.default_rng(0).bytes(3000)
    (tmp_path / "bad.m4a").write_bytes(bytes(data))
    _assert_one_line_error(tmp_path / "bad.m4a", "corrupt audio stream")


def test_error_video_without_audio(tmp_path):
    path = tmp_path / "silent.mp4"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=30)
        stream.width, stream.height, stream.pix_fmt = 32, 32, "yuv420p"
        for _ in range(5):
            image = np.zeros((32, 32, 3), np.uint8)
            container.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
        container.mux(stream.encode(None))
    _assert_one_line_error(path, "no audio stream (streams: video)")


def test_error_nan_samples(tmp_path):
    x = chirp(16000)
    x[5000] = np.nan
    path = write_audio(tmp_path / "nan.wav", x[None], SR, "pcm_f32le")
    _assert_one_line_error(path, "NaN or infinite samples")


def test_require_alignable_names_the_file(tmp_path):
    path = tmp_path / "clip.m4a"
    require_alignable(chirp(16000), path, SR, 30)  # one second of sound: fine
    # 534 samples at 30 fps span 2 frames (frame 1 starts at sample 533.3): the minimum
    require_alignable(np.full(534, 0.1, np.float32), path, SR, 30)
    for short in (np.zeros(0, np.float32), np.full(533, 0.1, np.float32)):
        with pytest.raises(DataError, match="audio too short for DTW") as info:
            require_alignable(short, path, SR, 30)
        assert info.value.path == str(path)
    # silence: at most one 16-bit step, however long; one step more is sound
    for quiet in (np.zeros(32000, np.float32), np.full(32000, SILENCE_PEAK, np.float32)):
        with pytest.raises(DataError, match=r"^.*clip\.m4a: silent audio track"):
            require_alignable(quiet, path, SR, 30)
    require_alignable(np.full(32000, 2 * SILENCE_PEAK, np.float32), path, SR, 30)


# ----------------------------------------------------------------------------- frame_features


def test_num_video_frames():
    assert num_video_frames(64000, 16000, 30) == 120
    assert num_video_frames(64001, 16000, 30) == 121
    assert num_video_frames(63999, 16000, 30) == 120
    assert num_video_frames(533, 16000, 30) == 1
    assert num_video_frames(0, 16000, 30) == 0
    assert num_video_frames(16000 * 4, 16000, 30000 / 1001) == 120  # 119.88 frames start


@pytest.mark.filterwarnings("ignore:n_fft=512 is too large")
@pytest.mark.parametrize("num_samples", [64000, 64123, 400])
def test_mel_and_mfcc_equal_librosa_on_an_integer_hop(num_samples):
    x = chirp(num_samples) + 0.01 * np.random.default_rng(0).standard_normal(num_samples)
    x = x.astype(np.float32)
    mel = frame_features(x, SR, fps=25)  # hop 640
    assert mel.dtype == np.float32 and mel.shape == (num_video_frames(num_samples, SR, 25), 80)
    power = librosa.feature.melspectrogram(
        y=x, sr=SR, n_fft=512, hop_length=640, win_length=400, n_mels=80
    )
    ref = librosa.power_to_db(power, top_db=None)
    np.testing.assert_allclose(mel, ref.T[: len(mel)], atol=1e-3)
    mfcc = frame_features(x, SR, fps=25, kind="mfcc")
    ref_mfcc = librosa.feature.mfcc(S=ref, n_mfcc=13)
    np.testing.assert_allclose(mfcc, ref_mfcc.T[: len(mfcc)], atol=1e-2)


def test_non_integer_hop_centres_each_frame_on_its_video_instant():
    """At 30 fps the hop is 533.33 samples: frame k must be librosa's frame centred on sample
    round(k * 16000 / 30), read off a hop-1 STFT, with no drift along the clip."""
    x = chirp(8000) + 0.01 * np.random.default_rng(1).standard_normal(8000).astype(np.float32)
    mel = frame_features(x, SR, fps=30, n_mels=40)
    assert mel.shape == (15, 40)
    power = librosa.feature.melspectrogram(
        y=x, sr=SR, n_fft=512, hop_length=1, win_length=400, n_mels=40
    )
    centres = np.rint(np.arange(15) * SR / 30).astype(int)
    ref = librosa.power_to_db(power, top_db=None)[:, centres].T
    np.testing.assert_allclose(mel, ref, atol=1e-3)
    rounded_hop = librosa.power_to_db(power, top_db=None)[:, np.arange(15) * 533].T
    assert np.abs(mel[-1] - rounded_hop[-1]).max() > 1e-2  # a rounded hop would drift


def test_frame_features_validation():
    x = np.zeros(1600, np.float32)
    assert frame_features(x, SR, 30).shape == (3, 80)  # silence: finite, at the floor
    assert np.isfinite(frame_features(x, SR, 30)).all()
    assert frame_features(x[:0], SR, 30).shape == (0, 80)
    with pytest.raises(ValueError, match="mel, mfcc"):
        frame_features(x, SR, 30, kind="spectrogram")
    with pytest.raises(ValueError, match=r"\(2, 800\)"):
        frame_features(x.reshape(2, 800), SR, 30)
    with pytest.raises(ValueError, match="n_mfcc"):
        frame_features(x, SR, 30, kind="mfcc", n_mfcc=100, n_mels=40)
    assert set(FEATURE_KINDS) == {"mel", "mfcc", "mfcc_psf"}


def test_mfcc_psf_matches_the_authors_call():
    psf = pytest.importorskip("python_speech_features")
    x = chirp(64000)
    feats = frame_features(x, SR, 30, kind="mfcc_psf")
    assert feats.shape == (121, 13)  # psf's own T: 1 + ceil((64000 - 400) / 533)
    ref = psf.mfcc(x.astype(np.float64), SR, winstep=1 / 30)
    # float64 and bit-equal to the authors' call: a float32 cast would move values by up to
    # ~|value| * 2**-24 (4e-6 on MFCCs of tens), enough to flip DTW ties
    assert feats.dtype == np.float64
    np.testing.assert_array_equal(feats, ref)


@pytest.mark.parametrize("kind", FEATURE_KINDS)
def test_features_have_their_presets_dtype(kind):
    if kind == "mfcc_psf":
        pytest.importorskip("python_speech_features")
    feats = frame_features(chirp(16000), SR, 30, kind=kind)
    assert feats.dtype == np.dtype(FEATURE_PRESETS[kind].dtype)
    assert FEATURE_PRESETS[kind].settings() == {
        "feature_dtype": FEATURE_PRESETS[kind].dtype, "dtw_ties": FEATURE_PRESETS[kind].dtw_ties,
    }  # fmt: skip
