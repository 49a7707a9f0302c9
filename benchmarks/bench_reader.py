"""The training data reader at MEAD scale: per-clip crop stores vs the frame pack, against
the bare JPEG-decode floor of the same frames, in one run.

    python benchmarks/bench_reader.py                 # 3,000 clips x 40 frames, 224 px
    python benchmarks/bench_reader.py --clips 7650 --frames 40 --pairs 3000

Builds a synthetic stage-1 folder in a temp dir: ``--clips`` JPEG crop stores (each its
own ``crops/<clip id>.npz`` in the store's exact layout; frame bytes drawn from
``--distinct`` face-like 224 px JPEGs at the stores' quality 95, encoded once and reused,
so each store's bytes are real JPEGs of realistic size), a ``pairs.csv`` pairing clip
``2k`` (neutral) with ``2k + 1`` (emotional) frame by frame, and the pack
(``asccl.data.frame_pack.pack_crops``, as ``asccl data pack``). Then, in rounds, on the
same ``--pairs`` random items (seeded permutation of all frame pairs):

* floor: the two frames' JPEG bytes copied out to separate in-memory arrays first
  (``--pairs x 2`` buffers, more than the CPU caches), then ``cv2.imdecode`` of each;
* old: ``PairedFrames(data, frame_pack="off")[i]``: per-clip stores through its LRU of
  64 open readers (with thousands of clips nearly every read opens a store);
* new: ``PairedFrames(data, frame_pack="on")[i]``: the pack.

Each measurement runs in its own forked process, one at a time (a DataLoader worker's
situation: forked from the process that built the dataset, shards mapped lazily there);
it reports wall and CPU time (user + system: other tenants of a shared machine slow the
wall rate much more than the CPU rate, so on a busy machine the per-core ratio to read is
the CPU one; on an idle one both agree) and its memory: peak RSS (``VmHWM``, inherited
pages included), and at the end anonymous vs file-backed RSS (mapped shard pages are file
pages: shared between workers and reclaimable). Rates are the median over rounds; the
page cache is warm (the files were just written), as on a host whose RAM holds the data.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import statistics
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import torch

from asccl.data.crop_store import FORMAT_VERSION, JPEG_QUALITY, crop_path
from asccl.data.frame_pack import pack_crops
from asccl.data.pair_files import AlignedPair, write_pairs_table
from asccl.io import atomic_write
from asccl.training.dataset import PairedFrames

SPEAKERS = 30


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--clips", type=int, default=3000, help="crop stores (MEAD: ~7,650)")
    p.add_argument("--frames", type=int, default=40, help="frames per clip")
    p.add_argument("--size", type=int, default=224, help="crop side")
    p.add_argument("--distinct", type=int, default=64, help="distinct JPEGs, reused")
    p.add_argument("--pairs", type=int, default=500, help="random frame pairs per round")
    p.add_argument("--rounds", type=int, default=9, help="rounds (median reported)")
    p.add_argument("--verify", action="store_true", help="also time a verified pack open")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--dir", type=Path, help="build here instead of a temp dir (kept)")
    args = p.parse_args()
    if args.clips < 2 or args.clips % 2:
        p.error("--clips must be even and >= 2 (clips are paired)")
    return args


# ----------------------------------------------------------------------------- data


def face_like_jpegs(n: int, size: int, seed: int) -> list[np.ndarray]:
    """``n`` JPEGs (quality 95) of smooth skin-like texture with sensor noise: ~20 KB at
    224 px, as the crop store's docs measure real face crops."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        field = cv2.GaussianBlur(rng.integers(0, 256, (size, size, 3), dtype=np.uint8), (0, 0), 6)
        image = field.astype(np.float32) * 3 - 200 + rng.normal(0, 6, (size, size, 3))
        image = np.clip(image, 0, 255).astype(np.uint8)
        ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
        assert ok
        out.append(buf.reshape(-1))
    return out


