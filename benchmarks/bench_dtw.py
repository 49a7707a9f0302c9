"""Stage-1 DTW pairing throughput: asccl's path against a per-pair librosa loop, same clips,
same run.

    python benchmarks/bench_dtw.py                      # 40 synthetic pairs, 48 kHz WAV, ~30 s
    python benchmarks/bench_dtw.py --pairs 100 --format m4a
    python benchmarks/bench_dtw.py --root /data/MEAD --pairs 60   # real MEAD-layout audio
    python benchmarks/bench_dtw.py --authors            # also the authors' pure-Python DTW

Rows (each pair: decode both clips, features of both, cost matrix + DTW):

* asccl: ``load_audio`` (PyAV, resampled to 16 kHz) -> ``frame_features`` (log-Mel on the
  30 fps grid) -> ``cost_matrix`` (L1) -> numba ``dtw``;
* librosa: ``librosa.load(sr=16000)`` -> ``librosa.feature.melspectrogram`` (hop 533) +
  ``power_to_db`` -> ``librosa.sequence.dtw(X, Y, metric="cityblock")``;
* authors (``--authors``): ``librosa.load`` -> python_speech_features MFCC -> their DTW
  arithmetic re-created in plain Python (a per-cell L1 distance, a Python double loop).

Synthetic clips are 3-4 s of speech-like sound (syllable-rate AM of a gliding harmonic tone
with noise bursts); the emotional partner is the same sound time-stretched by 0.8-1.25x and
with fresh noise. ``--format m4a`` needs ffmpeg on the PATH for ``librosa.load`` (audioread);
without it the librosa rows decode with asccl's ``load_audio`` and say so. Everything is warmed
up first (numba compilation, librosa's caches, the OS file cache); then ``--repeats`` passes,
rows interleaved, and the median pass is reported.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np

from asccl.data.audio import frame_features, load_audio
from asccl.data.dtw import _accumulate_py, _backtrack_py, cost_matrix, dtw

SR, FPS, N_MELS = 16000, 30.0, 80
STAGES = ("decode", "features", "dtw")

Pipeline = Callable[[Path, Path, dict[str, float]], np.ndarray]


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--pairs", type=int, default=40, help="clip pairs per pass")
    p.add_argument("--repeats", type=int, default=3, help="timed passes (median reported)")
    p.add_argument("--format", choices=["wav", "m4a"], default="wav", help="synthetic clips")
    p.add_argument("--input-rate", type=int, default=48000, help="synthetic clips' sample rate")
    p.add_argument("--root", type=Path, help="MEAD root: <spk>/audio/<emotion>/level_<n>/*.m4a")
    p.add_argument("--authors", action="store_true", help="add the authors' pure-Python row")
    p.add_argument("--seed", type=int, default=0)
    return p.parse_args()


# ----------------------------------------------------------------------------- inputs


def speech_like(rng: np.random.Generator, seconds: float, sample_rate: int) -> np.ndarray:
    """``(S,)`` float32: syllable-rate bursts of a gliding harmonic tone, plus noise bursts."""
    t = np.arange(int(seconds * sample_rate)) / sample_rate
    rate, f0 = rng.uniform(2.5, 4.5), rng.uniform(100, 220)
    envelope = np.clip(np.sin(2 * np.pi * rate * t + rng.uniform(0, 6)), 0, None) ** 2
    phase = 2 * np.pi * np.cumsum(f0 * (1 + 0.2 * np.sin(2 * np.pi * 0.8 * t))) / sample_rate
    tone = sum(np.sin(k * phase) / k for k in range(1, 6))
    noise = rng.standard_normal(len(t)) * (np.sin(2 * np.pi * rate * 0.5 * t) > 0.7)
    return (0.25 * envelope * tone + 0.05 * noise).astype(np.float32)


def write_clip(path: Path, samples: np.ndarray, sample_rate: int) -> Path:
    """Encode mono float samples: PCM 16-bit WAV, or AAC in an MP4 (.m4a) container."""
    import av

    codec = "aac" if path.suffix == ".m4a" else "pcm_s16le"
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=sample_rate, layout="mono")
        fmt = stream.format.name
        for start in range(0, len(samples), 1024):
            chunk = samples[None, start : start + 1024]
            if fmt == "s16":
                chunk = (np.clip(chunk, -1, 1) * 32767).astype(np.int16)
            frame = av.AudioFrame.from_ndarray(chunk, format=fmt, layout="mono")
            frame.sample_rate, frame.pts = sample_rate, start
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return path


def synthetic_pairs(folder: Path, n: int, fmt: str, sample_rate: int, seed: int):
    rng = np.random.default_rng(seed)
    pairs = []
    for k in range(n):
        seconds = rng.uniform(3.0, 4.0)
        neutral = speech_like(rng, seconds, sample_rate)
        stretch = rng.uniform(0.8, 1.25)
        t_new = np.arange(int(len(neutral) * stretch)) / stretch
        emotional = np.interp(t_new, np.arange(len(neutral)), neutral).astype(np.float32)
        emotional += 0.01 * rng.standard_normal(len(emotional)).astype(np.float32)
        pairs.append((
            write_clip(folder / f"{k:03d}_neutral.{fmt}", neutral, sample_rate),
            write_clip(folder / f"{k:03d}_emotional.{fmt}", emotional, sample_rate),
        ))  # fmt: skip
    return pairs


def mead_pairs(root: Path, n: int):
    """(neutral level_1, emotional level_3) audio of the same speaker and sentence id."""
    pairs = []
    for neutral in sorted(root.glob("*/audio/neutral/level_1/*.m4a")):
        speaker_audio = neutral.parents[2]
        for emotional in sorted(speaker_audio.glob(f"*/level_3/{neutral.name}")):
            pairs.append((neutral, emotional))
            if len(pairs) == n:
                return pairs
    if not pairs:
        raise SystemExit(f"no <speaker>/audio/neutral/level_1/*.m4a with partners under {root}")
    return pairs


# ----------------------------------------------------------------------------- pipelines


class Timer:
    """Adds the seconds spent in ``with timer(stage):`` blocks to ``totals[stage]``."""

    def __init__(self, totals: dict[str, float]) -> None:
        self.totals = totals

    def __call__(self, stage: str) -> Timer:
        self.stage = stage
        return self

    def __enter__(self) -> None:
        self.start = time.perf_counter()

    def __exit__(self, *exc) -> None:
        self.totals[self.stage] += time.perf_counter() - self.start


def asccl_pair(a: Path, b: Path, totals: dict[str, float]) -> np.ndarray:
    timer = Timer(totals)
    with timer("decode"):
        xa, xb = load_audio(a, SR), load_audio(b, SR)
    with timer("features"):
        fa = frame_features(xa, SR, FPS, n_mels=N_MELS)
        fb = frame_features(xb, SR, FPS, n_mels=N_MELS)
    with timer("dtw"):
        path, _ = dtw(cost_matrix(fa, fb, "l1"))
    return path


def make_librosa_load(fallback: bool) -> Callable[[Path], np.ndarray]:
    import librosa

    if fallback:
        return lambda p: load_audio(p, SR)
    return lambda p: librosa.load(p, sr=SR)[0]


def librosa_pair(load: Callable[[Path], np.ndarray]) -> Pipeline:
    import librosa

    def run(a: Path, b: Path, totals: dict[str, float]) -> np.ndarray:
        timer = Timer(totals)
        with timer("decode"):
            xa, xb = load(a), load(b)
        with timer("features"):
            feats = [
                librosa.power_to_db(
                    librosa.feature.melspectrogram(
                        y=x, sr=SR, n_fft=512, hop_length=round(SR / FPS), win_length=400,
                        n_mels=N_MELS,
                    ),
                    top_db=None,
                )
                for x in (xa, xb)
            ]  # fmt: skip
        with timer("dtw"):
            _, wp = librosa.sequence.dtw(X=feats[0], Y=feats[1], metric="cityblock")
        return wp[::-1]

    return run


def authors_pair(load: Callable[[Path], np.ndarray]) -> Pipeline:
    """Their arithmetic re-created: psf MFCC, per-cell L1 in Python, Python accumulation."""
    import python_speech_features as psf

    def run(a: Path, b: Path, totals: dict[str, float]) -> np.ndarray:
        timer = Timer(totals)
        with timer("decode"):
            xa, xb = load(a), load(b)
        with timer("features"):
            fa, fb = psf.mfcc(xa, SR, winstep=1 / FPS), psf.mfcc(xb, SR, winstep=1 / FPS)
        with timer("dtw"):
            cost = np.empty((len(fa), len(fb)))
            for i in range(len(fa)):
                for j in range(len(fb)):
                    cost[i, j] = np.linalg.norm(fa[i] - fb[j], ord=1)
            _, steps = _accumulate_py(cost)
            path = _backtrack_py(steps)
        return path

    return run


# ----------------------------------------------------------------------------- main


def one_pass(pipeline: Pipeline, pairs) -> dict[str, float]:
    totals = dict.fromkeys(STAGES, 0.0)
    for a, b in pairs:
        pipeline(a, b, totals)
    return totals


def main() -> None:
    args = parse_args()
    warnings.filterwarnings("ignore")  # librosa's "PySoundFile failed", audioread deprecation
    with tempfile.TemporaryDirectory(prefix="bench_dtw_") as tmp:
        if args.root:
            pairs = mead_pairs(args.root, args.pairs)
            source = f"{len(pairs)} MEAD pairs under {args.root}"
        else:
            pairs = synthetic_pairs(Path(tmp), args.pairs, args.format, args.input_rate, args.seed)
            source = f"{len(pairs)} synthetic pairs, {args.input_rate} Hz .{args.format}, 3-4 s"

        import librosa

        fallback = False
        try:
            librosa.load(pairs[0][0], sr=SR)
        except Exception as err:  # audioread without a backend, for instance
            fallback = True
            why = f"{type(err).__name__}: {err}".strip()
            print(f"note: librosa.load cannot read {pairs[0][0].name} here ({why}); the librosa "
                  "rows decode with asccl's load_audio")  # fmt: skip
        load = make_librosa_load(fallback)
        rows: dict[str, Pipeline] = {"asccl": asccl_pair, "librosa": librosa_pair(load)}
        if args.authors:
            rows["authors"] = authors_pair(load)

        print(f"inputs: {source}; warming up (numba, librosa caches, file cache) ...")
        for name, pipeline in rows.items():
            one_pass(pipeline, pairs[:2] if name == "authors" else pairs)
        mean_frames = np.mean([len(asccl_pair(a, b, dict.fromkeys(STAGES, 0.0))) for a, b in pairs])

        passes: dict[str, list[dict[str, float]]] = {name: [] for name in rows}
        for _ in range(args.repeats):
            for name, pipeline in rows.items():  # interleaved: rows share machine noise
                passes[name].append(one_pass(pipeline, pairs))

    n = len(pairs)
    print(f"mean DTW path length {mean_frames:.0f} frames; median of {args.repeats} passes\n")
    print(f"{'row':<9}" + "".join(f"{s + ' ms/pair':>18}" for s in (*STAGES, "total"))
          + f"{'pairs/s':>10}")  # fmt: skip
    results = {}
    for name, runs in passes.items():
        median = {s: statistics.median(r[s] for r in runs) / n * 1e3 for s in STAGES}
        median["total"] = statistics.median(sum(r.values()) for r in runs) / n * 1e3
        results[name] = median
        decode = "n/a (asccl's)" if fallback and name != "asccl" else f"{median['decode']:.2f}"
        print(f"{name:<9}{decode:>18}" + "".join(f"{median[s]:>18.2f}" for s in STAGES[1:])
              + f"{median['total']:>18.2f}{1e3 / median['total']:>10.1f}")  # fmt: skip
    base = results["asccl"]
    for name in rows:
        if name == "asccl":
            continue
        ratio = {s: results[name][s] / base[s] for s in (*STAGES, "total")}
        ratios = ", ".join(f"{s} {r:.1f}x" for s, r in ratio.items())
        print(f"\nspeed-up asccl vs {name}: {ratios}")
    if "librosa" in results and results["librosa"]["total"] / base["total"] < 10:
        shares = ", ".join(f"{s} {base[s] / base['total']:.0%}" for s in STAGES)
        print(f"end to end below the 10x target; asccl's time goes to: {shares}")


if __name__ == "__main__":
    main()
