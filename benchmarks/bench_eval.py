"""Evaluation speed: FID feature extraction and LSE-D per video, asccl against the way the
reference tools do it, on the same inputs, in the same run.

    python benchmarks/bench_eval.py                        # CPU, random weights, ~1-2 min
    python benchmarks/bench_eval.py --device cuda --images 500 --amp bf16 --channels-last

Part 1, FID features (images/s): the same PNG files are read and turned into 2048-d
InceptionV3 pool features by
* reference: pytorch-fid's procedure re-created: PIL opens each file, numpy -> float tensor
  in [0, 1], batches of 50, a float32 forward (resize to 299 inside the network), on the
  network as built (contiguous NCHW, whatever ``--channels-last`` says);
* asccl: OpenCV decoding, the same weights with ``--channels-last`` (a converted copy) and
  ``--amp`` if given, batches of ``--batch``.
Every timed run is bracketed by ``torch.cuda.synchronize`` on CUDA.
Part 2, LSE-D/LSE-C (seconds per video): one face-track video of ``--frames`` frames with its
audio, through
* reference: syncnet_python's protocol written straight: one window per SyncNet forward, the
  distance curve with a Python loop over offsets and frames;
* asccl: ``evaluate_clip`` (all windows batched, distances vectorised).
Part 3, framing at 1080p (``--framing``, seconds per clip): demo faces pasted off-centre
into 1920x1080 frames written as an H.264 clip, then, in one run,
* decode only: the clip read (``read_frames``);
* framing: the dlib landmark track (detector every ``--detect-every`` frames, landmarks every
  ``--landmark-every`` frames, interpolated between), syncnet_python crops at 25 fps and
  5-point aligned 112x112 faces;
* features: Inception (pytorch-fid input, whole frame), ArcFace on the aligned faces, SyncNet
  windows on the crops (random weights, batch ``--batch``);
* codecs: LSE's ``lse_codecs`` steps (:mod:`asccl.evaluation.syncnet_video`) on every frame
  and on the crops.
It prints framing / (decode + features): the share framing adds to an evaluation (target
<= 50% on CPU).
Weights are random (pass ``--inception-weights``/``--syncnet-weights`` for real ones): speed
does not depend on them. Targets on a GPU: FID features >= 2x, LSE-D >= 10x.
"""

from __future__ import annotations

import argparse
import copy
import math
import tempfile
import time
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import torch


def sync(device: torch.device | None) -> None:
    """Wait for ``device``'s queued work (CUDA; a no-op elsewhere)."""
    if device is not None and device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn, repeats: int, device: torch.device | None = None) -> float:
    """Median wall seconds of ``fn()`` over ``repeats`` runs (after one warm-up run). On
    CUDA the device is synchronised before and after each run: a run's time holds its own
    kernels and none of the previous run's."""
    fn()
    times = []
    for _ in range(repeats):
        sync(device)
        start = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def fid_models(
    features: torch.nn.Module, channels_last: bool
) -> tuple[torch.nn.Module, torch.nn.Module]:
    """The FID rows' two networks: ``(reference, fast)``. ``reference`` is ``features`` as
    given (contiguous NCHW weights: pytorch-fid's procedure); ``fast`` is a deep copy in
    channels_last with ``channels_last``, else ``features`` itself. ``Module.to`` converts
    in place, so converting ``features`` itself would time the reference channels_last."""
    if not channels_last:
        return features, features
    return features, copy.deepcopy(features).to(memory_format=torch.channels_last)


