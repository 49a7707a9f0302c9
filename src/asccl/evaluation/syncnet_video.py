"""The picture changes of syncnet_python's video chain before LSE, emulated in memory.

``run_pipeline.py`` and ``evaluate`` pass every frame through four lossy steps (the ffmpeg
CLI's; the timing, which frames and where duplicates go, is not this module's part):

1. ``ffmpeg -y -i clip -qscale:v 2 -async 1 -r 25 pyavi/video.avi``: MPEG-4 Part 2
   (``mpeg4``, tag ``FMP4``) at a fixed quantiser 2, GOP 12, no B-frames, ``yuv420p``;
2. ``ffmpeg -y -i video.avi -qscale:v 2 -threads 1 -f image2 pyframes/%06d.jpg`` (+
   ``cv2.imread``): MJPEG at quantiser 2 (S3FD and the face crops read these);
4. ``crop_video``: ``cv2.VideoWriter(..., VideoWriter_fourcc(*"XVID"), 25, (224, 224))``;
6. ``ffmpeg -y -i crop.avi -threads 1 -f image2 %06d.jpg`` (+ ``cv2.imread``): MJPEG at the
   CLI's default 200 kb/s (:func:`asccl.evaluation.lip_sync.cli_jpegs`).

:func:`avi_frames_round_trip` is steps 1+2 on full frames, :func:`crop_video_round_trip`
steps 4+6 on face crops. How close they come to the CLI (FFmpeg 5.1, recorded in
``tests/evaluation/ffmpeg_cli/``) with PyAV's FFmpeg 8:

- the ``yuv420p -> yuvj420p`` conversion the CLI inserts before each MJPEG encoder
  (libswscale's range expansion, identity scale) is done here in integers as FFmpeg 5.1
  computes it (:func:`range_to_jpeg`): bit-exact; FFmpeg 8's own conversion is off by 1 on
  about 17% of the samples;
- step 1's encoder: FFmpeg 5.1 and 8 give the same I-frames but not the same P-frames
  (their motion search and mode decisions changed), so steps 1+2 match the CLI within a
  bound, not exactly; steps 2, 4 and 6 on the same input are bit-exact;
- asccl holds RGB frames where the CLI keeps the clip's decoded YUV: the RGB -> ``yuv420p``
  conversion on the way in (BT.601, limited range, as FFmpeg converts) is an extra step
  the reference does not take (measured in ``tests/evaluation/test_syncnet_video.py``).
"""

from __future__ import annotations

import tempfile
from fractions import Fraction
from pathlib import Path

import numpy as np

from asccl.evaluation.lip_sync import FACE_SIZE, FPS, cli_jpegs, imread_rgb
from asccl.optional import require

#: ``-qscale:v 2`` of steps 1 and 2.
QSCALE = 2
#: libavcodec's ``FF_QP2LAMBDA``: ``-qscale:v q`` sets ``global_quality = q * FF_QP2LAMBDA``.
FF_QP2LAMBDA = 118
#: libavcodec's default GOP size (``-g``), which the AVI of step 1 keeps.
GOP_SIZE = 12
#: OpenCV's four-character code for the crop video of step 4.
CROP_FOURCC = "XVID"


# ------------------------------------------------------------------------- pieces


def _check(frames: np.ndarray, what: str, size: int | None = None) -> np.ndarray:
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(
            f"{what} must be (N, H, W, 3) uint8 RGB, got {frames.shape} {frames.dtype}"
        )
    if size is not None and frames.shape[1:3] != (size, size):
        raise ValueError(f"{what} must be {size}x{size}, got {frames.shape[2]}x{frames.shape[1]}")
    if frames.shape[1] % 2 or frames.shape[2] % 2:
        raise ValueError(f"{what} need an even width and height for yuv420p, got {frames.shape}")
    return frames


def _fixed_quantiser(ctx, qscale: int) -> None:
    """A libavcodec mpegvideo encoder at a fixed quantiser, as ``ffmpeg -qscale:v q`` sets it.

    The CLI sets ``flags +qscale`` and gives each frame ``quality = q * FF_QP2LAMBDA``;
    PyAV cannot set a frame's quality (0: lambda 0, which changes the motion search). The
    rate control clamped to that one lambda (``qmin = qmax = q``, ``lmin = lmax = q *
    FF_QP2LAMBDA``, I-frame factor 1, offset 0) is the same encoder state: FFmpeg 5.1's CLI
    writes byte-identical files both ways (checked when the fixtures were recorded).
    """
    ctx.qmin = ctx.qmax = qscale
    lam = str(qscale * FF_QP2LAMBDA)
    ctx.options = {"lmin": lam, "lmax": lam, "i_qfactor": "1", "i_qoffset": "0"}


