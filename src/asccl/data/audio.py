"""Audio of stage 1: decode a clip's sound track, and compute one feature vector per video frame.

Decoding uses PyAV (FFmpeg), so MEAD's ``.m4a`` (AAC), ``.wav`` and the audio track of an
``.mp4`` all load the same way. Features follow the video frame grid so that a DTW path over
them is directly a path over video frames (see :func:`frame_features`).
"""

from __future__ import annotations

import functools
import itertools
import math
import os
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np

from asccl.data.errors import DataError
from asccl.optional import require


@dataclass(frozen=True)
class FeaturePreset:
    """What a feature kind fixes besides its arithmetic: the dtype :func:`frame_features`
    returns, and the tie rule of the DTW over those features (``asccl.data.dtw.TIE_RULES``).
    Both shape the frame pairs, so :meth:`settings` is recorded with every pair file."""

    dtype: str  #: "float32" or "float64"
    dtw_ties: str  #: "librosa" or "authors"

    def settings(self) -> dict[str, str]:
        """``{"feature_dtype": ..., "dtw_ties": ...}``: the pair settings this preset adds."""
        return {"feature_dtype": self.dtype, "dtw_ties": self.dtw_ties}


#: Feature kind of :func:`frame_features` -> its preset. ``mfcc_psf`` reproduces the
#: authors' released pair file: their float64 features (a float32 cast moves values by up
#: to 4e-6, enough to flip DTW ties) and their DTW's tie order; the others use librosa's.
FEATURE_PRESETS: dict[str, FeaturePreset] = {
    "mel": FeaturePreset("float32", "librosa"),
    "mfcc": FeaturePreset("float32", "librosa"),
    "mfcc_psf": FeaturePreset("float64", "authors"),
}

#: Feature kinds of :func:`frame_features`.
FEATURE_KINDS: tuple[str, ...] = tuple(FEATURE_PRESETS)

_AMIN = 1e-10  # power floor of the log-Mel, as librosa.power_to_db's default amin


def load_audio(path: str | os.PathLike, sample_rate: int = 16000) -> np.ndarray:
    """Decode the first audio stream of ``path`` to mono float32 at ``sample_rate``.

    Channels are averaged (as ``librosa.to_mono``; FFmpeg's downmix to 16-bit output also
    averages, its 1/sqrt(2) per channel applies to float output only), then resampled with
    soxr's high-quality mode, as ``librosa.load`` does by default (the authors' pair file was
    made that way). Sample 0 is the first decoded sample: the stream's start time is ignored,
    as ``librosa.load`` ignores it (a DTW pair of two tracks does not depend on it; MEAD's
    ``.m4a`` files start at 0). LSE places its audio on the video's clock instead:
    :func:`load_audio_like_ffmpeg`. The result is trimmed to the
    stream's declared duration when it runs over by at most one codec frame (AAC decoders
    emit whole 1024-sample frames, so 32000 samples come back as 32768 without it; MP4/M4A
    edit lists already drop the encoder's leading priming samples), and clipped to [-1, 1].

    Returns:
        ``(S,)`` float32 in [-1, 1], ``S ~= duration * sample_rate``.

    Raises:
        DataError: missing, empty or undecodable file, or one without an audio stream.
    """
    path = _checked_file(path, sample_rate)
    av = _import_av()
    with _open_audio(av, path, full_probe=False) as container:
        stream = container.streams.audio[0]
        try:
            audio, native_rate, codec_frame = _decode_mono(av, container, stream)
        except (av.FFmpegError, OSError, ValueError) as err:  # ValueError: layout changed
            raise DataError(path, f"corrupt audio stream ({_reason(err)})") from None
        declared = _declared_samples(stream, container, sample_rate)
    if len(audio) == 0:
        raise DataError(path, "audio stream decodes to no samples")
    if not np.all(np.isfinite(audio)):
        raise DataError(path, "audio holds NaN or infinite samples")
    if native_rate != sample_rate:
        audio = _resample(audio, native_rate, sample_rate)
    # Trim the padding of the last codec frame only: an excess of more than one frame means
    # the declared duration was an estimate (raw ADTS: from the bit rate), not the truth.
    excess = len(audio) - (declared or 0)
    if declared and 0 < excess <= math.ceil(codec_frame * sample_rate / native_rate) + 1:
        audio = audio[:declared]
    return np.clip(audio, -1.0, 1.0).astype(np.float32, copy=False)