def write_store(path: Path, jpegs: list[np.ndarray], size: int) -> None:
    """One clip's store in ``crop_store.write_clip_crops``'s exact "jpeg" layout."""
    n = len(jpegs)
    offsets = np.zeros(n + 1, np.int64)
    offsets[1:] = np.cumsum([len(j) for j in jpegs])
    landmarks = np.full((n, 68, 2), size / 2, np.float32)
    with atomic_write(path) as tmp, open(tmp, "wb") as f:
        np.savez(f, jpeg_bytes=np.concatenate(jpegs), offsets=offsets,
                 format_version=np.int64(FORMAT_VERSION), landmarks=landmarks,
                 source_landmarks=landmarks, boxes=np.zeros((n, 4), np.float32),
                 valid=np.ones(n, bool), fps=np.float64(30.0),
                 frame_size=np.array([1920, 1080], np.int64),
                 crop_size=np.int64(size))  # fmt: skip


def clip_id(c: int) -> str:
    kind = "neutral/level_1" if c % 2 == 0 else "angry/level_3"
    return f"S{c // 2 % SPEAKERS:03d}/{kind}/{c // 2:04d}"


def build(out: Path, args: argparse.Namespace) -> tuple[list[np.ndarray], dict[str, float]]:
    """Stores + pairs.csv + pack under ``out``; returns the distinct JPEGs and timings."""
    times = {}
    start = time.perf_counter()
    jpegs = face_like_jpegs(args.distinct, args.size, args.seed)
    pairs = []
    for c in range(args.clips):
        frames = [jpegs[(c * 7 + f) % len(jpegs)] for f in range(args.frames)]
        write_store(crop_path(out, clip_id(c), "jpeg"), frames, args.size)
        if c % 2:
            index = np.arange(args.frames)
            speaker = clip_id(c).split("/")[0]
            pairs.append(AlignedPair(speaker, "angry", clip_id(c - 1), clip_id(c), index, index))
    write_pairs_table(pairs, out / "pairs.csv")
    times["stores"] = time.perf_counter() - start
    start = time.perf_counter()
    summary = pack_crops(out)
    assert not summary.failures, summary.report()
    times["pack"] = time.perf_counter() - start
    return jpegs, times


# ----------------------------------------------------------------------------- timing


def memory() -> dict[str, float]:
    """This process's VmHWM, VmRSS, RssAnon, RssFile in MiB (/proc/self/status)."""
    fields = {}
    with open("/proc/self/status") as status:
        for line in status:
            key, _, value = line.partition(":")
            if key in ("VmHWM", "VmRSS", "RssAnon", "RssFile"):
                fields[key] = int(value.split()[0]) / 1024
    return fields


def measure(kind: str, dataset: PairedFrames, order: list[int], jpeg_of, conn) -> None:
    """In a forked child: read ``order`` one way; send (kind, wall s, cpu s, memory)."""
    torch.set_num_threads(1)  # as in a DataLoader worker (an OpenMP pool does not fork)
    before = memory()
    if kind == "floor":  # the same frames' bytes, each its own in-memory buffer
        buffers = []
        for i in order:
            neutral, nf, emotional, ef = dataset.frame_pair(i)
            buffers.append((jpeg_of(neutral, nf).copy(), jpeg_of(emotional, ef).copy()))
        wall, cpu = time.perf_counter(), time.process_time()
        for a, b in buffers:
            cv2.imdecode(a, cv2.IMREAD_COLOR)
            cv2.imdecode(b, cv2.IMREAD_COLOR)
    else:
        wall, cpu = time.perf_counter(), time.process_time()
        for i in order:
            dataset[i]
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    conn.send((kind, wall, cpu, before, memory()))


