"""LSE-D and LSE-C: lip-sync error distance and confidence from SyncNet (syncnet_python).

The protocol, as Wav2Lip's evaluation runs syncnet_python's ``SyncNetInstance.evaluate``:

- video at 25 fps (other rates: the images ``run_pipeline``'s ``ffmpeg -r 25`` gives,
  :mod:`~asccl.evaluation.syncnet_timing`), face-track crops
  of 224x224, BGR floats in 0..255, unnormalised; window ``i`` is frames ``i .. i+4``;
- 16 kHz mono 16-bit audio -> python_speech_features' MFCC with its defaults (13
  coefficients, 25 ms windows every 10 ms: 100 Hz, 4 steps per video frame), unnormalised;
  window ``i`` is MFCC steps ``4i .. 4i+19``;
- ``W = min(frames, floor(samples / 640)) - 5`` windows (syncnet_python's ``lastframe``);
- distances ``d[i, j] = |v_i - a_{i+j-vshift} + 1e-6|_2`` for ``j = 0 .. 2 vshift``, with
  zero audio features beyond both ends (their ``calc_pdist``, ``vshift = 15`` in
  ``run_syncnet``); the curve is their mean over ``i``;
- LSE-D = min of the curve, LSE-C = median(curve) - min, AV offset = vshift - argmin.

Face detection and tracking are out of scope: inputs are already the 224x224 face crops
(syncnet_python's ``run_pipeline`` makes them with S3FD, 0.4 crop scale, and drops tracks
of 100 frames or fewer, keeping ``len(track) > min_track``; here that is ``min_frames``, with
the same inequality, and every drop is reported).

What ``run_pipeline`` and ``evaluate`` feed it, and how asccl's evaluation gets the same
(frame pick, codecs, audio): :mod:`~asccl.evaluation.syncnet_pipeline`. :func:`jpeg_round_trip`
is ``evaluate``'s last step alone (``ffmpeg -y -i crop.avi -threads 1 -f image2 %06d.jpg``
and ``cv2.imread``: FFmpeg's MJPEG encoder at the CLI's defaults, OpenCV's JPEG decoder).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from fractions import Fraction

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchmetrics import Metric

from asccl.optional import require

SAMPLE_RATE = 16000  #: audio rate SyncNet was trained at, Hz
FPS = 25  #: video rate SyncNet was trained at
VSHIFT = 15  #: offsets searched, -VSHIFT..+VSHIFT frames (run_syncnet's default)
FRAMES_PER_WINDOW = 5
MFCC_STEPS_PER_FRAME = 4  # 100 Hz MFCC / 25 fps
MFCC_WINDOW = 20  # MFCC steps per window (0.2 s)
SAMPLES_PER_FRAME = SAMPLE_RATE // FPS  # 640
FACE_SIZE = 224
PDIST_EPS = 1e-6  # torch.nn.functional.pairwise_distance's default, as calc_pdist uses it


@dataclass(frozen=True)
class LipSyncResult:
    """Scores of one clip.

    Attributes:
        lse_d: min of the mean distance curve (lower is better); NaN when dropped.
        lse_c: median - min of that curve (higher is better); NaN when dropped.
        offset: AV offset in 25 fps frames, ``vshift - argmin`` (syncnet_python's sign:
            positive when the audio features that match video frame ``i`` are at ``i - offset``,
            i.e. the audio leads); 0 when dropped.
        num_windows: windows scored.
        curve: ``(2 vshift + 1,)`` mean distance per shift ``-vshift..+vshift``; empty when
            dropped.
        dropped: why the clip was not scored, else ``None``.
    """

    lse_d: float
    lse_c: float
    offset: int
    num_windows: int
    curve: Tensor
    dropped: str | None = None


# ---------------------------------------------------------------------------------- inputs


def to_int16(audio: np.ndarray) -> np.ndarray:
    """16-bit samples as FFmpeg's ``pcm_s16le`` writes them: int16 passes through; floats in
    [-1, 1] (as :func:`asccl.data.audio.load_audio` returns) become ``round(x * 32768)``
    clipped to the int16 range."""
    audio = np.asarray(audio)
    if audio.ndim != 1:
        raise ValueError(f"audio must be (S,) mono samples, got shape {audio.shape}")
    if audio.dtype == np.int16:
        return audio
    if not np.issubdtype(audio.dtype, np.floating):
        raise TypeError(f"audio must be int16 or float in [-1, 1], got {audio.dtype}")
    return np.clip(np.rint(audio.astype(np.float64) * 32768.0), -32768, 32767).astype(np.int16)


def syncnet_mfcc(audio: np.ndarray) -> Tensor:
    """``(S,)`` 16 kHz mono audio -> ``(T, 13)`` float32 MFCC, as syncnet_python computes it.

    That is ``python_speech_features.mfcc(samples, 16000)`` with every default (25 ms
    window, 10 ms step, 26 filters, FFT 512, pre-emphasis 0.97, lifter 22, log energy as
    coefficient 0) on the int16 sample *values* (no scaling to [-1, 1]).
    ``T = 1 + ceil((S - 400) / 160)`` for ``S >= 400``.
    """
    psf = require("python_speech_features", "LSE-D/LSE-C need python_speech_features")
    samples = to_int16(audio)
    if len(samples) == 0:
        raise ValueError("audio has no samples")
    mfcc = psf.mfcc(samples.astype(np.float64), SAMPLE_RATE)  # (T, 13) float64
    return torch.from_numpy(mfcc.astype(np.float32))


def mfcc_windows(mfcc: Tensor, num_windows: int) -> Tensor:
    """``(T, 13)`` MFCC -> ``(W, 1, 13, 20)`` windows, window ``i`` = steps ``4i .. 4i+19``."""
    if mfcc.ndim != 2 or mfcc.shape[1] != 13:
        raise ValueError(f"mfcc must have shape (T, 13), got {tuple(mfcc.shape)}")
    needed = MFCC_STEPS_PER_FRAME * (num_windows - 1) + MFCC_WINDOW
    if num_windows < 1 or mfcc.shape[0] < needed:
        raise ValueError(f"{num_windows} windows need {needed} MFCC steps, got {mfcc.shape[0]}")
    windows = mfcc.T.unfold(1, MFCC_WINDOW, MFCC_STEPS_PER_FRAME)  # (13, Wmax, 20)
    return windows[:, :num_windows].permute(1, 0, 2).unsqueeze(1)  # (W, 1, 13, 20)


def lip_windows(frames: Tensor | np.ndarray, num_windows: int | None = None) -> Tensor:
    """``(N, 224, 224, 3)`` BGR frames in 0..255 -> ``(W, 3, 5, 224, 224)`` float32 windows.

    Window ``i`` is frames ``i .. i+4``; ``W`` defaults to every window, ``N - 4``. The
    result is a strided view of one float copy of the frames (no 5x copy).
    """
    frames = frames if isinstance(frames, Tensor) else torch.from_numpy(np.asarray(frames))
    if frames.ndim != 4 or tuple(frames.shape[1:]) != (FACE_SIZE, FACE_SIZE, 3):
        raise ValueError(
            "frames must be 224x224 face crops of shape (N, 224, 224, 3), "
            f"got {tuple(frames.shape)}"
        )
    most = frames.shape[0] - FRAMES_PER_WINDOW + 1
    num_windows = most if num_windows is None else num_windows
    if not 1 <= num_windows <= most:
        raise ValueError(
            f"{frames.shape[0]} frames give 1..{most} windows, asked for {num_windows}"
        )
    video = frames.float().permute(3, 0, 1, 2)  # (3, N, 224, 224)
    windows = video.unfold(1, FRAMES_PER_WINDOW, 1)  # (3, N-4, 224, 224, 5)
    return windows[:, :num_windows].permute(1, 0, 4, 2, 3)  # (W, 3, 5, 224, 224)


#: FFmpeg's default encoder bit rate (``AV_CODEC_DEFAULT_BITRATE``): what ``ffmpeg -i crop.avi
#: %06d.jpg`` gives the MJPEG encoder without ``-b:v``/``-q:v``. At 224x224 and 25 fps its rate
#: control settles at the largest quantiser (qmax 31), about 2.9 kB per face crop.
MJPEG_BIT_RATE = 200_000


def jpeg_round_trip(frames: np.ndarray) -> np.ndarray:
    """``(N, H, W, 3)`` uint8 RGB 25 fps crops -> the same after syncnet_python's JPEG step.

    ``ffmpeg -y -i crop.avi -threads 1 -f image2 %06d.jpg`` then ``cv2.imread``: one MJPEG
    encoder over the whole sequence (its rate control carries from frame to frame) with the
    CLI's settings: ``yuvj420p``, :data:`MJPEG_BIT_RATE`, time base 1/25, one thread (more
    threads would cut each image into slices), libavcodec's other defaults; each packet is one
    JFIF file, decoded by OpenCV (libjpeg) as ``cv2.imread`` does, BGR turned back to RGB.
    """
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(
            f"frames must be (N, H, W, 3) uint8 RGB, got {frames.shape} {frames.dtype}"
        )
    if len(frames) == 0:
        return frames.copy()
    av = require("av", "LSE's codec steps (lse_codecs) need PyAV")
    pictures = (
        av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24") for frame in frames
    )
    return imread_rgb(cli_jpegs(pictures, frames.shape[2], frames.shape[1]))


def cli_jpegs(pictures, width: int, height: int) -> list[bytes]:
    """The JPEG files ``ffmpeg -i <video> -threads 1 -f image2 %06d.jpg`` writes for
    ``pictures`` (PyAV ``VideoFrame``s of ``width`` x ``height``, 25 fps, in order).

    One MJPEG encoder over the whole sequence with the CLI's settings (see
    :func:`jpeg_round_trip`); frames not in ``yuvj420p`` are converted by PyAV on the way in.
    """
    av = require("av", "LSE's codec steps (lse_codecs) need PyAV")
    ctx = av.CodecContext.create("mjpeg", "w")
    ctx.width, ctx.height = width, height
    ctx.pix_fmt, ctx.bit_rate, ctx.thread_count = "yuvj420p", MJPEG_BIT_RATE, 1
    ctx.time_base, ctx.framerate = Fraction(1, FPS), Fraction(FPS)
    packets, count = [], 0
    for i, picture in enumerate(pictures):
        picture.pts = i
        packets.extend(ctx.encode(picture))
        count += 1
    packets.extend(ctx.encode(None))
    if len(packets) != count:
        raise RuntimeError(f"MJPEG encoder gave {len(packets)} images for {count} frames")
    return [bytes(p) for p in packets]


def imread_rgb(jpegs: list[bytes]) -> np.ndarray:
    """JPEG files -> ``(N, H, W, 3)`` uint8 RGB, decoded as ``cv2.imread`` does (OpenCV's
    libjpeg, BGR), turned to RGB."""
    from asccl.data.opencv import cv2

    out = None
    for i, jpeg in enumerate(jpegs):
        image = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
        if out is None:
            out = np.empty((len(jpegs), *image.shape), np.uint8)
        cv2.cvtColor(image, cv2.COLOR_BGR2RGB, dst=out[i])  # a channel swap, exact
    return out if out is not None else np.zeros((0, 0, 0, 3), np.uint8)


# ---------------------------------------------------------------------------------- maths


def sync_distances(video_feats: Tensor, audio_feats: Tensor, vshift: int = VSHIFT) -> Tensor:
    """``(F, D), (F, D) -> (F, 2 vshift + 1)`` distances between each video feature and the
    audio features shifted by ``-vshift..+vshift``.

    ``d[i, j] = |v_i - a_{i + j - vshift} + eps|_2`` (``pairwise_distance``, eps 1e-6), with
    ``a_k = 0`` for ``k < 0`` or ``k >= F`` (syncnet_python's ``calc_pdist``, batched).
    """
    if video_feats.ndim != 2 or video_feats.shape != audio_feats.shape:
        raise ValueError(
            "video and audio features must both be (F, D), got "
            f"{tuple(video_feats.shape)} and {tuple(audio_feats.shape)}"
        )
    if vshift < 0:
        raise ValueError(f"vshift must be >= 0, got {vshift}")
    num = video_feats.shape[0]
    padded = F.pad(audio_feats, (0, 0, vshift, vshift))  # (F + 2 vshift, D)
    index = torch.arange(num)[:, None] + torch.arange(2 * vshift + 1)  # (F, 2 vshift + 1)
    shifted = padded[index]  # (F, 2 vshift + 1, D)
    return F.pairwise_distance(video_feats[:, None, :], shifted, eps=PDIST_EPS)


def lse_scores(dists: Tensor) -> tuple[float, float, int]:
    """``(F, 2 vshift + 1)`` distances -> ``(lse_d, lse_c, offset)``.

    With ``c = mean_i dists[i]`` (the curve): ``lse_d = min c``, ``lse_c = median c - min c``
    (``torch.median``: the lower middle value for an even length), ``offset = vshift -
    argmin c``.
    """
    if dists.ndim != 2 or dists.shape[0] == 0 or dists.shape[1] % 2 == 0:
        raise ValueError(f"dists must be (F >= 1, 2 vshift + 1), got {tuple(dists.shape)}")
    curve = dists.mean(0)
    min_val, min_idx = torch.min(curve, 0)
    vshift = (dists.shape[1] - 1) // 2
    return float(min_val), float(torch.median(curve) - min_val), vshift - int(min_idx)


# ---------------------------------------------------------------------------------- a clip


def usable_windows(num_frames: int, num_samples: int) -> int:
    """syncnet_python's window count: ``min(frames, floor(samples / 640)) - 5`` (may be <= 0)."""
    return min(num_frames, num_samples // SAMPLES_PER_FRAME) - FRAMES_PER_WINDOW


def evaluate_clip(
    model: nn.Module,
    frames: Tensor | np.ndarray,
    audio: np.ndarray,
    *,
    fps: float = FPS,
    rgb: bool = False,
    vshift: int = VSHIFT,
    min_frames: int = 0,
    batch_size: int = 32,
) -> LipSyncResult:
    """LSE-D / LSE-C of one face track.

    Args:
        model: a :class:`~asccl.evaluation.syncnet.SyncNet` (``forward_lip``, ``forward_aud``).
        frames: ``(N, 224, 224, 3)`` face crops in 0..255 (uint8 or float), BGR unless
            ``rgb`` (as :func:`asccl.data.video.iter_frames` yields), at ``fps``.
        audio: ``(S,)`` 16 kHz mono, int16 or float in [-1, 1] (converted by :func:`to_int16`).
        fps: frame rate of ``frames`` (constant, starting at 0); other than 25 they become
            the 25 fps images syncnet_python's ``run_pipeline`` makes of them
            (:func:`~asccl.evaluation.syncnet_timing.avi_frame_sources`, without an audio
            track's MP3 shift; MEAD is 30 fps).
        min_frames: tracks of this many 25 fps frames or fewer are dropped (syncnet_python's
            ``len(track) > min_track`` keeps a track, 100 by default; 0: none dropped here).
        batch_size: windows per forward pass.

    Returns:
        A :class:`LipSyncResult`. A clip too short for ``min_frames`` or for a single
        window is not scored: its ``dropped`` says why, and a warning is issued.
    """
    frames = frames if isinstance(frames, Tensor) else torch.from_numpy(np.asarray(frames))
    if frames.ndim != 4 or tuple(frames.shape[1:]) != (FACE_SIZE, FACE_SIZE, 3):
        raise ValueError(
            "frames must be 224x224 face crops of shape (N, 224, 224, 3), "
            f"got {tuple(frames.shape)}"
        )
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    samples = to_int16(audio)
    if fps != FPS:
        from asccl.evaluation.syncnet_timing import avi_frame_sources

        n = frames.shape[0]
        frames = frames[torch.from_numpy(avi_frame_sources(np.arange(n) / fps, fps))]
    if rgb:
        frames = frames.flip(-1)
    num_frames = frames.shape[0]
    num_windows = usable_windows(num_frames, len(samples))
    reason = None
    if min_frames and num_frames <= min_frames:
        reason = f"{num_frames} frames at 25 fps, not more than min_frames={min_frames}"
    elif num_windows < 1:
        reason = (
            f"too short for one window: {num_frames} frames at 25 fps and {len(samples)} "
            f"samples give min(frames, samples // 640) - 5 = {num_windows}"
        )
    if reason is not None:
        warnings.warn(f"lip sync: clip dropped: {reason}", stacklevel=2)
        nan = float("nan")
        return LipSyncResult(nan, nan, 0, 0, torch.zeros(0), dropped=reason)

    lips = lip_windows(frames, num_windows)  # (W, 3, 5, 224, 224) view
    mfcc = mfcc_windows(syncnet_mfcc(samples), num_windows)  # (W, 1, 13, 20)
    video_feats, audio_feats = _embed(model, lips, mfcc, batch_size)
    dists = sync_distances(video_feats, audio_feats, vshift)
    lse_d, lse_c, offset = lse_scores(dists)
    return LipSyncResult(lse_d, lse_c, offset, num_windows, dists.mean(0))


@torch.no_grad()
def _embed(model: nn.Module, lips: Tensor, mfcc: Tensor, batch_size: int) -> tuple[Tensor, Tensor]:
    """``(W, 1024)`` video and audio embeddings, ``batch_size`` windows per forward pass."""
    device = next(model.parameters()).device
    video_feats, audio_feats = [], []
    for start in range(0, lips.shape[0], batch_size):
        stop = start + batch_size
        video_feats.append(model.forward_lip(lips[start:stop].to(device)).float().cpu())
        audio_feats.append(model.forward_aud(mfcc[start:stop].to(device)).float().cpu())
    return torch.cat(video_feats), torch.cat(audio_feats)


# ---------------------------------------------------------------------------------- metric


class LipSync(Metric):
    """Mean LSE-D and LSE-C over clips (each clip weighs the same, as in Wav2Lip's tables).

    ``update(lse_d, lse_c)`` takes per-clip scores (floats or ``(B,)`` tensors); NaN pairs
    (dropped clips, see :func:`evaluate_clip`) are counted in ``dropped`` and left out of the
    means. ``compute()`` returns ``{"lse_d", "lse_c", "clips", "dropped"}``. States are float64
    sums and counts, summed across processes.
    """

    higher_is_better = None  # LSE-D lower, LSE-C higher
    is_differentiable = False
    full_state_update = False

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        zero = torch.tensor(0.0, dtype=torch.float64)
        self.add_state("lse_d_sum", zero.clone(), dist_reduce_fx="sum")
        self.add_state("lse_c_sum", zero.clone(), dist_reduce_fx="sum")
        self.add_state("clips", torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")
        self.add_state("dropped", torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")

    def update(self, lse_d: Tensor | float, lse_c: Tensor | float) -> None:
        d = torch.as_tensor(lse_d, dtype=torch.float64).reshape(-1).to(self.lse_d_sum.device)
        c = torch.as_tensor(lse_c, dtype=torch.float64).reshape(-1).to(self.lse_d_sum.device)
        if d.shape != c.shape:
            raise ValueError(
                f"lse_d and lse_c must pair up, got {tuple(d.shape)}, {tuple(c.shape)}"
            )
        dropped = d.isnan() & c.isnan()
        if (d.isnan() ^ c.isnan()).any() or d.isinf().any() or c.isinf().any():
            raise ValueError("lse_d and lse_c must be finite (NaN in both marks a dropped clip)")
        self.lse_d_sum += d[~dropped].sum()
        self.lse_c_sum += c[~dropped].sum()
        self.clips += int((~dropped).sum())
        self.dropped += int(dropped.sum())

    def compute(self) -> dict[str, Tensor]:
        if self.clips == 0:
            raise RuntimeError(
                f"LipSync.compute(): no clip scored ({int(self.dropped)} dropped, see min_frames)"
            )
        return {
            "lse_d": self.lse_d_sum / self.clips,
            "lse_c": self.lse_c_sum / self.clips,
            "clips": self.clips.clone(),
            "dropped": self.dropped.clone(),
        }
