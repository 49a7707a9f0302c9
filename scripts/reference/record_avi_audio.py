"""Record the audio syncnet_python's ``run_pipeline`` makes, with the real ffmpeg CLI, for
``tests/evaluation/test_syncnet_audio.py``.

Each clip of ``tests/evaluation/syncnet_audio_clips.py`` (seeded noise bursts + clicks) and one
bundled demo clip go through ``run_pipeline``'s steps 1 and 3::

    ffmpeg -y -i <clip> -qscale:v 2 -async 1 -r 25 video.avi
    ffmpeg -y -i video.avi -ac 1 -vn -acodec pcm_s16le -ar 16000 audio.wav

Written per clip: ``avi_audio_<name>.npz`` with ``samples`` (audio.wav, int16), the AVI's
audio ``rate``/``channels``/``bit_rate`` (ffprobe), ``priming`` (the ``delay N`` ffmpeg prints
for the MP3 stream with ``-v verbose``, added to step 1 for that log line only),
``signal_sha256`` (of the clip's samples: the test rebuilds the same clip) and
``ffmpeg_version``.

Usage (needs ``ffmpeg`` and ``ffprobe`` on PATH; asccl never calls them)::

    PYTHONPATH=. python scripts/reference/record_avi_audio.py [--out tests/evaluation/ffmpeg_cli]
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
import wave
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
from tests.evaluation.syncnet_audio_clips import (  # noqa: E402 (run with PYTHONPATH=.)
    CLIPS,
    DEMO_CLIP,
    build_clip,
    signal_digest,
)


def run_pipeline_audio(clip: Path, work: Path) -> dict:
    """Steps 1 and 3 on ``clip`` in ``work``: audio.wav's samples and the AVI's audio facts."""
    avi, wav = work / "video.avi", work / "audio.wav"
    step1 = ["ffmpeg", "-y", "-i", str(clip), "-qscale:v", "2", "-async", "1", "-r", "25", str(avi)]
    step1[1:1] = ["-v", "verbose"]  # only the log: it then names the MP3 stream's "delay N"
    log = subprocess.run(step1, capture_output=True, text=True, check=True).stderr
    delay = re.search(r"Audio: mp3 .*delay (\d+)", log)
    step3 = ["ffmpeg", "-y", "-i", str(avi), "-ac", "1", "-vn", "-acodec", "pcm_s16le",
             "-ar", "16000", str(wav)]  # fmt: skip
    subprocess.run(step3, capture_output=True, check=True)
    probe = ["ffprobe", "-v", "error", "-select_streams", "a:0", "-show_entries",
             "stream=sample_rate,channels,bit_rate", "-of", "json", str(avi)]  # fmt: skip
    stream = json.loads(subprocess.run(probe, capture_output=True, check=True).stdout)
    stream = stream["streams"][0]
    with wave.open(str(wav)) as w:
        samples = np.frombuffer(w.readframes(w.getnframes()), np.int16)
    return {
        "samples": samples,
        "rate": int(stream["sample_rate"]),
        "channels": int(stream["channels"]),
        "bit_rate": int(stream["bit_rate"]),
        "priming": int(delay.group(1)) if delay else -1,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "tests/evaluation/ffmpeg_cli")
    args = parser.parse_args()
    if not (shutil.which("ffmpeg") and shutil.which("ffprobe")):
        sys.exit("record_avi_audio: needs ffmpeg and ffprobe on PATH")
    version = subprocess.run(["ffmpeg", "-version"], capture_output=True, text=True)
    version = version.stdout.splitlines()[0]
    args.out.mkdir(parents=True, exist_ok=True)
    names = [*CLIPS, "demo"]
    for name in names:
        with tempfile.TemporaryDirectory() as tmp:
            tmp = Path(tmp)
            clip = ROOT / DEMO_CLIP if name == "demo" else build_clip(name, tmp)
            record = run_pipeline_audio(clip, tmp)
        digest = "" if name == "demo" else signal_digest(CLIPS[name])
        target = args.out / f"avi_audio_{name}.npz"
        np.savez_compressed(
            target, **record, signal_sha256=digest, ffmpeg_version=version, clip=str(clip.name)
        )
        print(f"{target.name}: {len(record['samples'])} samples, {record['rate']} Hz "
              f"{record['channels']} ch {record['bit_rate']} b/s, priming {record['priming']}, "
              f"{target.stat().st_size} bytes")  # fmt: skip


if __name__ == "__main__":
    main()
