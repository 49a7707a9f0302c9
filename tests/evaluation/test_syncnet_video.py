"""syncnet_python's video chain (steps 1+2 and 4+6 of LSE's input) against the ffmpeg CLI.

The fixtures under ``ffmpeg_cli/video/`` were written by the real CLI (FFmpeg 5.1, commands
in ``manifest.json`` and ``ffmpeg_cli/README.md``) from inputs rebuilt here (their SHA-256
is checked first). asccl runs PyAV's FFmpeg 8, so:

- exact: the ``yuv420p -> yuvj420p`` conversion, the MJPEG q2 pictures of step 2, step 4's
  XVID video (same OpenCV), step 6's pictures wherever the rate control picked the CLI's
  quantiser, every count, order and size, step 1's I-frame;
- bounded (measured, reasons beside each bound): step 1's P-frames (FFmpeg 8's mpeg4 motion
  search differs from 5.1's), step 6's frames whose quantiser differs (FFmpeg 8's optimal
  Huffman tables are ~20 bytes per image smaller, which steers the 200 kb/s rate control),
  and RGB inputs (asccl's RGB -> ``yuv420p`` is a step the CLI does not take).
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
from pathlib import Path

import av
import numpy as np
import pytest

from asccl.evaluation import syncnet_video as sv
from asccl.evaluation.lip_sync import cli_jpegs, imread_rgb, jpeg_round_trip

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = Path(__file__).parent / "ffmpeg_cli" / "video"
MANIFEST = json.loads((FIXTURES / "manifest.json").read_text())


def _recorder():
    """The recording script, for its input builders (it runs no CLI when imported)."""
    path = ROOT / "scripts/reference/record_avi_video.py"
    spec = importlib.util.spec_from_file_location("record_avi_video", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


REC = _recorder()


def _sha(arrays) -> str:
    return hashlib.sha256(np.ascontiguousarray(np.stack(arrays)).tobytes()).hexdigest()


def _cli_jpegs(name: str) -> list[bytes]:
    return [p.read_bytes() for p in sorted((FIXTURES / name).glob("*.jpg"))]


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else float(10 * np.log10(255.0**2 / mse))


def _dqt(jpeg: bytes) -> bytes:
    """The quantisation tables (DQT segments) of a JFIF file: its quantiser, in effect."""
    out, i = b"", 2
    while jpeg[i + 1] != 0xDA:
        length = int.from_bytes(jpeg[i + 2 : i + 4], "big")
        if jpeg[i + 1] == 0xDB:
            out += jpeg[i + 4 : i + 2 + length]
        i += 2 + length
    return out


@pytest.fixture(scope="module")
def inputs() -> dict[str, np.ndarray]:
    demo_rgb = np.stack(REC.demo_frames("rgb24"))
    start = (demo_rgb.shape[1] - 224) // 2
    built = {
        "avi_demo": demo_rgb,
        "avi_synth": REC.synthetic_frames(128, 1),
        "crop_demo": demo_rgb[:, start : start + 224, start : start + 224],
        "crop_synth": REC.synthetic_frames(224, 2),
    }
    assert _sha(list(demo_rgb)) == MANIFEST["demo_rgb24_sha256"]
    assert _sha(list(built["avi_synth"])) == MANIFEST["avi_synth_sha256"]
    assert _sha(list(built["crop_synth"])) == MANIFEST["crop_synth_sha256"]
    return built


def test_fixture_inputs_rebuild(inputs):
    """The frames rebuilt here are the ones the CLI was given (else every comparison below
    is about other frames)."""
    assert _sha(REC.demo_frames("yuv420p")) == MANIFEST["demo_yuv420p_sha256"]
    for name, frames in inputs.items():
        assert len(_cli_jpegs(name)) == len(frames) == REC.FRAMES


def test_range_to_jpeg_is_the_cli_conversion():
    """Random full-range planes (every code, clipping included) through the CLI's
    ``-pix_fmt yuvj420p``: bit-exact."""
    data = np.load(FIXTURES / "range.npz")
    for src, cli in zip(data["yuv420p"], data["yuvj420p"], strict=True):
        np.testing.assert_array_equal(sv.range_to_jpeg(src), cli)


@pytest.mark.parametrize("name", ["avi_demo", "avi_synth"])
def test_step2_q2_jpegs_match_the_cli_exactly(name):
    """Step 2 alone: the CLI's ``video.avi`` decoded by PyAV and turned into q2 JPEGs gives
    the CLI's pictures exactly (the Huffman codes differ between FFmpeg 5.1 and 8, the
    quantised coefficients do not)."""
    planes = sv.decode_video(sv.read_video_packets(FIXTURES / name / "video.avi"))
    mine, cli = sv.mjpeg_q2_jpegs(planes), _cli_jpegs(name)
    assert [_dqt(j) for j in mine] == [_dqt(j) for j in cli]
    np.testing.assert_array_equal(imread_rgb(mine), imread_rgb(cli))


def test_step1_encoder_against_the_cli():
    """Step 1 on the clip's own YUV (as the CLI reads it): same packet count and frame types
    (an I-frame every 12: here the first), the I-frame decodes to the CLI's exactly; the
    P-frames differ (FFmpeg 8's motion search and mode decisions are not 5.1's) by far less
    than the encoding itself changes the picture."""
    source = REC.demo_frames("yuv420p")
    packets = sv.mpeg4_q2_packets([av.VideoFrame.from_ndarray(f, format="yuv420p") for f in source])
    cli_packets = sv.read_video_packets(FIXTURES / "avi_demo" / "video.avi")
    assert len(packets) == len(cli_packets) == len(source)
    assert [p.is_keyframe for p in packets] == [p.is_keyframe for p in cli_packets]
    assert [p.is_keyframe for p in packets] == [True] + [False] * 11
    mine, cli = sv.decode_video(packets), sv.decode_video(cli_packets)
    np.testing.assert_array_equal(mine[0], cli[0])
    # Measured (YUV planes): emulation vs CLI 68.6 dB on the first P-frame down to 56.9 dB on
    # the 11th (the differences chain through the references), the CLI vs its own input
    # 48.4-49.0 dB. Bound: 5 dB above the encoder's own change on every P-frame.
    for k in range(1, len(source)):
        assert _psnr(mine[k], cli[k]) > _psnr(cli[k], source[k]) + 5


def test_avi_frames_round_trip_against_the_cli(inputs):
    """Steps 1+2 on RGB frames vs the CLI's JPEGs (decoded as ``cv2.imread`` does).

    Measured (this fixture): synthetic (RGB fed to the CLI, which converts with 5.1's
    libswscale): emulation 42.7 dB, untouched frames 27.2 dB; demo clip (the CLI read its
    YUV, asccl its RGB, which FFmpeg 8 decoded with +-1..2 errors): emulation 41.6 dB,
    untouched 40.6 dB; from the clip's YUV the same chain is at 54.3 dB: the RGB ->
    ``yuv420p`` step costs ~13 dB there. Bounds 1 dB under the measured values.
    """
    for name, floor in [("avi_synth", 41.7), ("avi_demo", 40.6)]:
        frames, cli = inputs[name], imread_rgb(_cli_jpegs(name))
        out = sv.avi_frames_round_trip(frames)
        assert out.shape == cli.shape == frames.shape and out.dtype == np.uint8
        assert _psnr(out, cli) > floor
        assert _psnr(out, cli) > _psnr(frames, cli)
    synth = inputs["avi_synth"]
    assert _psnr(sv.avi_frames_round_trip(synth), imread_rgb(_cli_jpegs("avi_synth"))) > (
        _psnr(synth, imread_rgb(_cli_jpegs("avi_synth"))) + 10
    )


@pytest.mark.parametrize("name", ["crop_demo", "crop_synth"])
def test_step4_writer_is_the_reference_writer(name, inputs, tmp_path):
    """Step 4: OpenCV's XVID writer here gives the pictures of the recorded ``cropt.avi``
    (the reference's call; same OpenCV build), 12 frames of 224x224."""
    sv.write_crop_avi(inputs[name], tmp_path / "cropt.avi")
    mine = sv.decode_video(sv.read_video_packets(tmp_path / "cropt.avi"))
    recorded = sv.decode_video(sv.read_video_packets(FIXTURES / name / "cropt.avi"))
    assert len(mine) == len(recorded) == 12 and mine[0].shape == (336, 224)
    np.testing.assert_array_equal(np.stack(mine), np.stack(recorded))


@pytest.mark.parametrize("name", ["crop_demo", "crop_synth"])
def test_crop_video_round_trip_against_the_cli(name, inputs):
    """Steps 4+6 vs the CLI's JPEGs: every frame the rate control gave the CLI's quantiser
    is pixel-identical; the others (FFmpeg 8's smaller optimal Huffman tables steer the 200
    kb/s rate control: measured 1 of 12 frames in ``crop_demo``, 2 in ``crop_synth``) are
    the same picture at a neighbouring quantiser.

    Measured: emulation vs CLI 52.4 / 46.9 dB, untouched crops 38.3 / 27.4 dB, the old path
    (``jpeg_round_trip`` alone, no XVID step) 39.7 / 39.2 dB.
    """
    crops, cli_files = inputs[name], _cli_jpegs(name)
    cli = imread_rgb(cli_files)
    out = sv.crop_video_round_trip(crops)
    assert out.shape == cli.shape == crops.shape and out.dtype == np.uint8

    # The same JPEG files, to read their quantisers: the recorded AVI through the chain.
    planes = sv.decode_video(sv.read_video_packets(FIXTURES / name / "cropt.avi"))
    pictures = (av.VideoFrame.from_ndarray(sv.range_to_jpeg(p), format="yuvj420p") for p in planes)
    mine_files = cli_jpegs(pictures, 224, 224)
    np.testing.assert_array_equal(imread_rgb(mine_files), out)
    same_q = [_dqt(a) == _dqt(b) for a, b in zip(mine_files, cli_files, strict=True)]
    assert sum(same_q) >= 10
    for k in np.flatnonzero(same_q):
        np.testing.assert_array_equal(out[k], cli[k])
    assert _psnr(out, cli) > _psnr(crops, cli) + 8


@pytest.mark.parametrize("name", ["crop_demo", "crop_synth"])
def test_the_old_path_misses_the_xvid_step(name, inputs):
    """``jpeg_round_trip`` alone (no crop video) is measurably further from the CLI: the
    fixture sees the missing step (measured 39.7 vs 52.4 dB, 39.2 vs 46.9 dB)."""
    crops, cli = inputs[name], imread_rgb(_cli_jpegs(name))
    new, old = _psnr(sv.crop_video_round_trip(crops), cli), _psnr(jpeg_round_trip(crops), cli)
    assert new > old + 5


def test_shapes_and_errors(monkeypatch):
    empty = np.zeros((0, 224, 224, 3), np.uint8)
    assert sv.crop_video_round_trip(empty).shape == empty.shape
    assert sv.avi_frames_round_trip(np.zeros((0, 16, 16, 3), np.uint8)).shape == (0, 16, 16, 3)
    with pytest.raises(ValueError, match="224x224"):
        sv.crop_video_round_trip(np.zeros((2, 112, 112, 3), np.uint8))
    with pytest.raises(ValueError, match="uint8 RGB"):
        sv.avi_frames_round_trip(np.zeros((2, 16, 16, 3), np.float32))
    with pytest.raises(ValueError, match="even"):
        sv.avi_frames_round_trip(np.zeros((2, 15, 16, 3), np.uint8))

    class ClosedWriter:
        def __init__(self, *args):
            pass

        def isOpened(self):
            return False

    from asccl.data.opencv import cv2

    monkeypatch.setattr(cv2, "VideoWriter", ClosedWriter)
    with pytest.raises(RuntimeError, match="FFmpeg backend"):
        sv.crop_video_round_trip(np.zeros((2, 224, 224, 3), np.uint8))