def load_audio_like_ffmpeg(path: str | os.PathLike, sample_rate: int = 16000) -> np.ndarray:
    """Decode the first audio stream of ``path`` as syncnet_python's ``ffmpeg -y -i <clip>
    -async 1 -ac 1 -vn -acodec pcm_s16le -ar <sample_rate>`` writes it: ``(S,)`` int16.

    The same FFmpeg filters run through PyAV: ``aresample=async=1:first_pts=0`` (what
    ``-async 1`` inserts) feeding ``aformat`` to s16 mono at ``sample_rate``, so libswresample
    does the downmix (a channel mean for s16 output), the resampling (its default filter, not
    soxr) and the rounding, as the ffmpeg CLI does. Each decoded frame keeps its time minus the
    container's start time (as the CLI offsets its inputs), so sample ``k`` is at ``k /
    sample_rate`` s on the clip's clock: a track that starts late is preceded by silence, one
    that starts early loses its first samples. A separate sound file's start time is relative
    to its own container. Nothing is trimmed at the end (the CLI keeps every decoded sample).

    Raises:
        DataError: missing, empty or undecodable file, or one without an audio stream.
    """
    path = _checked_file(path, sample_rate)
    av = _import_av()
    with _open_audio(av, path, full_probe=True) as container:
        start = Fraction(container.start_time or 0, 1_000_000)  # av.time_base units -> s
        try:
            audio = _decode_like_ffmpeg(av, container, container.streams.audio[0], start,
                                        sample_rate)  # fmt: skip
        except (av.FFmpegError, OSError, ValueError) as err:  # ValueError: format changed
            raise DataError(path, f"corrupt audio stream ({_reason(err)})") from None
    if len(audio) == 0:
        raise DataError(path, "audio stream decodes to no samples")
    return audio


def _decode_like_ffmpeg(av, container, stream, start: Fraction, sample_rate: int) -> np.ndarray:
    """``(S,)`` int16: ``stream``'s frames, timed from ``start`` s, through ``-async 1``'s
    ``aresample`` and an ``aformat`` to s16 mono at ``sample_rate``."""
    graph, chunks = None, []

    def drain() -> None:
        while True:
            try:
                chunks.append(graph.pull().to_ndarray().reshape(-1))
            except (av.BlockingIOError, av.EOFError):
                return

    for frame in _frames_on_clock(container, stream, start):
        if graph is None:
            shape = (frame.format.name, frame.sample_rate, frame.layout.name)
            graph = _ffmpeg_cli_graph(av, *shape, sample_rate)
        graph.push(frame)
        drain()
    if graph is None:
        return np.zeros(0, np.int16)
    graph.push(None)
    drain()
    return np.concatenate(chunks).astype(np.int16, copy=False) if chunks else np.zeros(0, np.int16)


def _frames_on_clock(container, stream, start: Fraction):
    """``stream``'s decoded frames, each one's pts set to its time minus ``start`` s in samples
    (time base 1/rate: the CLI offsets its inputs by the start time and rescales), a frame
    without a pts following on from the one before. ValueError when the format changes."""
    first, next_pts = None, 0
    for frame in container.decode(stream):
        shape = (frame.format.name, frame.sample_rate, frame.layout.name)
        if first is None:
            first = shape
        elif shape != first:
            raise ValueError(f"audio format changes from {first} to {shape}")
        if frame.pts is not None and frame.time_base is not None:
            # the frame's time on the clip's clock, in samples (the CLI rescales to 1/rate)
            next_pts = round((frame.pts * frame.time_base - start) * frame.sample_rate)
        frame.pts, frame.time_base = next_pts, Fraction(1, frame.sample_rate)
        next_pts += frame.samples
        yield frame


def _ffmpeg_cli_graph(
    av,
    sample_format: str,
    rate: int,
    layout: str,
    sample_rate: int,
    resample: str = "async=1:first_pts=0",
    convert: str | None = None,
):
    """abuffer (time base 1/rate) -> aresample ``resample`` (default: what ``-async 1`` adds)
    -> aformat ``convert`` (default: s16 mono ``sample_rate``) -> abuffersink, configured."""
    graph = av.filter.Graph()
    source = graph.add_abuffer(
        format=sample_format, sample_rate=rate, layout=layout, time_base=Fraction(1, rate)
    )
    convert = convert or f"sample_fmts=s16:channel_layouts=mono:sample_rates={sample_rate}"
    chain = [source, graph.add("aresample", resample),
             graph.add("aformat", convert), graph.add("abuffersink")]  # fmt: skip
    for a, b in itertools.pairwise(chain):
        a.link_to(b)
    graph.configure()
    return graph