def fid_part(args: argparse.Namespace, device: torch.device) -> tuple[float, float]:
    import cv2
    from PIL import Image

    from asccl.evaluation.inception import FIDInceptionV3, InceptionFeatures, load_inception

    if args.inception_weights:
        features = load_inception(args.inception_weights)
    else:
        features = InceptionFeatures(FIDInceptionV3())
    features = features.to(device)
    folder = Path(tempfile.mkdtemp(prefix="bench_eval_"))
    rng = np.random.default_rng(0)
    files = []
    for i in range(args.images):  # smooth random images, 256x256, as PNG like a frame dump
        small = rng.integers(0, 255, (16, 16, 3), dtype=np.uint8)
        image = cv2.resize(small, (256, 256), interpolation=cv2.INTER_CUBIC)
        files.append(folder / f"{i:05d}.png")
        cv2.imwrite(str(files[-1]), image)

    ref_model, fast = fid_models(features, args.channels_last)

    @torch.no_grad()
    def reference() -> None:
        for start in range(0, len(files), 50):
            batch = [np.asarray(Image.open(f).convert("RGB")) for f in files[start : start + 50]]
            x = torch.from_numpy(np.stack(batch)).permute(0, 3, 1, 2).float() / 255
            ref_model(x.to(device))

    amp = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(args.amp)

    @torch.no_grad()
    def asccl() -> None:
        for start in range(0, len(files), args.batch):
            batch = [cv2.cvtColor(cv2.imread(str(f)), cv2.COLOR_BGR2RGB)
                     for f in files[start : start + args.batch]]  # fmt: skip
            x = torch.from_numpy(np.stack(batch)).to(device).permute(0, 3, 1, 2).float() / 255
            if args.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            with torch.autocast(device.type, dtype=amp) if amp else nullcontext():
                fast(x)

    t_ref = timed(reference, args.repeats, device)
    t_asccl = timed(asccl, args.repeats, device)
    return len(files) / t_ref, len(files) / t_asccl


def lse_part(args: argparse.Namespace, device: torch.device) -> tuple[float, float, float]:
    import python_speech_features

    from asccl.evaluation.lip_sync import evaluate_clip
    from asccl.evaluation.syncnet import SyncNet, load_syncnet

    model = (load_syncnet(args.syncnet_weights) if args.syncnet_weights else SyncNet()).to(device)
    rng = np.random.default_rng(1)
    frames = rng.integers(0, 255, (args.frames, 224, 224, 3), dtype=np.uint8)
    audio = (rng.standard_normal(args.frames * 640) * 3000).astype(np.int16)
    vshift = 15

    @torch.no_grad()
    def reference() -> float:
        im = torch.from_numpy(frames.astype(np.float32)).permute(3, 0, 1, 2)[None].to(device)
        mfcc = np.stack(list(zip(*python_speech_features.mfcc(audio, 16000), strict=True)))
        cct = torch.from_numpy(mfcc.astype(np.float32))[None, None].to(device)
        last = min(len(frames), math.floor(len(audio) / 640)) - 5
        lip = torch.cat([model.forward_lip(im[:, :, v : v + 5]) for v in range(last)])
        aud = torch.cat([model.forward_aud(cct[:, :, :, 4 * v : 4 * v + 20]) for v in range(last)])
        curve = []
        for j in range(2 * vshift + 1):
            total = 0.0
            for i in range(last):
                k = i + j - vshift
                a = aud[k] if 0 <= k < last else torch.zeros_like(lip[i])
                total += float(torch.sqrt(((lip[i] - a + 1e-6) ** 2).sum()))
            curve.append(total / last)
        return min(curve)

    result = {}

    @torch.no_grad()
    def asccl() -> None:
        result["r"] = evaluate_clip(model, frames, audio, batch_size=args.batch)

    t_ref = timed(reference, args.repeats, device)
    t_asccl = timed(asccl, args.repeats, device)
    agree = abs(reference() - result["r"].lse_d)
    return t_ref, t_asccl, agree


