"""Record the ffmpeg CLI's pictures for syncnet_python's video chain (LSE), as fixtures.

Writes ``tests/evaluation/ffmpeg_cli/video/`` from deterministic inputs (12 frames of
``demo_data``'s first clip and seeded synthetic frames), running the commands of
``run_pipeline.py``/``evaluate`` with the real CLI (``/usr/bin/ffmpeg``, here FFmpeg 5.1):

- ``avi_demo``, ``avi_synth`` (steps 1+2): the frames as a 25 fps raw clip ->
  ``ffmpeg -y -i clip -qscale:v 2 -async 1 -r 25 video.avi`` -> ``ffmpeg -y -i video.avi
  -qscale:v 2 -threads 1 -f image2 %06d.jpg``; kept: ``video.avi`` and the JPEGs;
- ``crop_demo``, ``crop_synth`` (steps 4-6): 224x224 crops written by OpenCV exactly as
  ``crop_video`` (``cropt.avi``) -> ``ffmpeg -y -i cropt.avi -i audiotmp.wav -c:v copy
  -c:a copy crop.avi`` -> ``ffmpeg -y -i crop.avi -threads 1 -f image2 %06d.jpg``; kept:
  ``cropt.avi`` and the JPEGs;
- ``range``: random ``yuv420p`` planes -> ``-pix_fmt yuvj420p -f rawvideo`` (the scale filter
  the CLI inserts before MJPEG), kept in ``range.npz``.

The demo frames are decoded with PyAV (their SHA-256 is kept in ``manifest.json``: the test
rebuilds them and checks it), the synthetic ones rebuilt by :func:`synthetic_frames` (SHA-256
kept too).
Run from the repository root: ``.venv/bin/python scripts/reference/record_avi_video.py``.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import tempfile
from pathlib import Path

import av
import numpy as np

from asccl.evaluation.syncnet_video import write_crop_avi

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "tests/evaluation/ffmpeg_cli/video"
DEMO_CLIP = "demo_data/MEAD/W903/video/front/happy/level_1/001.mp4"
FRAMES = 12


def demo_frames(fmt: str) -> list[np.ndarray]:
    """The first 12 frames of ``DEMO_CLIP`` decoded by PyAV, as ``fmt`` (``yuv420p``/``rgb24``)."""
    with av.open(str(ROOT / DEMO_CLIP)) as container:
        out = []
        for frame in container.decode(video=0):
            out.append(frame.to_ndarray(format=fmt))
            if len(out) == FRAMES:
                return out
    raise RuntimeError(f"{DEMO_CLIP} has fewer than {FRAMES} frames")


def synthetic_frames(size: int, seed: int) -> np.ndarray:
    """``(12, size, size, 3)`` uint8 RGB: a colour ramp, a moving disc, a noisy square."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size].astype(np.float64) / size
    out = np.empty((FRAMES, size, size, 3), np.uint8)
    patch = rng.integers(0, 256, (FRAMES, size // 6, size // 6, 3))
    for i in range(FRAMES):
        image = np.stack([40 + 170 * x, 60 + 120 * y, 200 - 150 * x * y], -1)
        cx, cy = 0.3 + 0.03 * i, 0.5 + 0.02 * i
        disc = (x - cx) ** 2 + (y - cy) ** 2 < 0.04
        image[disc] = (230, 80 + 10 * i, 40)
        s = size // 6
        top = size // 8 + 2 * i
        image[top : top + s, size // 2 : size // 2 + s] = patch[i]
        out[i] = np.clip(np.rint(image), 0, 255)
    return out


def ffmpeg(*args: str, cwd: Path) -> None:
    subprocess.run(["ffmpeg", "-v", "error", *args], cwd=cwd, check=True)


def record_avi(name: str, raw: bytes, pix_fmt: str, size: int, tmp: Path) -> dict:
    """Steps 1+2 on a raw 25 fps clip; returns the commands run."""
    work = tmp / name
    work.mkdir()
    (work / "clip.raw").write_bytes(raw)
    src = ["-f", "rawvideo", "-pix_fmt", pix_fmt, "-s", f"{size}x{size}", "-framerate", "25"]
    step1 = ["-y", *src, "-i", "clip.raw", "-qscale:v", "2", "-async", "1", "-r", "25", "video.avi"]
    step2 = ["-y", "-i", "video.avi", "-qscale:v", "2", "-threads", "1", "-f", "image2", "%06d.jpg"]
    ffmpeg(*step1, cwd=work)
    ffmpeg(*step2, cwd=work)
    # -qscale:v 2 equals rate control clamped to lambda 236 (what asccl sets): same bytes.
    clamp = ["-qmin", "2", "-qmax", "2", "-lmin", "236", "-lmax", "236", "-i_qfactor", "1"]
    ffmpeg("-y", *src, "-i", "clip.raw", *clamp, "-i_qoffset", "0", "-r", "25", "rc.avi", cwd=work)
    if (work / "rc.avi").read_bytes() != (work / "video.avi").read_bytes():
        raise RuntimeError("-qscale:v 2 and the clamped rate control differ in this FFmpeg")
    keep(work, name, ["video.avi"])
    return {"step1": "ffmpeg " + " ".join(step1), "step2": "ffmpeg " + " ".join(step2)}


def record_crops(name: str, crops: np.ndarray, tmp: Path) -> dict:
    """Steps 4-6 on 224x224 RGB crops; returns the commands run."""
    work = tmp / name
    work.mkdir()
    write_crop_avi(crops, work / "cropt.avi")
    seconds = f"{len(crops) / 25:.3f}"
    tone = ["-y", "-f", "lavfi", "-i", "anullsrc=r=16000:cl=mono", "-t", seconds]
    ffmpeg(*tone, "-c:a", "pcm_s16le", "audiotmp.wav", cwd=work)
    step5 = ["-y", "-i", "cropt.avi", "-i", "audiotmp.wav", "-c:v", "copy", "-c:a", "copy"]
    ffmpeg(*step5, "crop.avi", cwd=work)
    step6 = ["-y", "-i", "crop.avi", "-threads", "1", "-f", "image2", "%06d.jpg"]
    ffmpeg(*step6, cwd=work)
    keep(work, name, ["cropt.avi"])
    return {
        "step5": "ffmpeg " + " ".join(step5) + " crop.avi",
        "step6": "ffmpeg " + " ".join(step6),
    }


def keep(work: Path, name: str, extra: list[str]) -> None:
    dest = OUT / name
    shutil.rmtree(dest, ignore_errors=True)
    dest.mkdir(parents=True)
    for path in sorted(work.glob("*.jpg")) + [work / e for e in extra]:
        shutil.copy2(path, dest / path.name)


def sha256(arrays: list[np.ndarray]) -> str:
    return hashlib.sha256(np.ascontiguousarray(np.stack(arrays)).tobytes()).hexdigest()


def main() -> None:
    if shutil.which("ffmpeg") is None:
        raise SystemExit("the ffmpeg CLI is needed to record these fixtures")
    version = subprocess.run(["ffmpeg", "-version"], capture_output=True, text=True, check=True)
    OUT.mkdir(parents=True, exist_ok=True)
    synth_avi, synth_crops = synthetic_frames(128, 1), synthetic_frames(224, 2)
    demo_yuv, demo_rgb = demo_frames("yuv420p"), demo_frames("rgb24")
    start = (demo_rgb[0].shape[0] - 224) // 2
    demo_crops = np.stack(demo_rgb)[:, start : start + 224, start : start + 224]
    range_in = np.random.default_rng(3).integers(0, 256, (4, 96, 64), dtype=np.uint8)
    commands = {}
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        commands["avi_demo"] = record_avi(
            "avi_demo", np.stack(demo_yuv).tobytes(), "yuv420p", 256, tmp
        )
        commands["avi_synth"] = record_avi("avi_synth", synth_avi.tobytes(), "rgb24", 128, tmp)
        commands["crop_demo"] = record_crops("crop_demo", demo_crops, tmp)
        commands["crop_synth"] = record_crops("crop_synth", synth_crops, tmp)
        (tmp / "range.raw").write_bytes(range_in.tobytes())
        src = ["-f", "rawvideo", "-pix_fmt", "yuv420p", "-s", "64x64", "-i", "range.raw"]
        ffmpeg("-y", *src, "-pix_fmt", "yuvj420p", "-f", "rawvideo", "range_j.raw", cwd=tmp)
        range_out = np.frombuffer((tmp / "range_j.raw").read_bytes(), np.uint8).reshape(4, 96, 64)
    np.savez_compressed(OUT / "range.npz", yuv420p=range_in, yuvj420p=range_out)
    manifest = {
        "ffmpeg": version.stdout.splitlines()[0],
        "demo_clip": DEMO_CLIP,
        "demo_yuv420p_sha256": sha256(demo_yuv),
        "demo_rgb24_sha256": sha256(demo_rgb),
        "avi_synth_sha256": sha256(list(synth_avi)),
        "crop_synth_sha256": sha256(list(synth_crops)),
        "commands": commands,
    }
    (OUT / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
