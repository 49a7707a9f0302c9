"""The audio syncnet_python's SyncNet hears: the reference's chain, emulated with PyAV.

syncnet_python's ``run_pipeline.py`` first rewrites a clip as ``pyavi/video.avi`` (``ffmpeg -y -i
clip -qscale:v 2 -async 1 -r 25 video.avi``), whose audio the AVI muxer's default encoder,
libmp3lame, stores as MP3; ``audio.wav`` is then cut from that AVI (``ffmpeg -y -i video.avi -ac 1
-vn -acodec pcm_s16le -ar 16000 audio.wav``). So SyncNet hears MP3-coded sound, delayed by the
encoder's priming (AVI has no field to tell a decoder to skip it). :func:`avi_audio` reproduces
those two commands sample for sample (``tests/evaluation/test_syncnet_audio.py`` compares it with
recordings of the ffmpeg 5.1 CLI) and the final ``-async 1`` of ``evaluate``, which is the identity
on this continuous 16 kHz mono PCM. The track's cut (``-ss``/``-to``) is left to the caller.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from fractions import Fraction

import numpy as np

from asccl.data.audio import (
    _checked_file,
    _ffmpeg_cli_graph,
    _frames_on_clock,
    _import_av,
    _open_audio,
    _reason,
)
from asccl.data.errors import DataError

#: SyncNet's audio rate (``-ar 16000``).
SYNCNET_AUDIO_RATE = 16000

#: What the CLI's ``-async 1`` adds (ffmpeg 5.1 logs it in these words).
CLI_ASYNC = "async=1:min_hard_comp=0.100000:first_pts=0"

#: The AVI muxer's default audio encoder when FFmpeg has LAME (as Debian's and PyAV's have).
AVI_AUDIO_ENCODER = "libmp3lame"

#: The decoder ffmpeg picks for MP3 by codec id: the float one (the decoder *named* "mp3" is
#: the fixed-point one, whose output differs).
MP3_DECODER = "mp3float"

#: Sample formats of at most 2 bytes: ffmpeg 5.1's libswresample resamples between two such
#: formats in 16-bit integers (its "Using s16p internally"), FFmpeg 8's in float; the two
#: differ by 1 LSB on ~10-15% of resampled samples, so the emulation asks for s16p itself.
_SHORT_FORMATS = frozenset({"u8", "u8p", "s16", "s16p"})


@dataclass(frozen=True)
class AviAudio:
    """Step 1 + 3 of syncnet_python's pipeline for one clip, before the track's cut.

    Attributes:
        samples: ``(S,)`` int16 mono at 16 kHz, sample ``k`` at ``k / 16000`` s on the AVI's
            clock (the clip's clock plus the priming delay: a click at t = 0 in the clip is at
            ``priming / source_rate`` s here).
        source_rate: the rate the MP3 was coded at (the clip's, or the nearest rate LAME takes).
        priming: the encoder's initial padding in samples at ``source_rate`` (1105 for LAME
            3.100: its 576-sample delay + the decoder's 529), read from the encoder.
        start: where the audio stream starts on the clip's clock, seconds (its first
            timestamp minus the container's start time); FFmpeg 4-6 pad it to 0, 7+ do not.
    """

    samples: np.ndarray
    source_rate: int
    priming: int
    start: float = 0.0

    @property
    def priming_seconds(self) -> float:
        """The delay the MP3 step adds to every sound, in seconds."""
        return self.priming / self.source_rate


def avi_audio(path: str | os.PathLike, ffmpeg: str = "4-6") -> AviAudio:
    """What syncnet_python's SyncNet gets as audio for ``path`` (a video with an audio stream,
    or a sound file), before the track cut: ``ffmpeg -i path -async 1 video.avi`` (MP3 by
    libmp3lame at LAME's default CBR rate) then ``ffmpeg -i video.avi -ac 1 -vn -acodec
    pcm_s16le -ar 16000``, emulated with PyAV.

    Step 1 decodes the first audio stream on the clip's clock (times minus the container's
    start time, as :func:`asccl.data.audio.load_audio_like_ffmpeg`), runs ``aresample`` with
    the CLI's ``-async 1`` options into the formats the encoder takes (libavfilter picks as the
    CLI's does: the nearest sample rate LAME supports, e.g. 96 kHz -> 48 kHz and 7 kHz -> 8 kHz;
    more than 2 channels are downmixed to stereo), encodes in 1152/576-sample frames and
    decodes the packets with the float MP3 decoder without skipping the priming. Step 3
    converts that to s16 mono 16 kHz with libswresample's defaults.

    ``ffmpeg``: the FFmpeg whose CLI to follow (:data:`~asccl.evaluation.syncnet_timing.
    FFMPEG_BEHAVIOURS`): ``"4-6"`` pads an audio stream that starts late with silence from the
    clip's start (``-async 1``'s ``first_pts=0``); ``"7+"`` does not: the AVI's audio begins
    with the stream's first sample (checked against 7.0.2's output, sample for sample).

    Raises:
        DataError: missing, empty or undecodable file, or one without an audio stream.
    """
    from asccl.evaluation.syncnet_timing import check_ffmpeg

    check_ffmpeg(ffmpeg)
    path = _checked_file(path, SYNCNET_AUDIO_RATE)
    av = _import_av()
    with _open_audio(av, path, full_probe=True) as container:
        start = Fraction(container.start_time or 0, 1_000_000)  # av.time_base units -> s
        stream = container.streams.audio[0]
        first = start
        if stream.start_time is not None and stream.time_base is not None:
            first = Fraction(stream.start_time) * stream.time_base
        origin = start if ffmpeg == "4-6" else first  # 7+: the stream's first sample at 0
        try:
            frames = _step1_frames(av, container, stream, origin)
        except (av.FFmpegError, OSError, ValueError) as err:  # ValueError: format changed
            raise DataError(path, f"corrupt audio stream ({_reason(err)})") from None
    if not frames:
        raise DataError(path, "audio stream decodes to no samples")
    try:
        packets, rate, priming = _encode_mp3(av, frames)
        samples = _step3(av, _decode_mp3(av, packets, frames[0].layout.name, rate))
    except (av.FFmpegError, ValueError) as err:
        raise DataError(path, f"MP3 round trip failed ({_reason(err)})") from None
    return AviAudio(samples=samples, source_rate=rate, priming=priming, start=float(first - start))


def _pull_all(av, graph, out: list) -> None:
    """Append every frame ``graph`` has ready to ``out``."""
    while True:
        try:
            out.append(graph.pull())
        except (av.BlockingIOError, av.EOFError):
            return


def _step1_frames(av, container, stream, start: Fraction) -> list:
    """The frames ``-async 1`` hands the MP3 encoder: planar, at a rate and layout it takes."""
    codec = av.codec.Codec(AVI_AUDIO_ENCODER, "w")
    convert = (
        f"sample_fmts={'|'.join(f.name for f in codec.audio_formats)}"
        f":sample_rates={'|'.join(str(r) for r in codec.audio_rates)}"
        ":channel_layouts=mono|stereo"  # libmp3lame's channel layouts
    )
    graph, out = None, []
    for frame in _frames_on_clock(container, stream, start):
        if graph is None:
            resample = CLI_ASYNC
            if frame.format.name in _SHORT_FORMATS:  # the encoder then gets s16p (lavfi's pick)
                resample += ":internal_sample_fmt=s16p"
            shape = (frame.format.name, frame.sample_rate, frame.layout.name)
            graph = _ffmpeg_cli_graph(av, *shape, 0, resample=resample, convert=convert)
        graph.push(frame)
        _pull_all(av, graph, out)
    if graph is not None:
        graph.push(None)
        _pull_all(av, graph, out)
    return [f for f in out if f.samples]


def _encode_mp3(av, frames: list) -> tuple[list[bytes], int, int]:
    """libmp3lame as the CLI sets it up for the AVI muxer: ``(packets, rate, priming)``.

    The CLI leaves the encoder at FFmpeg's defaults: bit rate 0 (``libmp3lame``'s
    FFCodecDefaults ``b=0``: LAME chooses its default CBR rate, 128 kb/s at 44.1/48 kHz stereo,
    64 kb/s 48 kHz mono, 24 kb/s 16 kHz mono, measured with ffprobe), compression level unset
    (LAME's default quality), bit reservoir and joint stereo on (the wrapper's option defaults),
    no QSCALE flag (``-qscale:v`` is the video's). Packets are returned as bytes: the skip
    side data FFmpeg attaches to the first one does not survive the AVI.
    """
    first = frames[0]
    fmt, layout, rate = first.format.name, first.layout.name, first.sample_rate
    encoder = av.CodecContext.create(AVI_AUDIO_ENCODER, "w")
    encoder.format, encoder.layout, encoder.sample_rate = fmt, layout, rate
    encoder.time_base = Fraction(1, rate)
    encoder.bit_rate = 0
    encoder.open()
    data = np.concatenate([f.to_ndarray() for f in frames], axis=1)  # (C, S) planar
    size = encoder.frame_size  # 1152 (MPEG-1 rates) or 576; the last frame may be shorter
    packets = []
    for begin in range(0, data.shape[1], size):
        frame = av.AudioFrame.from_ndarray(
            np.ascontiguousarray(data[:, begin : begin + size]), format=fmt, layout=layout
        )
        frame.sample_rate, frame.pts, frame.time_base = rate, begin, Fraction(1, rate)
        packets.extend(encoder.encode(frame))
    packets.extend(encoder.encode(None))
    if not packets:
        raise ValueError("the MP3 encoder returned no packets")
    head = packets[0]
    priming = -round(head.pts * head.time_base * rate)  # the first packet starts -padding early
    return [bytes(p) for p in packets], rate, priming


def _decode_mp3(av, packets: list[bytes], layout: str, rate: int) -> list:
    """The MP3 packets decoded as ffmpeg reads them back from the AVI (no samples skipped)."""
    decoder = av.CodecContext.create(MP3_DECODER, "r")
    decoder.sample_rate, decoder.layout = rate, layout
    frames = []
    for data in packets:
        frames.extend(decoder.decode(av.Packet(data)))
    frames.extend(decoder.decode(None))
    return frames


def _step3(av, frames: list) -> np.ndarray:
    """``-ac 1 -ar 16000 -acodec pcm_s16le`` (no async) of the decoded MP3: ``(S,)`` int16.
    ``evaluate``'s later ``-async 1`` leaves continuous 16 kHz mono PCM as it is (measured)."""
    if not frames:
        raise ValueError("the MP3 decoder returned no samples")
    first = frames[0]
    graph = _ffmpeg_cli_graph(
        av, first.format.name, first.sample_rate, first.layout.name, SYNCNET_AUDIO_RATE,
        resample="",
    )  # fmt: skip
    out, position = [], 0
    for frame in frames:  # the AVI's audio is continuous from 0: only the order matters
        frame.pts, frame.time_base = position, Fraction(1, frame.sample_rate)
        position += frame.samples
        graph.push(frame)
        _pull_all(av, graph, out)
    graph.push(None)
    _pull_all(av, graph, out)
    chunks = [f.to_ndarray().reshape(-1) for f in out]
    return np.concatenate(chunks).astype(np.int16, copy=False) if chunks else np.zeros(0, np.int16)