def framing_part(args: argparse.Namespace, device: torch.device) -> dict[str, float]:
    """Seconds per clip: decode, framing, features (see the module docstring)."""
    from asccl.data.landmarks import make_landmarker
    from asccl.data.video import write_video
    from asccl.evaluation.framing import (
        arcface_input,
        inception_input,
        make_tracker,
        syncnet_input,
        track_faces,
    )
    from asccl.evaluation.inception import FIDInceptionV3, InceptionFeatures
    from asccl.evaluation.lip_sync import lip_windows
    from asccl.evaluation.results import read_frames
    from asccl.evaluation.syncnet import SyncNet
    from asccl.evaluation.syncnet_timing import avi_frame_sources
    from asccl.evaluation.syncnet_video import avi_frames_round_trip, crop_video_round_trip
    from asccl.metric.iresnet import build_iresnet

    demo = Path(__file__).resolve().parents[1] / "demo_data" / "MEAD" / "W901" / "video"
    faces = read_frames(demo / "front" / "happy" / "level_3" / "001.mp4", args.clip_frames)
    big = np.full((len(faces), 1080, 1920, 3), 40, np.uint8)
    import cv2

    for i, face in enumerate(faces):  # 512 px face, off-centre
        big[i, 300:812, 1100:1612] = cv2.resize(face, (512, 512), interpolation=cv2.INTER_CUBIC)
    clip = Path(tempfile.mkdtemp(prefix="bench_eval_")) / "clip.mp4"
    write_video(clip, big, fps=30.0)
    tracker = make_tracker(make_landmarker("dlib"), args.detect_every)
    inception = InceptionFeatures(FIDInceptionV3()).to(device)
    arcface = build_iresnet("iresnet50", with_head=True).to(device).eval()
    syncnet = SyncNet().to(device)
    out: dict[str, float] = {"frames": float(len(faces))}

    def decode() -> None:
        out["_frames"] = read_frames(clip)

    def frame() -> None:
        frames = out["_frames"]
        track = track_faces(frames, tracker, args.landmark_every)
        sources = avi_frame_sources(np.arange(len(frames)) / 30.0, 30.0)
        out["_sync"] = syncnet_input(frames, sources, "track", track)
        out["_arc"] = arcface_input(frames, "track", track)
        out["no_face"] = float(len(track.no_face))

    @torch.no_grad()
    def features() -> None:
        frames, bs = out["_frames"], args.batch
        for i in range(0, len(frames), bs):
            inception(inception_input(frames[i : i + bs]).to(device))
        arc = torch.from_numpy(out["_arc"].frames).permute(0, 3, 1, 2).float() / 127.5 - 1
        for i in range(0, len(arc), bs):
            arcface(arc[i : i + bs].to(device))
        lips = lip_windows(out["_sync"].frames)
        for i in range(0, len(lips), bs):
            syncnet.forward_lip(lips[i : i + bs].to(device))

    def codecs() -> None:  # lse_codecs: run_pipeline's video codecs (every frame kept once)
        avi_frames_round_trip(out["_frames"])
        crop_video_round_trip(out["_sync"].frames)

    out["decode"] = timed(decode, args.repeats, device)
    out["framing"] = timed(frame, args.repeats, device)
    out["features"] = timed(features, args.repeats, device)
    out["codecs"] = timed(codecs, args.repeats, device)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--images", type=int, default=100)
    parser.add_argument("--frames", type=int, default=50, help="video length at 25 fps")
    parser.add_argument("--batch", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--amp", choices=["off", "bf16", "fp16"], default="off")
    parser.add_argument("--channels-last", action="store_true")
    parser.add_argument("--inception-weights")
    parser.add_argument("--syncnet-weights")
    parser.add_argument("--framing", action="store_true", help="only part 3 (1080p framing)")
    parser.add_argument("--clip-frames", type=int, default=60, help="part 3: 30 fps frames")
    parser.add_argument("--detect-every", type=int, default=10)
    parser.add_argument("--landmark-every", type=int, default=2)
    args = parser.parse_args()
    device = torch.device(args.device)
    print(f"device {device}, torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"amp={args.amp}, channels_last={args.channels_last}")  # fmt: skip
    if args.framing:
        r = framing_part(args, device)
        n, base = r["frames"], r["decode"] + r["features"]
        print(
            f"1080p clip, {n:.0f} frames at 30 fps (detect every {args.detect_every}, landmarks "
            f"every {args.landmark_every}; {r['no_face']:.0f} frames without a face): decode "
            f"{r['decode']:.2f} s ({n / r['decode']:.1f} fps), framing {r['framing']:.2f} s "
            f"({n / r['framing']:.1f} fps), features {r['features']:.2f} s "
            f"({n / r['features']:.1f} fps) -> framing adds {100 * r['framing'] / base:.0f}% "
            "to decode + features (target <= 50%); LSE's codec steps (lse_codecs: MPEG-4/JPEG "
            f"full frames, XVID/MJPEG crops) {r['codecs']:.2f} s ({n / r['codecs']:.1f} fps), "
            f"{100 * r['codecs'] / base:.0f}% more"
        )
        return
    ref_ips, asccl_ips = fid_part(args, device)
    print(
        f"FID features, {args.images} PNG images: reference {ref_ips:.1f} img/s, "
        f"asccl {asccl_ips:.1f} img/s -> {asccl_ips / ref_ips:.2f}x (GPU target >= 2x)"
    )
    t_ref, t_asccl, agree = lse_part(args, device)
    print(
        f"LSE-D, one {args.frames}-frame video: reference {t_ref:.2f} s, asccl {t_asccl:.2f} s "
        f"-> {t_ref / t_asccl:.1f}x (GPU target >= 10x); |LSE-D difference| = {agree:.2e}"
    )


if __name__ == "__main__":
    main()