def mpeg4_q2_packets(pictures: list) -> list:
    """Step 1's video encoder: ``yuv420p`` PyAV ``VideoFrame``s (25 fps, in order) -> the
    ``mpeg4`` packets (PyAV ``Packet``s) ``ffmpeg -qscale:v 2 video.avi`` writes, one per
    frame.

    The CLI's settings, read from the AVI it writes (``ffprobe``: ``mpeg4``, tag ``FMP4``,
    ``yuv420p``, I-frame every 12, no B-frames) and libavcodec's defaults: time base 1/25,
    GOP 12, no B-frames, one thread (slices do not change with threads for ``mpeg4``),
    quantiser 2 (:func:`_fixed_quantiser`).
    """
    av = require("av", "the LSE video chain needs PyAV")
    ctx = av.CodecContext.create("mpeg4", "w")
    ctx.width, ctx.height = pictures[0].width, pictures[0].height
    ctx.pix_fmt, ctx.thread_count = "yuv420p", 1
    ctx.time_base, ctx.framerate = Fraction(1, FPS), Fraction(FPS)
    ctx.gop_size, ctx.max_b_frames = GOP_SIZE, 0
    ctx.codec_tag = "FMP4"
    _fixed_quantiser(ctx, QSCALE)
    packets = []
    for i, picture in enumerate(pictures):
        # frame i of the 25 fps AVI (a decoded picture keeps its stream's time base, which
        # the encoder would rescale from)
        picture.pts, picture.time_base = i, ctx.time_base
        packets.extend(ctx.encode(picture))
    packets.extend(ctx.encode(None))
    if len(packets) != len(pictures):
        raise RuntimeError(f"mpeg4 encoder gave {len(packets)} packets for {len(pictures)} frames")
    return packets


def decode_video(packets: list, codec: str = "mpeg4") -> list[np.ndarray]:
    """PyAV ``Packet``s (from an encoder or a demuxer: their buffers carry FFmpeg's zeroed
    padding, which ``av.Packet(bytes)`` lacks and the decoder reads) -> ``(H * 3 / 2, W)``
    uint8 ``yuv420p`` planes (Y, then U, then V) in order."""
    av = require("av", "the LSE video chain needs PyAV")
    ctx = av.CodecContext.create(codec, "r")
    ctx.thread_count = 1
    planes = []
    for packet in [*packets, None]:
        for frame in ctx.decode(packet):
            # A copy now: the array may view the decoder's buffer, reused for later frames.
            planes.append(np.array(frame.to_ndarray(format="yuv420p"), copy=True))
    return planes


def range_to_jpeg(yuv: np.ndarray) -> np.ndarray:
    """``(H * 3 / 2, W)`` limited-range ``yuv420p`` planes -> full-range ``yuvj420p``, as the
    scale filter the ffmpeg CLI (FFmpeg 5.1) inserts before an MJPEG encoder computes it.

    At the same size libswscale's filters are the identity on 15-bit samples ``x << 7``;
    its range expansion is ``Y' = (min(Y, 30189) * 19077 - 39057361) >> 14`` and
    ``C' = (min(C, 30775) * 4663 - 9289992) >> 12``, and the output is ``(v + 64) >> 7``
    clipped to 0..255. Bit-exact against the CLI on every 8-bit input (random planes in the
    fixtures' recording); FFmpeg 8 rounds differently.
    """
    yuv = np.asarray(yuv)
    height = yuv.shape[0] * 2 // 3
    out = np.empty_like(yuv)
    np.take(_LUMA_TO_JPEG, yuv[:height], out=out[:height])  # a function of each 8-bit value:
    np.take(_CHROMA_TO_JPEG, yuv[height:], out=out[height:])  # tabulated once, below
    return out


def _range_table(limit: int, scale: int, offset: int, shift: int) -> np.ndarray:
    """``(256,)`` uint8: :func:`range_to_jpeg`'s formula for every 8-bit sample value."""
    x = np.arange(256, dtype=np.int64) << 7
    v = (np.minimum(x, limit) * scale - offset) >> shift
    return np.clip((v + 64) >> 7, 0, 255).astype(np.uint8)


_LUMA_TO_JPEG = _range_table(30189, 19077, 39057361, 14)
_CHROMA_TO_JPEG = _range_table(30775, 4663, 9289992, 12)


def mjpeg_q2_jpegs(planes: list[np.ndarray]) -> list[bytes]:
    """Step 2's JPEG files for decoded ``yuv420p`` planes: the CLI's range conversion
    (:func:`range_to_jpeg`), then MJPEG at quantiser 2 (``yuvj420p``, one thread, time base
    1/25), each packet one JFIF file."""
    av = require("av", "the LSE video chain needs PyAV")
    height, width = planes[0].shape[0] * 2 // 3, planes[0].shape[1]
    ctx = av.CodecContext.create("mjpeg", "w")
    ctx.width, ctx.height = width, height
    ctx.pix_fmt, ctx.thread_count = "yuvj420p", 1
    ctx.time_base, ctx.framerate = Fraction(1, FPS), Fraction(FPS)
    _fixed_quantiser(ctx, QSCALE)
    packets = []
    for i, yuv in enumerate(planes):
        picture = av.VideoFrame.from_ndarray(range_to_jpeg(yuv), format="yuvj420p")
        picture.pts = i
        packets.extend(ctx.encode(picture))
    packets.extend(ctx.encode(None))
    if len(packets) != len(planes):
        raise RuntimeError(f"MJPEG encoder gave {len(packets)} images for {len(planes)} frames")
    return [bytes(p) for p in packets]


