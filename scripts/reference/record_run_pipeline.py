"""Record what syncnet_python's ``run_pipeline.py`` + ``evaluate`` feed SyncNet for one demo
clip, end to end with the real ffmpeg CLI, for ``tests/evaluation/test_syncnet_pipeline.py``.

The clip is ``demo_data/MEAD/M902/video/front/fear/level_3/002.mp4`` (H.264 256x256 at
30 fps, AAC 16 kHz). Its face track is a fixed box (:data:`BOX`, ``x1, y1, x2, y2``) in
every frame, so the crop geometry is the reference's own and the test can give asccl the same
track; everything else is the reference's procedure::

    ffmpeg -y -i clip.mp4 -qscale:v 2 -async 1 -r 25 pyavi/video.avi
    ffmpeg -y -i pyavi/video.avi -qscale:v 2 -threads 1 -f image2 pyframes/%06d.jpg
    ffmpeg -y -i pyavi/video.avi -ac 1 -vn -acodec pcm_s16le -ar 16000 pyavi/audio.wav
    crop_video (written out below: medfilt(13) of the box's size and centre, padding of 110,
      the crop window, cv2.resize to 224, cv2.VideoWriter XVID at 25 fps)
    ffmpeg -y -i pyavi/audio.wav -ss 0.000 -to <frames / 25> audiotmp.wav
    ffmpeg -y -i cropt.avi -i audiotmp.wav -c:v copy -c:a copy crop.avi
    ffmpeg -y -i crop.avi -threads 1 -f image2 pytmp/%06d.jpg               (evaluate)
    ffmpeg -y -i crop.avi -async 1 -ac 1 -vn -acodec pcm_s16le -ar 16000 pytmp/audio.wav

Written under ``--out``, in ``run_pipeline_ffmpeg<major>/`` (the ``ffmpeg`` first on PATH):
``%06d.jpg`` (what ``evaluate`` reads with ``cv2.imread``), ``audio.npz`` (its
``audio.wav`` samples) and ``manifest.json`` (the clip, its SHA-256, the box, the ffmpeg
version).

    python scripts/reference/record_run_pipeline.py [--out tests/evaluation/ffmpeg_cli]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import shutil
import subprocess
import tempfile
import wave
from pathlib import Path

import cv2
import numpy as np
from scipy import signal

ROOT = Path(__file__).resolve().parents[2]
CLIP = Path("demo_data/MEAD/M902/video/front/fear/level_3/002.mp4")
BOX = (52.0, 36.0, 204.0, 216.0)  # x1, y1, x2, y2 around the demo face
CROP_SCALE = 0.4  # run_pipeline's --crop_scale
FRAME_RATE = 25


def ffmpeg(*args: str) -> None:
    subprocess.run(["ffmpeg", "-v", "error", "-y", *args], check=True)


def crop_video(frames_dir: Path, cropfile: Path, count: int) -> None:
    """run_pipeline's ``crop_video`` for a track of ``count`` frames, every one with
    :data:`BOX`, written here from its published procedure."""
    flist = sorted(frames_dir.glob("*.jpg"))
    x1, y1, x2, y2 = BOX
    s = signal.medfilt([max(y2 - y1, x2 - x1) / 2] * count, kernel_size=13)
    y = signal.medfilt([(y1 + y2) / 2] * count, kernel_size=13)
    x = signal.medfilt([(x1 + x2) / 2] * count, kernel_size=13)
    out = cv2.VideoWriter(str(cropfile), cv2.VideoWriter_fourcc(*"XVID"), FRAME_RATE, (224, 224))
    cs = CROP_SCALE
    for i in range(count):
        bs = s[i]
        bsi = int(bs * (1 + 2 * cs))
        image = cv2.imread(str(flist[i]))
        frame = np.pad(image, ((bsi, bsi), (bsi, bsi), (0, 0)), "constant", constant_values=110)
        my, mx = y[i] + bsi, x[i] + bsi
        face = frame[int(my - bs) : int(my + bs * (1 + 2 * cs)),
                     int(mx - bs * (1 + cs)) : int(mx + bs * (1 + cs))]  # fmt: skip
        out.write(cv2.resize(face, (224, 224)))
    out.release()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "tests/evaluation/ffmpeg_cli")
    args = parser.parse_args()
    if not shutil.which("ffmpeg"):
        raise SystemExit("needs the ffmpeg CLI on PATH")
    version = subprocess.run(["ffmpeg", "-version"], check=True, capture_output=True,
                             text=True).stdout.splitlines()[0]  # fmt: skip
    clip = ROOT / CLIP
    major = re.search(r"version n?(\d+)", version).group(1)
    out = args.out / f"run_pipeline_ffmpeg{major}"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        frames, final = work / "pyframes", work / "pytmp"
        frames.mkdir()
        final.mkdir()
        avi, wav = work / "video.avi", work / "audio.wav"
        ffmpeg("-i", str(clip), "-qscale:v", "2", "-async", "1", "-r", "25", str(avi))
        ffmpeg("-i", str(avi), "-qscale:v", "2", "-threads", "1", "-f", "image2",
               str(frames / "%06d.jpg"))  # fmt: skip
        ffmpeg("-i", str(avi), "-ac", "1", "-vn", "-acodec", "pcm_s16le", "-ar", "16000", str(wav))
        count = len(list(frames.glob("*.jpg")))
        crop_video(frames, work / "cropt.avi", count)
        ffmpeg("-i", str(wav), "-ss", "0.000", "-to", f"{count / FRAME_RATE:.3f}",
               str(work / "audiotmp.wav"))  # fmt: skip
        ffmpeg("-i", str(work / "cropt.avi"), "-i", str(work / "audiotmp.wav"), "-c:v", "copy",
               "-c:a", "copy", str(work / "crop.avi"))  # fmt: skip
        ffmpeg("-i", str(work / "crop.avi"), "-threads", "1", "-f", "image2",
               str(final / "%06d.jpg"))  # fmt: skip
        ffmpeg("-i", str(work / "crop.avi"), "-async", "1", "-ac", "1", "-vn", "-acodec",
               "pcm_s16le", "-ar", "16000", str(final / "audio.wav"))  # fmt: skip
        for jpg in sorted(final.glob("*.jpg")):
            shutil.copyfile(jpg, out / jpg.name)
        with wave.open(str(final / "audio.wav")) as w:
            samples = np.frombuffer(w.readframes(w.getnframes()), np.int16)
        np.savez_compressed(out / "audio.npz", samples=samples)
    manifest = {
        "ffmpeg": version,
        "clip": str(CLIP),
        "clip_sha256": hashlib.sha256(clip.read_bytes()).hexdigest(),
        "box": list(BOX),
        "crop_scale": CROP_SCALE,
        "images": count,
        "opencv": cv2.__version__,
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    print(f"{count} images, {len(samples)} samples -> {out}")


if __name__ == "__main__":
    main()