def _checked_file(path: str | os.PathLike, sample_rate: int) -> Path:
    """``path`` as a Path: a non-empty file (else :class:`DataError`); ``sample_rate > 0``."""
    path = Path(path)
    if not path.exists():
        raise DataError(path, "no such file")
    if not path.is_file():
        raise DataError(path, "not a file")
    if path.stat().st_size == 0:
        raise DataError(path, "empty file")
    if sample_rate <= 0:
        raise ValueError(f"sample_rate must be positive, got {sample_rate}")
    return path


#: Peak amplitude at or below which a track is silent: one step of 16-bit PCM.
SILENCE_PEAK = 2.0**-15


def require_alignable(
    audio: np.ndarray,
    path: str | os.PathLike,
    sample_rate: int,
    fps: float,
    min_frames: int = 2,
) -> None:
    """Refuse a track DTW cannot align meaningfully: :class:`DataError` naming ``path``.

    ``audio`` ``(S,)`` (from :func:`load_audio`) must span at least ``min_frames`` video
    frames at ``fps`` (:func:`num_video_frames`) and must not be silent (a peak amplitude of
    at most :data:`SILENCE_PEAK`: every feature frame would then be the same, and any
    warping path as cheap as any other).
    """
    frames = num_video_frames(len(audio), sample_rate, fps)
    if frames < min_frames:
        raise DataError(
            path,
            f"audio too short for DTW ({len(audio) / sample_rate:.3f} s = {frames} video "
            f"frame(s) at {fps:g} fps; need at least {min_frames})",
        )
    peak = float(np.max(np.abs(audio))) if len(audio) else 0.0
    if peak <= SILENCE_PEAK:
        raise DataError(path, f"silent audio track (peak amplitude {peak:.2g}): nothing to align")


def num_video_frames(num_samples: int, sample_rate: float, fps: float) -> int:
    """Frames of a ``fps`` video as long as ``num_samples`` of audio: ``ceil(duration * fps)``.

    Frame k is shown from k/fps on, so every frame that starts before the sound ends counts.
    A 1e-6-frame tolerance absorbs float error (64000 samples at 16 kHz, 30 fps -> 120).
    """
    return max(0, math.ceil(num_samples * fps / sample_rate - 1e-6))