def rgb_to_yuv420p(frames: np.ndarray) -> list:
    """``(N, H, W, 3)`` uint8 RGB -> ``yuv420p`` PyAV ``VideoFrame``s (libswscale, BT.601
    limited range: FFmpeg's default for untagged video, what decoding gave the RGB)."""
    av = require("av", "the LSE video chain needs PyAV")
    return [
        av.VideoFrame.from_ndarray(np.ascontiguousarray(f), format="rgb24").reformat(
            format="yuv420p"
        )
        for f in frames
    ]


def write_crop_avi(crops: np.ndarray, path: Path) -> None:
    """Step 4: ``(N, 224, 224, 3)`` uint8 RGB crops -> ``path`` written as ``crop_video``
    does: ``cv2.VideoWriter(path, VideoWriter_fourcc(*"XVID"), 25, (224, 224))``, BGR frames.
    """
    from asccl.data.opencv import cv2

    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*CROP_FOURCC), FPS, (FACE_SIZE,) * 2)
    if not writer.isOpened():
        raise RuntimeError(
            "OpenCV could not open an XVID AVI writer (it needs its FFmpeg backend: "
            "cv2.getBuildInformation() should list FFMPEG: YES); the LSE crop video step "
            "cannot be emulated"
        )
    try:
        for crop in crops:
            writer.write(np.ascontiguousarray(crop[..., ::-1]))
    finally:
        writer.release()


def read_video_packets(path: Path) -> list:
    """The video packets (PyAV ``Packet``s) of a file, in order (empty packets dropped)."""
    av = require("av", "the LSE video chain needs PyAV")
    with av.open(str(path)) as container:
        return [p for p in container.demux(video=0) if p.size]


# ------------------------------------------------------------------------- the chain


def avi_frames_round_trip(frames: np.ndarray) -> np.ndarray:
    """Steps 1+2: ``(N, H, W, 3)`` uint8 RGB frames, in the order pass 1 writes them into
    ``video.avi`` -> the same after ``mpeg4`` q2 and MJPEG q2 + ``cv2.imread``, as RGB.

    ``H`` and ``W`` even. Each JPEG is encoded on its own at a fixed quantiser, so frames
    step 2 duplicates are copies of these outputs. Frames go RGB -> ``yuv420p`` first
    (:func:`rgb_to_yuv420p`): an extra step, the CLI keeps the clip's YUV (see the module
    docstring for how close the result comes to the CLI).
    """
    frames = _check(frames, "frames")
    if len(frames) == 0:
        return frames.copy()
    return avi_pictures_round_trip(rgb_to_yuv420p(frames))


def avi_pictures_round_trip(pictures: list) -> np.ndarray:
    """Steps 1+2 on the clip's own pictures: ``yuv420p`` PyAV ``VideoFrame``s (even size),
    in the order pass 1 writes them -> ``(N, H, W, 3)`` uint8 RGB as ``cv2.imread`` reads
    step 2's JPEGs. What the CLI does with the decoded clip, without
    :func:`avi_frames_round_trip`'s RGB -> YUV step."""
    if not pictures:
        raise ValueError("no pictures")
    planes = decode_video(mpeg4_q2_packets(pictures))
    if len(planes) != len(pictures):
        raise RuntimeError(f"mpeg4 decoder gave {len(planes)} frames for {len(pictures)}")
    return imread_rgb(mjpeg_q2_jpegs(planes))


def crop_video_round_trip(crops: np.ndarray) -> np.ndarray:
    """Steps 4+6: ``(N, 224, 224, 3)`` uint8 RGB face crops at 25 fps -> the frames
    ``evaluate`` reads, as RGB.

    The crops are written with OpenCV's XVID writer exactly as ``crop_video`` does (into a
    temporary folder, removed after), decoded with PyAV, given the CLI's ``yuv420p ->
    yuvj420p`` conversion (:func:`range_to_jpeg`) and encoded by the CLI's default MJPEG
    encoder (:func:`asccl.evaluation.lip_sync.cli_jpegs`: 200 kb/s, rate control across the
    frames), each JPEG decoded as ``cv2.imread`` does.
    """
    crops = _check(crops, "crops", FACE_SIZE)
    if len(crops) == 0:
        return crops.copy()
    av = require("av", "the LSE video chain needs PyAV")
    with tempfile.TemporaryDirectory(prefix="asccl_crop_") as tmp:
        path = Path(tmp) / "cropt.avi"
        write_crop_avi(crops, path)
        planes = decode_video(read_video_packets(path))
    if len(planes) != len(crops):
        raise RuntimeError(f"the XVID crop video gave back {len(planes)} of {len(crops)} frames")
    pictures = (av.VideoFrame.from_ndarray(range_to_jpeg(p), format="yuvj420p") for p in planes)
    return imread_rgb(cli_jpegs(pictures, FACE_SIZE, FACE_SIZE))
