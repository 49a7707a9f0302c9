"""Video probing and decoding, audio probing, on tiny clips written here with PyAV."""

from __future__ import annotations

import os
from pathlib import Path

import av
import numpy as np
import pytest
from tests.data.builders import write_wav

from asccl.data.errors import DataError
from asccl.data.video import (
    AudioInfo,
    VideoInfo,
    iter_frames,
    probe_audio,
    probe_video,
    scaled_size,
    write_video,
)


def ramp_frames(n: int, width: int = 64, height: int = 48) -> list[np.ndarray]:
    """Frame i is a flat colour: red 200, green 20 + 10 i (order shows), blue 40."""
    return [np.full((height, width, 3), (200, 20 + 10 * i, 40), np.uint8) for i in range(n)]


@pytest.fixture(scope="module")
def mp4(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("video") / "clip.mp4"
    write_video(path, ramp_frames(12), fps=25)
    return str(path)


def test_probe_mp4(mp4):
    info = probe_video(mp4)
    assert info == VideoInfo(fps=25.0, num_frames=12, width=64, height=48)
    assert info.duration == pytest.approx(12 / 25)


def test_probe_counts_frames_when_the_container_does_not(tmp_path):
    path = tmp_path / "clip.mkv"
    write_video(path, ramp_frames(17), fps=30, codec="mpeg4")
    with av.open(str(path)) as container:
        assert container.streams.video[0].frames == 0  # Matroska records no count
    assert probe_video(path) == VideoInfo(fps=30.0, num_frames=17, width=64, height=48)


def test_iter_frames_gives_rgb_uint8_in_order(mp4):
    frames = list(iter_frames(mp4))
    assert len(frames) == 12
    for i, frame in enumerate(frames):
        assert frame.shape == (48, 64, 3) and frame.dtype == np.uint8
        np.testing.assert_allclose(frame.mean(axis=(0, 1)), (200, 20 + 10 * i, 40), atol=4)


def test_iter_frames_scale_to_keeps_aspect(mp4):
    frames = list(iter_frames(mp4, scale_to=32))
    assert len(frames) == 12 and frames[0].shape == (24, 32, 3)
    np.testing.assert_allclose(frames[3].mean(axis=(0, 1)), (200, 50, 40), atol=4)


def test_scaled_size():
    assert scaled_size(1920, 1080, 480) == (480, 270)
    assert scaled_size(1080, 1920, 480) == (270, 480)
    assert scaled_size(64, 64, 128) == (128, 128)
    with pytest.raises(ValueError, match="scale_to"):
        scaled_size(64, 64, 0)


def _audio_only(path):
    with av.open(str(path), "w") as container:
        stream = container.add_stream("pcm_s16le", rate=16000)
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 1600), np.int16), "s16", "mono")
        frame.sample_rate = 16000
        for packet in [*stream.encode(frame), *stream.encode()]:
            container.mux(packet)