def main() -> None:
    args = parse_args()
    tmp = None
    if args.dir:
        out = args.dir
    else:
        tmp = tempfile.TemporaryDirectory(prefix="bench_reader_")
        out = Path(tmp.name)
    print(f"building {args.clips} clip stores x {args.frames} frames of {args.size} px in {out}")
    jpegs, times = build(out, args)
    store_bytes = sum(p.stat().st_size for p in (out / "crops").rglob("*.npz"))
    pack_bytes = sum(p.stat().st_size for p in (out / "crops.pack").iterdir())
    frames_total = args.clips * args.frames
    jpeg_kb = np.mean([len(j) for j in jpegs]) / 1e3

    start = time.perf_counter()
    old = PairedFrames(out, frame_pack="off", verify=False)
    times["open old"] = time.perf_counter() - start
    start = time.perf_counter()
    new = PairedFrames(out, frame_pack="on", verify=False)
    times["open new"] = time.perf_counter() - start
    if args.verify:  # CRC-32 and a decode of every frame used (~0.3 ms each, threads)
        start = time.perf_counter()
        PairedFrames(out, frame_pack="on", verify=True)
        times["open new, verified"] = time.perf_counter() - start
    assert len(old) == len(new)
    rng = np.random.default_rng(args.seed + 1)
    n = min(args.pairs, len(new))

    def jpeg_of(clip: str, frame: int) -> np.ndarray:
        c = int(clip.rsplit("/", 1)[1]) * 2 + ("angry" in clip)
        return jpegs[(c * 7 + frame) % len(jpegs)]

    # the same bytes, the same pixels (the full equality is tests/data/test_frame_pack.py)
    for i in rng.permutation(len(new))[:20].tolist():
        assert all(torch.equal(a, b) for a, b in zip(old[i], new[i], strict=True))

    context = mp.get_context("fork")
    results: dict[str, list[tuple[float, float, dict, dict]]] = {"floor": [], "old": [], "new": []}
    for _ in range(args.rounds):
        order = rng.permutation(len(new))[:n].tolist()  # random pairs, fresh each round
        for kind, dataset in (("floor", new), ("old", old), ("new", new)):
            receive, send = context.Pipe(duplex=False)
            child = context.Process(target=measure, args=(kind, dataset, order, jpeg_of, send))
            child.start()
            while not receive.poll(1):
                if not child.is_alive():
                    raise SystemExit(f"the {kind} measurement died (exit code {child.exitcode})")
            got = receive.recv()
            child.join()
            results[got[0]].append(got[1:])

    def rate(kind: str, which: int) -> float:
        return statistics.median(n / r[which] for r in results[kind])

    print(f"data     : {args.clips} clips x {args.frames} frames = {frames_total:,} frames, "
          f"{len(new):,} frame pairs; JPEG {jpeg_kb:.1f} kB/frame ({args.distinct} distinct, "
          f"reused); stores {store_bytes / 2**30:.2f} GiB, pack "
          f"{pack_bytes / 2**30:.2f} GiB")  # fmt: skip
    print("build    : " + ", ".join(f"{k} {v:.1f} s" for k, v in times.items()))
    print(f"timing   : {args.rounds} rounds x {n} random frame pairs per reader, each in a "
          "forked process; median over rounds; warm page cache")  # fmt: skip
    print(f"\n{'reader':<40}{'pairs/s wall':>14}{'pairs/s CPU':>13}  per round (wall)")
    names = {"floor": "floor: 2 x cv2.imdecode from memory",
             "old": "old: per-clip stores (LRU of 64)",
             "new": "new: frame pack (crops.pack)"}  # fmt: skip
    for kind, name in names.items():
        rounds = ", ".join(f"{n / r[0]:.0f}" for r in results[kind])
        print(f"{name:<40}{rate(kind, 0):>14.0f}{rate(kind, 1):>13.0f}  {rounds}")
    print()
    for which, label in ((0, "wall"), (1, "CPU")):
        floor, old_rate, new_rate = rate("floor", which), rate("old", which), rate("new", which)
        print(
            f"ratio new / floor = {new_rate / floor:.3f} ({label} time; target >= 0.85)   "
            f"old / floor = {old_rate / floor:.3f}   new / old = {new_rate / old_rate:.2f}x"
        )
    for which, label in ((0, "wall"), (1, "CPU")):
        per_round = [
            f"{floor_r[which] / new_r[which]:.3f}"
            for new_r, floor_r in zip(results["new"], results["floor"], strict=True)
        ]
        median = statistics.median(float(r) for r in per_round)
        print(f"new / floor per round ({label}): {', '.join(per_round)}; median {median:.3f}")
    print("\npeak memory per worker process (MiB; VmHWM includes pages inherited at fork):")
    for kind, name in names.items():
        _, _, before, after = results[kind][-1]
        print(f"  {name:<40} VmHWM {after['VmHWM']:>6.0f} (RSS at fork {before['VmRSS']:.0f}); "
              f"at end RssAnon {after['RssAnon']:.0f}, RssFile {after['RssFile']:.0f}")  # fmt: skip
    if tmp is not None:
        tmp.cleanup()


if __name__ == "__main__":
    main()