def frame_features(
    audio: np.ndarray,
    sample_rate: int,
    fps: float,
    kind: str = "mel",
    n_mels: int = 80,
    n_mfcc: int = 13,
    *,
    window_s: float = 0.025,
) -> np.ndarray:
    """One feature vector per video frame: ``(T, D)``, ``T = num_video_frames(...)``, of
    the dtype of the kind's preset (:data:`FEATURE_PRESETS`: float32, float64 for
    ``"mfcc_psf"``).

    The hop is ``sample_rate / fps`` samples, which need not be an integer (16000 / 30 =
    533.33): instead of rounding the hop (whose error accumulates: 40 samples over 4 s),
    frame k is an analysis window centred on sample ``round(k * sample_rate / fps)``, the
    instant video frame k is shown, with the signal zero-padded at both ends (librosa's
    ``center=True``). With an integer hop this equals librosa's STFT frame for frame.

    Kinds:
        ``"mel"``: log-Mel power in dB, ``10 log10(max(S, 1e-10))`` with no ``top_db``
            clipping (so values compare across clips); Hann window of ``window_s`` seconds,
            FFT size the next power of two, librosa's Slaney Mel filterbank. D = ``n_mels``.
        ``"mfcc"``: the first ``n_mfcc`` coefficients of the orthonormal DCT-II of that
            log-Mel (``librosa.feature.mfcc`` of it). D = ``n_mfcc``.
        ``"mfcc_psf"``: python_speech_features' MFCC with the settings of the authors'
            released pair file (13 coefficients, 25 ms window, 26 filters, FFT 512,
            pre-emphasis 0.97, lifter 22, log energy as coefficient 0), called as they did
            with ``winstep=1/fps``. For reproduction only: its frames *start* at
            ``k * round(sample_rate / fps)`` and its T is its own,
            ``1 + ceil((S - win) / hop)``, often one more than the video has. float64,
            as python_speech_features returns it and the authors aligned it.

    Args:
        audio: ``(S,)`` float mono samples in [-1, 1].
        sample_rate: of ``audio``, Hz.
        fps: video frame rate.
    """
    if kind not in FEATURE_KINDS:
        raise ValueError(f"unknown feature kind {kind!r}; valid: {', '.join(FEATURE_KINDS)}")
    audio = np.asarray(audio)
    if audio.ndim != 1:
        raise ValueError(f"audio must be (S,) mono samples, got shape {audio.shape}")
    if sample_rate <= 0 or fps <= 0:
        raise ValueError(f"sample_rate and fps must be positive, got {sample_rate}, {fps}")
    if kind == "mfcc_psf":
        return _psf_mfcc(audio, sample_rate, fps)
    win_length = round(window_s * sample_rate)
    n_fft = 1 << max(0, win_length - 1).bit_length()
    power = _framed_power(audio, sample_rate, fps, n_fft, win_length)  # (T, F)
    mel = np.asarray(power @ _mel_basis(sample_rate, n_fft, n_mels))  # (T, n_mels)
    log_mel = 10.0 * np.log10(np.maximum(mel, _AMIN))
    dtype = FEATURE_PRESETS[kind].dtype
    if kind == "mel":
        return log_mel.astype(dtype)
    if not 1 <= n_mfcc <= n_mels:
        raise ValueError(f"n_mfcc must be in 1..n_mels={n_mels}, got {n_mfcc}")
    from scipy.fft import dct

    return dct(log_mel, type=2, norm="ortho", axis=-1)[:, :n_mfcc].astype(dtype)


def _framed_power(
    audio: np.ndarray, sample_rate: float, fps: float, n_fft: int, win_length: int
) -> np.ndarray:
    """``(T, n_fft // 2 + 1)`` power spectra of Hann windows centred on each video frame."""
    num_frames = num_video_frames(len(audio), sample_rate, fps)
    centres = np.rint(np.arange(num_frames) * (sample_rate / fps)).astype(np.int64)  # (T,)
    half = n_fft // 2
    padded = np.pad(audio.astype(np.float32, copy=False), (half, n_fft - half + 1))
    frames = padded[centres[:, None] + np.arange(n_fft)]  # (T, n_fft), centre at index half
    spectrum = np.fft.rfft(frames * _window(n_fft, win_length), axis=-1)
    return (spectrum.real**2 + spectrum.imag**2).astype(np.float32)


@functools.lru_cache(maxsize=8)
def _window(n_fft: int, win_length: int) -> np.ndarray:
    """Periodic Hann of ``win_length`` zero-padded to ``n_fft``, centred (librosa's stft)."""
    hann = 0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(win_length) / win_length)
    left = (n_fft - win_length) // 2
    return np.pad(hann, (left, n_fft - win_length - left)).astype(np.float32)


@functools.lru_cache(maxsize=8)
def _mel_basis(sample_rate: int, n_fft: int, n_mels: int):
    """``(n_fft // 2 + 1, n_mels)`` librosa's Slaney-normalised Mel filterbank, as a sparse
    matrix: about 2% of it is non-zero, and a dense BLAS product of this size is slower
    (and, when other processes hold the cores, waits milliseconds on its threads)."""
    from scipy.sparse import csr_array

    librosa = require("librosa", "Mel features need librosa")

    basis = librosa.filters.mel(sr=sample_rate, n_fft=n_fft, n_mels=n_mels)  # (n_mels, F)
    return csr_array(basis.T.astype(np.float32))


def _psf_mfcc(audio: np.ndarray, sample_rate: int, fps: float) -> np.ndarray:
    psf = require("python_speech_features", "kind='mfcc_psf' needs python_speech_features")
    feats = psf.mfcc(audio.astype(np.float64), samplerate=sample_rate, winstep=1.0 / fps)
    return np.asarray(feats, dtype=np.float64)  # not float32: that would move DTW ties