def _bad_file(tmp_path, mp4, kind):
    path = tmp_path / f"{kind}.mp4"
    data = Path(mp4).read_bytes()
    if kind == "missing":
        pass
    elif kind == "empty":
        path.touch()
    elif kind == "directory":
        path.mkdir()
    elif kind == "garbage":
        path.write_bytes(np.random.default_rng(0).integers(0, 256, 4000, np.uint8).tobytes())
    elif kind == "truncated":  # moov atom at the end: cut off
        path.write_bytes(data[: len(data) // 2])
    elif kind == "audio_only":
        path = tmp_path / "audio.wav"
        _audio_only(path)
    return path


@pytest.mark.parametrize(
    ("kind", "problem"),
    [
        ("missing", "no such file"),
        ("empty", "empty file"),
        ("directory", "is a directory"),
        ("garbage", "cannot open as a video"),
        ("truncated", "no readable streams|cannot open as a video"),
        ("audio_only", "no video stream"),
    ],
)
def test_bad_files_raise_one_line_data_error(tmp_path, mp4, kind, problem):
    path = _bad_file(tmp_path, mp4, kind)
    for call in (probe_video, iter_frames):
        with pytest.raises(DataError, match=problem) as err:
            call(path)  # iter_frames checks the file when called, before the first frame
        assert str(err.value).startswith(f"{path}: ")
        assert "\n" not in str(err.value)


@pytest.fixture(scope="module")
def faststart_mp4(tmp_path_factory) -> bytes:
    """An mp4 whose header (moov) comes first, so cutting it leaves the header intact."""
    path = tmp_path_factory.mktemp("video") / "faststart.mp4"
    rng = np.random.default_rng(0)
    with av.open(str(path), "w", options={"movflags": "faststart"}) as container:
        stream = container.add_stream("libx264", rate=25)
        stream.width = stream.height = 64
        stream.pix_fmt = "yuv420p"
        for _ in range(8):
            frame = av.VideoFrame.from_ndarray(rng.integers(0, 256, (64, 64, 3), np.uint8))
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path.read_bytes()


@pytest.mark.parametrize(
    ("keep", "problem"),
    [(0.3, r"undecodable data after \d+ decoded frames"), (0.8, "truncated: decoded 4 of the 8")],
)
def test_cut_frame_data_is_an_error(tmp_path, faststart_mp4, keep, problem):
    path = tmp_path / "cut.mp4"
    path.write_bytes(faststart_mp4[: int(len(faststart_mp4) * keep)])
    assert probe_video(path).num_frames == 8  # the header still lists 8
    with pytest.raises(DataError, match=problem) as err:
        list(iter_frames(path))
    assert str(err.value).startswith(f"{path}: ")


def test_write_video_checks_frames(tmp_path):
    with pytest.raises(ValueError, match="no frames"):
        write_video(tmp_path / "a.mp4", [])
    with pytest.raises(ValueError, match=r"\(4, 4\)"):
        write_video(tmp_path / "b.mp4", [np.zeros((4, 4), np.uint8)])
    with pytest.raises(ValueError, match="frame 1"):
        write_video(
            tmp_path / "c.mp4", [np.zeros((8, 8, 3), np.uint8), np.zeros((8, 6, 3), np.uint8)]
        )
    assert not os.path.exists(tmp_path / "a.mp4")
    assert sorted(os.listdir(tmp_path)) == []  # a failed write leaves no half video


def test_failed_write_video_keeps_the_old_file(tmp_path):
    path = tmp_path / "clip.mp4"
    write_video(path, ramp_frames(3), fps=25)
    before = path.read_bytes()
    bad = [*ramp_frames(3), np.zeros((8, 6, 3), np.uint8)]  # fails after 3 frames encoded
    with pytest.raises(ValueError, match="frame 3"):
        write_video(path, bad, fps=25)
    assert path.read_bytes() == before and os.listdir(tmp_path) == ["clip.mp4"]
    assert probe_video(path).num_frames == 3


DEMO_AUDIO = Path(__file__).resolve().parents[2] / "demo_data/MEAD/W903/audio/happy/level_1/001.m4a"


def test_write_video_copies_audio_from_another_file(tmp_path):
    from asccl.data.audio import load_audio

    path = tmp_path / "with_audio.mp4"
    assert write_video(path, ramp_frames(10), fps=25, audio_from=DEMO_AUDIO) == 10
    assert probe_video(path).num_frames == 10
    with av.open(str(path)) as container, av.open(str(DEMO_AUDIO)) as original:
        assert len(container.streams.audio) == 1
        assert container.streams.audio[0].codec_context.name == (
            original.streams.audio[0].codec_context.name  # copied, not re-encoded
        )
    copied, reference = load_audio(path, 16000), load_audio(DEMO_AUDIO, 16000)
    assert len(copied) == pytest.approx(len(reference), abs=800)
    np.testing.assert_allclose(copied[: len(reference) // 2], reference[: len(reference) // 2],
                               atol=1e-4)  # fmt: skip


def test_write_video_audio_errors_name_the_file(tmp_path, mp4):
    with pytest.raises(DataError, match="has no audio stream"):
        write_video(tmp_path / "a.mp4", ramp_frames(2), audio_from=mp4)
    with pytest.raises(DataError, match=r"missing\.m4a"):
        write_video(tmp_path / "b.mp4", ramp_frames(2), audio_from=tmp_path / "missing.m4a")


def test_probe_audio_reads_the_declared_duration(tmp_path):
    assert probe_audio(write_wav(tmp_path / "a.wav", 1.25)) == AudioInfo(1.25, 16000)
    assert probe_audio(write_wav(tmp_path / "b.wav", 0.5, rate=48000)) == AudioInfo(0.5, 48000)
    assert probe_audio(write_wav(tmp_path / "empty.wav", 0.0)).duration == 0.0  # header only
    demo = probe_audio(DEMO_AUDIO)  # AAC in .m4a: the edit list's length, not whole frames
    from asccl.data.audio import load_audio

    assert demo.sample_rate == 16000
    assert demo.duration == pytest.approx(len(load_audio(DEMO_AUDIO, 16000)) / 16000, abs=1e-3)


def test_probe_audio_of_raw_adts(tmp_path):
    """Raw ADTS AAC has no header with a length: FFmpeg's estimate (whole frames)."""
    path = tmp_path / "raw.aac"
    with av.open(str(path), "w", format="adts") as container:
        stream = container.add_stream("aac", rate=16000, layout="mono")
        for start in range(0, 16000, 1024):  # 1 s of samples
            chunk = np.zeros((1, min(1024, 16000 - start)), np.float32)
            frame = av.AudioFrame.from_ndarray(chunk, format="fltp", layout="mono")
            frame.sample_rate, frame.pts = 16000, start
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    info = probe_audio(path)
    # whole 1024-sample AAC frames, plus the encoder's priming frame: 1-1.2 s
    assert 1.0 <= info.duration <= 1.0 + 3 * 1024 / 16000


@pytest.mark.parametrize(
    ("kind", "problem"),
    [
        ("missing", "no such file"),
        ("empty", "empty file"),
        ("directory", "is a directory, not an audio file"),
        ("garbage", "cannot open as an audio"),
    ],
)
def test_probe_audio_errors_name_the_file(tmp_path, mp4, kind, problem):
    path = _bad_file(tmp_path, mp4, kind)
    with pytest.raises(DataError, match=problem) as err:
        probe_audio(path)
    assert str(err.value).startswith(f"{path}: ") and "\n" not in str(err.value)
    with pytest.raises(DataError, match=f"{mp4}: no audio stream \\(streams: video\\)"):
        probe_audio(mp4)


@pytest.fixture(scope="module")
def photo_clip() -> tuple[np.ndarray, np.ndarray]:
    """39 frames (96 px) of the synthetic astronaut speaker, and its audio: a clip on which
    x264's macroblock tree gave different bytes for the same frames (see X264_PARAMS)."""
    from asccl.data.synth.config import SynthConfig
    from asccl.data.synth.dataset import Clip, synth_clip

    config = SynthConfig(out=Path("unused"), speakers=1, sentences=1, size=96, duration=0.5)
    frames, _, audio = synth_clip(config, Clip(0, "disgusted", 3, 0))
    return frames, audio


def test_the_same_frames_give_the_same_bytes(tmp_path, photo_clip):
    from asccl.data.synth.encode import write_mp4

    frames, audio = photo_clip
    # with mbtree on, 60 encodes of this clip at preset medium gave 3 different files (the
    # commonest 34 times); with mbtree back on, this check failed 6 times in 6
    written = set()
    for i in range(24):
        write_video(tmp_path / f"{i}.mp4", frames, fps=30)
        written.add((tmp_path / f"{i}.mp4").read_bytes())
    assert len(written) == 1
    synthesised = set()
    for i in range(8):  # the synth's single-threaded encoder: 2 to 5 variants in 30
        write_mp4(tmp_path / f"s{i}.mp4", frames, audio, 30)
        synthesised.add((tmp_path / f"s{i}.mp4").read_bytes())
    assert len(synthesised) == 1


# -- rotation tags (display matrix) ---------------------------------------------------------

UPRIGHT = np.zeros((32, 48, 3), np.uint8)  # as it should be seen: landscape, 8 px blocks
UPRIGHT[:8, :16] = (255, 0, 0)  # red: top left, wide
UPRIGHT[-8:, -8:] = (0, 0, 255)  # blue: bottom right


def _tagged(path: Path, frames: list[np.ndarray], rotation: float | None) -> Path:
    """Lossless x264 (crf 0) of ``frames`` with PyAV's display-matrix tag, ``rotation``
    degrees counter-clockwise (the convention ``frame.rotation`` reads back), or none."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=25, options={"crf": "0"})
        stream.height, stream.width = frames[0].shape[:2]
        stream.pix_fmt = "yuv420p"
        if rotation is not None:
            stream.set_display_rotation(rotation)
        for frame in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode())
    return path


def _raw_decode(path: Path) -> list[np.ndarray]:
    """FFmpeg's frames as they are stored (what iter_frames gave before it read tags)."""
    with av.open(str(path)) as container:
        return [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]


@pytest.mark.parametrize(("tag", "read_back"), [(90, 90), (180, -180), (270, -90)])
def test_rotation_tag_is_applied_as_players_do(tmp_path, tag, read_back):
    """A clip stored turned clockwise by ``tag`` degrees, tagged to turn it back, reads
    upright. ``tag`` counts counter-clockwise (PyAV's convention, FFmpeg's
    av_display_rotation_get); the ffmpeg CLI's autorotate shows ``frame.rotation == 90``
    with ``transpose=cclock``, i.e. np.rot90(stored, 1), which is what the clip needs."""
    stored = np.ascontiguousarray(np.rot90(UPRIGHT, -tag // 90))  # turned clockwise
    path = _tagged(tmp_path / f"r{tag}.mp4", [stored, stored[::-1].copy()], tag)
    with av.open(str(path)) as container:
        assert next(container.decode(video=0)).rotation == read_back  # the tag is in the file
    raw = _raw_decode(path)
    assert raw[0].shape == stored.shape  # stored sideways
    frames = list(iter_frames(path))
    assert len(frames) == 2 and frames[0].shape == UPRIGHT.shape
    info = probe_video(path)
    assert (info.height, info.width) == frames[0].shape[:2] == (32, 48)
    # exactly FFmpeg's decoded samples, turned: the tag changes no pixel value
    for got, decoded in zip(frames, raw, strict=True):
        np.testing.assert_array_equal(got, np.rot90(decoded, tag // 90))
    # and the picture is the right way up: lossless yuv420p of flat 8-px blocks differs
    # from the RGB only by rgb->yuv->rgb rounding (a few levels); the colours differ by 255
    blocks = frames[0].astype(int)
    np.testing.assert_allclose(blocks[:8, :16].mean((0, 1)), (255, 0, 0), atol=8)
    np.testing.assert_allclose(blocks[-8:, -8:].mean((0, 1)), (0, 0, 255), atol=8)
    assert blocks[:8, -8:].max() < 8 and blocks[-8:, :8].max() < 8  # other corners black


def test_rotation_tag_with_scale_to(tmp_path):
    stored = np.ascontiguousarray(np.rot90(UPRIGHT, -1))  # 48 x 32, tagged +90
    path = _tagged(tmp_path / "r90.mp4", [stored], 90)
    (frame,) = iter_frames(path, scale_to=24)
    assert frame.shape == (16, 24, 3)  # the upright 32 x 48, longest side 24
    np.testing.assert_allclose(frame[:4, :8].astype(int).mean((0, 1)), (255, 0, 0), atol=8)


def test_untagged_clip_reads_exactly_as_ffmpeg_decodes_it(tmp_path, mp4):
    """No tag: the frames are FFmpeg's, untouched (same values as before tags were read),
    also when scaled (swscale's area filter, as before)."""
    for path in (Path(mp4), _tagged(tmp_path / "plain.mp4", [UPRIGHT, UPRIGHT[::-1].copy()], None)):
        with av.open(str(path)) as container:
            first = next(container.decode(video=0))
            assert not any(sd.type.name == "DISPLAYMATRIX" for sd in first.side_data)
            small = first.reformat(width=32, height=24 if path == Path(mp4) else 21,
                                   format="rgb24", interpolation="AREA").to_ndarray()  # fmt: skip
        raw, frames = _raw_decode(path), list(iter_frames(path))
        assert len(frames) == len(raw)
        for got, decoded in zip(frames, raw, strict=True):
            np.testing.assert_array_equal(got, decoded)
        np.testing.assert_array_equal(next(iter_frames(path, scale_to=32)), small)
        assert (probe_video(path).height, probe_video(path).width) == raw[0].shape[:2]


def test_odd_rotation_tag_is_a_data_error(tmp_path):
    path = _tagged(tmp_path / "r45.mp4", [UPRIGHT], 45)
    for call in (probe_video, lambda p: list(iter_frames(p))):
        with pytest.raises(DataError, match=r"rotated by 45 degrees; only multiples of 90") as err:
            call(path)
        assert str(err.value).startswith(f"{path}: ") and "\n" not in str(err.value)
    # within FFmpeg's 1 degree tolerance it is a quarter turn, as the ffmpeg CLI treats it
    near = _tagged(tmp_path / "r90.5.mp4", [np.ascontiguousarray(np.rot90(UPRIGHT, -1))], 90.5)
    assert next(iter_frames(near)).shape == UPRIGHT.shape


def test_write_video_writes_no_rotation_tag(tmp_path):
    path = tmp_path / "out.mp4"
    write_video(path, [UPRIGHT, UPRIGHT])
    with av.open(str(path)) as container:
        frame = next(container.decode(video=0))
        assert frame.rotation == 0
        assert not any(sd.type.name == "DISPLAYMATRIX" for sd in frame.side_data)
    assert next(iter_frames(path)).shape == UPRIGHT.shape  # a round trip keeps the shape


F = 1 << 16  # 1.0 in the display matrix's 16.16 fixed point


@pytest.mark.parametrize(
    ("abcd", "filters"),
    [  # the filters the ffmpeg CLI's autorotate inserts for each matrix (fftools, FFmpeg 7)
        ((0, -F, F, 0), [("transpose", "cclock")]),  # frame.rotation 90
        ((0, F, -F, 0), [("transpose", "clock")]),  # -90
        ((-F, 0, 0, -F), [("hflip", None), ("vflip", None)]),  # 180
        ((-F, 0, 0, F), [("hflip", None)]),  # mirrored: reads as -180
        ((F, 0, 0, -F), [("vflip", None)]),  # upside-down mirror: reads as 0
        ((0, F, F, 0), [("transpose", "cclock_flip")]),
        ((0, -F, -F, 0), [("transpose", "clock_flip")]),
    ],
)
def test_display_matrix_matches_ffmpeg_autorotate(tmp_path, abcd, filters):
    """FFmpeg's own filters (libavfilter, bundled with PyAV; the ffmpeg CLI is not needed)
    on the decoded frame give exactly what iter_frames yields, mirrors included."""
    from fractions import Fraction

    a, b, c, d = abcd
    path = tmp_path / "m.mp4"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=25, options={"crf": "0"})
        stream.height, stream.width, stream.pix_fmt = 32, 48, "yuv420p"
        stream.set_display_matrix([a, b, 0, c, d, 0, 0, 0, 1 << 30])
        container.mux(stream.encode(av.VideoFrame.from_ndarray(UPRIGHT, format="rgb24")))
        container.mux(stream.encode())
    graph = av.filter.Graph()
    last = source = graph.add_buffer(
        width=48, height=32, format="rgb24", time_base=Fraction(1, 25)
    )  # fmt: skip
    for name, arg in filters:
        node = graph.add(name, arg) if arg else graph.add(name)
        last.link_to(node)
        last = node
    sink = graph.add("buffersink")
    last.link_to(sink)
    graph.configure()
    frame = av.VideoFrame.from_ndarray(_raw_decode(path)[0], format="rgb24")
    frame.pts = 0
    source.push(frame)
    np.testing.assert_array_equal(next(iter_frames(path)), sink.pull().to_ndarray())
