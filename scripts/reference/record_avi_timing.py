"""Record which source frame each image of syncnet_python's ``run_pipeline`` shows, with the
real ffmpeg CLI, for ``tests/evaluation/test_syncnet_timing.py``.

For each case a small clip is made with PyAV (64x64 frames whose 12 bit blocks spell the
frame number; H.264 in MKV or MP4; optional PCM/AAC audio, optionally starting late), then
run through ``run_pipeline``'s two commands::

    ffmpeg -y -i in.<ext> -qscale:v 2 -async 1 -r 25 video.avi
    ffmpeg -y -i video.avi -qscale:v 2 -threads 1 -f image2 %06d.jpg

and each JPEG's frame number is read back. Written: ``avi_timing_ffmpeg<major>.json`` (per
case: the clip's frame times from ffprobe, its frame rate, audio rate and starts, and the
images' frame numbers) and the clips of a few cases (``timing_*.mkv``/``.mp4``, for the
frame-time reader's test).

Usage (needs ``ffmpeg`` and ``ffprobe`` on PATH, the ``ffmpeg`` first on PATH is the one
recorded; asccl never calls them)::

    python scripts/reference/record_avi_timing.py [--out tests/evaluation/ffmpeg_cli]
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import tempfile
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np

SIZE, BLOCK, BITS = 64, 16, 12
#: name: (frames, fps, video start s, audio rate (0: none), audio start s, variable rate, ext)
CASES = {
    "30fps": (60, "30", "0", 0, "0", False, "mkv"),
    "30fps_long": (301, "30", "0", 0, "0", False, "mkv"),
    "29.97fps": (90, "30000/1001", "0", 0, "0", False, "mkv"),
    "24fps": (50, "24", "0", 0, "0", False, "mkv"),
    "23.976fps": (77, "24000/1001", "0", 0, "0", False, "mkv"),
    "25fps": (40, "25", "0", 0, "0", False, "mkv"),
    "50fps": (100, "50", "0", 0, "0", False, "mkv"),
    "60fps": (120, "60", "0", 0, "0", False, "mkv"),
    "15fps": (30, "15", "0", 0, "0", False, "mkv"),
    "12fps": (20, "12", "0", 0, "0", False, "mkv"),
    "video_late": (60, "30", "1/5", 0, "0", False, "mkv"),
    "audio_8k": (60, "30", "0", 8000, "0", False, "mkv"),
    "audio_11k": (60, "30", "0", 11025, "0", False, "mkv"),
    "audio_16k": (60, "30", "0", 16000, "0", False, "mkv"),
    "audio_22k": (60, "30", "0", 22050, "0", False, "mkv"),
    "audio_24k": (60, "30", "0", 24000, "0", False, "mkv"),
    "audio_32k": (60, "30", "0", 32000, "0", False, "mkv"),
    "audio_44k": (60, "30", "0", 44100, "0", False, "mkv"),
    "audio_48k": (60, "30", "0", 48000, "0", False, "mkv"),
    "25fps_audio_16k": (50, "25", "0", 16000, "0", False, "mkv"),
    "24fps_audio_22k": (50, "24", "0", 22050, "0", False, "mkv"),
    "50fps_audio_8k": (100, "50", "0", 8000, "0", False, "mkv"),
    "60fps_audio_16k": (120, "60", "0", 16000, "0", False, "mkv"),
    "video_late_audio_16k": (60, "30", "1/5", 16000, "0", False, "mkv"),
    "video_late_audio_8k": (60, "30", "1/5", 8000, "0", False, "mkv"),
    "audio_late_16k": (60, "30", "0", 16000, "3/10", False, "mkv"),
    "both_late_16k": (60, "30", "1/10", 16000, "1/20", False, "mkv"),
    "vfr_audio_16k": (60, "30", "0", 16000, "0", True, "mkv"),
    "vfr_25fps": (60, "25", "0", 0, "0", True, "mkv"),
    "mp4_aac_16k": (60, "30", "0", 16000, "0", False, "mp4"),
    "mp4_aac_48k": (60, "30", "0", 48000, "0", False, "mp4"),
    "mp4_29.97fps_aac_44k": (90, "30000/1001", "0", 44100, "0", False, "mp4"),
    "mp4_video_late_aac_48k": (60, "30", "1/5", 48000, "0", False, "mp4"),
}
#: the cases whose clips are kept (frame_times is tested on them)
KEEP = ("vfr_audio_16k", "mp4_video_late_aac_48k", "mp4_aac_48k")


def coded_frame(i: int) -> np.ndarray:
    """A 64x64 RGB frame whose 12 blocks (3 rows of 4) are white where ``i`` has a 1 bit."""
    image = np.zeros((SIZE, SIZE, 3), np.uint8)
    for bit in range(BITS):
        if (i >> bit) & 1:
            r, c = divmod(bit, 4)
            image[r * BLOCK + 3 : r * BLOCK + 13, c * BLOCK + 3 : c * BLOCK + 13] = 255
    return image


def frame_number(image: np.ndarray) -> int:
    """The number :func:`coded_frame` spelled (block centres, any colour order)."""
    return sum(1 << b for b in range(BITS)
               if image[(b // 4) * BLOCK + 8, (b % 4) * BLOCK + 8].mean() > 127)  # fmt: skip


def make_clip(path: Path, n: int, fps: str, vstart: str, rate: int, astart: str, vfr: bool):
    """The case's clip: H.264 frames at ``fps`` from ``vstart`` s (jittered by 0.6-1.4 frame
    intervals when ``vfr``), and a click train (one every 0.2 s) from ``astart`` s."""
    rng = np.random.default_rng(0)
    fps_q = Fraction(fps)
    mp4 = path.suffix == ".mp4"
    with av.open(str(path), "w") as c:
        s = c.add_stream("libx264", rate=fps_q)
        s.width = s.height = SIZE
        s.pix_fmt = "yuv420p"
        s.options = {"crf": "10", "x264-params": "mbtree=0"}
        tb = Fraction(1, 1000) if vfr else 1 / fps_q
        s.codec_context.time_base = tb
        a = None
        if rate:
            a = c.add_stream("aac" if mp4 else "pcm_s16le", rate=rate, layout="mono")
        t = Fraction(vstart)
        for i in range(n):
            frame = av.VideoFrame.from_ndarray(coded_frame(i), format="rgb24")
            frame.pts, frame.time_base = round(t / tb), tb
            c.mux(s.encode(frame))
            t += (1 / fps_q) * (Fraction(int(rng.integers(6, 15)), 10) if vfr else 1)
        c.mux(s.encode(None))
        if a is not None:
            pcm = np.zeros(int(float(n / fps_q + Fraction(vstart)) * rate), np.int16)
            pcm[:: rate // 5] = 20000
            offset = round(Fraction(astart) * rate)
            for k in range(0, len(pcm), 1024):
                chunk = pcm[None, k : k + 1024]
                if mp4:
                    frame = av.AudioFrame.from_ndarray(
                        chunk.astype(np.float32) / 32768, format="fltp", layout="mono"
                    )
                else:
                    frame = av.AudioFrame.from_ndarray(chunk, format="s16", layout="mono")
                frame.sample_rate, frame.pts = rate, k + offset
                frame.time_base = Fraction(1, rate)
                c.mux(a.encode(frame))
            c.mux(a.encode(None))


def ffprobe_times(path: Path) -> tuple[list[str], str]:
    """The clip's video frame times minus the container's start (ffprobe's; exact fractions
    of seconds from the timestamps and the stream's time base), and its rate."""

    def probe(*args: str) -> str:
        return subprocess.run(["ffprobe", "-v", "error", *args, str(path)], check=True,
                              capture_output=True, text=True).stdout.strip()  # fmt: skip

    start = Fraction(probe("-show_entries", "format=start_time", "-of", "csv=p=0") or "0")
    rate, base = probe("-select_streams", "v:0", "-show_entries",
                       "stream=r_frame_rate,time_base", "-of", "csv=p=0").split(",")  # fmt: skip
    lines = probe("-select_streams", "v:0", "-show_entries", "frame=best_effort_timestamp",
                  "-of", "csv=p=0").split()  # fmt: skip
    ticks = [int(x.split(",")[0]) for x in lines]
    return [str(t * Fraction(base) - start) for t in ticks], rate


def run_pipeline_images(clip: Path, work: Path) -> list[int]:
    """run_pipeline's two ffmpeg commands on ``clip``; each image's frame number."""
    avi, frames = work / "video.avi", work / "frames"
    frames.mkdir()
    quiet = ["ffmpeg", "-v", "error", "-y", "-i"]
    subprocess.run([*quiet, str(clip), "-qscale:v", "2", "-async", "1", "-r", "25", str(avi)],
                   check=True)  # fmt: skip
    subprocess.run([*quiet, str(avi), "-qscale:v", "2", "-threads", "1", "-f", "image2",
                    str(frames / "%06d.jpg")], check=True)  # fmt: skip
    return [frame_number(cv2.imread(str(f))) for f in sorted(frames.glob("*.jpg"))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("tests/evaluation/ffmpeg_cli"))
    args = parser.parse_args()
    if not (shutil.which("ffmpeg") and shutil.which("ffprobe")):
        raise SystemExit("needs the ffmpeg and ffprobe CLIs on PATH")
    version = subprocess.run(["ffmpeg", "-version"], check=True, capture_output=True,
                             text=True).stdout.splitlines()[0]  # fmt: skip
    args.out.mkdir(parents=True, exist_ok=True)
    cases = {}
    for name, (n, fps, vstart, rate, astart, vfr, ext) in CASES.items():
        with tempfile.TemporaryDirectory() as tmp:
            work = Path(tmp)
            clip = work / f"in.{ext}"
            make_clip(clip, n, fps, vstart, rate, astart, vfr)
            times, stream_rate = ffprobe_times(clip)
            images = run_pipeline_images(clip, work)
            if name in KEEP:
                shutil.copyfile(clip, args.out / f"timing_{name}.{ext}")
        cases[name] = {"frames": n, "fps": fps, "r_frame_rate": stream_rate,
                       "video_start": vstart, "audio_rate": rate, "audio_start": astart,
                       "variable_rate": vfr, "container": ext, "times": times,
                       "images": images}  # fmt: skip
        print(f"{name}: {len(images)} images")
    # an MP4 whose edit list starts mid-GOP: the packets before it are demuxed, marked for
    # discarding and not decoded (`-ss 0.5 -c copy` of the kept mp4_aac_48k clip, made once)
    trimmed = args.out / "timing_mp4_editlist.mp4"
    if not trimmed.exists():
        subprocess.run(["ffmpeg", "-v", "error", "-y", "-ss", "0.5", "-i",
                        str(args.out / "timing_mp4_aac_48k.mp4"), "-c", "copy", str(trimmed)],
                       check=True)  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        times, stream_rate = ffprobe_times(trimmed)
        images = run_pipeline_images(trimmed, Path(tmp))
    with av.open(str(trimmed)) as container:  # the number the first decoded frame spells
        first = frame_number(next(container.decode(video=0)).to_ndarray(format="rgb24"))
    images = [i - first for i in images]  # as indices of the decoded frames
    cases["mp4_editlist"] = {"frames": len(times), "fps": "30", "r_frame_rate": stream_rate,
                             "video_start": "0", "audio_rate": 48000, "audio_start": "0",
                             "variable_rate": False, "container": "mp4", "times": times,
                             "images": images}  # fmt: skip
    print(f"mp4_editlist: {len(images)} images")
    record = {"ffmpeg": version, "cases": cases}
    major = re.search(r"version n?(\d+)", version).group(1)
    (args.out / f"avi_timing_ffmpeg{major}.json").write_text(json.dumps(record, indent=1) + "\n")


if __name__ == "__main__":
    main()