def _open_audio(av, path: Path, *, full_probe: bool):
    """``path`` opened, with an audio stream (else :class:`DataError`, the container closed).
    ``full_probe``: FFmpeg's default probe, which the container's start time needs; else
    :func:`_open`'s small one first."""
    try:
        container = av.open(str(path)) if full_probe else _open(av, path)
    except (av.FFmpegError, OSError) as err:
        raise DataError(path, f"cannot be opened as audio or video ({_reason(err)})") from None
    if not container.streams.audio:
        kinds = ", ".join(s.type for s in container.streams) or "none"
        container.close()
        raise DataError(path, f"no audio stream (streams: {kinds})")
    return container


def _open(av, path: Path):
    """Open with a 4 KiB probe, which is enough for headers that describe their streams (WAV,
    MP4/M4A) and saves FFmpeg's default 5 MB read (9 ms per WAV); reopen with the default
    probe when that leaves no audio stream or one without a rate or channel count (MPEG-TS,
    raw ADTS or MP3 without headers need to decode packets to know those)."""
    container = av.open(str(path), options={"probesize": "4096"})
    audio = container.streams.audio
    if audio and audio[0].codec_context.sample_rate > 0 and audio[0].codec_context.channels > 0:
        return container
    container.close()
    return av.open(str(path))


#: Sample formats read straight from the frame (name without the planar "p") -> scale to
#: [-1, 1): libsndfile's and FFmpeg's conventions. Others go through FFmpeg's converter.
_DIRECT_FORMATS: dict[str, float] = {"flt": 1.0, "dbl": 1.0, "s16": 2.0**-15, "s32": 2.0**-31}


def _decode_mono(av, container, stream) -> tuple[np.ndarray, int, int]:
    """Decode ``stream``: ``(S,)`` float32 channel mean at the native rate, that rate, and the
    longest decoded frame in samples."""
    chunks: list[np.ndarray] = []
    converter = None
    native_rate, codec_frame = 0, 0
    for frame in container.decode(stream):
        if native_rate and frame.sample_rate != native_rate:
            raise ValueError(f"sample rate changes from {native_rate} to {frame.sample_rate} Hz")
        native_rate, codec_frame = frame.sample_rate, max(codec_frame, frame.samples)
        if frame.format.name.rstrip("p") in _DIRECT_FORMATS:
            chunks.append(_frame_mono(frame))
        else:
            converter = converter or av.AudioResampler(format="fltp")
            chunks.extend(_frame_mono(f) for f in converter.resample(frame))
    if converter is not None:
        chunks.extend(_frame_mono(f) for f in converter.resample(None))
    audio = np.concatenate(chunks) if chunks else np.zeros(0, np.float32)
    return audio, native_rate, codec_frame


def _frame_mono(frame) -> np.ndarray:
    """``(S_i,)`` float32 mean of a frame's channels, scaled to [-1, 1)."""
    name = frame.format.name
    scale = _DIRECT_FORMATS[name.rstrip("p")]
    samples = frame.to_ndarray()  # planar: (C, S_i); packed: (1, S_i * C) interleaved
    channels = len(frame.layout.channels)
    if not name.endswith("p"):
        samples = samples.reshape(-1, channels).T
    mono = samples[0] if channels == 1 else samples.mean(axis=0)
    return (mono * scale).astype(np.float32, copy=False)


def _resample(audio: np.ndarray, rate_in: int, rate_out: int) -> np.ndarray:
    """soxr's high-quality resampler, as ``librosa.load`` (its default ``res_type``), with
    the length set to ``ceil(S * rate_out / rate_in)`` as librosa does."""
    soxr = require("soxr", "resampling audio needs soxr")
    out = soxr.resample(audio, rate_in, rate_out, quality="HQ")
    length = math.ceil(len(audio) * rate_out / rate_in)
    return np.pad(out, (0, max(0, length - len(out))))[:length].astype(np.float32, copy=False)


def _declared_samples(stream, container, sample_rate: int) -> int | None:
    """Samples at ``sample_rate`` of the stream's (else the container's) declared duration."""
    if stream.duration is not None and stream.time_base is not None:
        seconds = float(stream.duration * stream.time_base)
    elif container.duration is not None:
        seconds = container.duration / 1_000_000  # av.time_base
    else:
        return None
    return round(seconds * sample_rate)


def _reason(err: BaseException) -> str:
    """FFmpeg's message without the errno and the repeated file name."""
    return str(getattr(err, "strerror", None) or err).strip() or type(err).__name__


def _import_av():
    return require("av", "audio decoding needs PyAV")
