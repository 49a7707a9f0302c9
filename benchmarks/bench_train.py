"""Throughput of one metric training step: the authors' way, asccl's trainer, and asccl's
trainer fed by the real DataLoader, with the same model in one run.

    python benchmarks/bench_train.py      # CPU: iresnet18 at 112, batch 8, under 2 min
    python benchmarks/bench_train.py --device cuda --batches 16,32,64,128 --amp bf16 \\
        --channels-last --compile
    python benchmarks/bench_train.py --device cuda --data runs/mead --json results.json

Rows. Every row trains its own copy of the same initial weights with Adam (lr 1e-4), with
BatchNorm in train mode. Weights are random unless ``--arcface PATH`` is given. Random
convolutions are drawn with std ``1/sqrt(fan_in)`` (``bench_loss.build_metric``):

* (a) reference: the authors' training step. fp32, contiguous, no compile; numpy region
  draw (``np.random.shuffle`` of the window grid per stage per step) with index tensors
  built on the host and then moved; both images forwarded with autograd (the key is
  detached only after the MLP); boolean-mask adaptive weights; ``CrossEntropyLoss``
  PatchNCE; per-stage host copies for their cosine logging; backward; Adam;
  ``loss.item()`` every step. This is ``bench_loss.authors_step`` on a trainable metric,
  followed by the optimiser step. Its input is float ``[-1, 1]`` already on the device,
  so it pays no conversion.
* (b) asccl: ``train_metric``'s step on uint8 batches already on the device.
  ``to_model_input``, ``metric(x, y, generator=...)`` under autocast (``--amp``),
  ``GradScaler``, Adam, ``zero_grad(set_to_none=True)``, no ``.item()``.
  ``--channels-last`` as in the trainer; ``--compile``: the trainer's
  ``metric.compile_backbone()`` (``torch.compile`` of ``backbone.forward_stages``).
* (c) loader-fed: (b) fed by ``DataLoader(PairedFrames(...))`` with the trainer's settings
  (``num_workers``, ``pin_memory`` on CUDA, ``drop_last``). The data is read from stored
  crops: a stage-1 folder given with ``--data DIR``, or by default one built in a temp dir
  from ``demo_data/MEAD`` (one speaker, neutral + ``--demo-emotions``, crops at the model's
  input size) with ``asccl.data.prepare.run_index/run_pairs/run_crops``.
* reader: ``PairedFrames[i]`` alone in this process, random order, with the clip cache
  warm (``crops.pack`` where the folder has one), and with ``cache_size=1`` and
  ``frame_pack="off"`` (``cold_reader``), where every read opens its clip's own store as
  nearly every read does on MEAD (~7,650 clips, 64 cached per worker); the line says which
  store each read. The demo subset (6 clips) always
  hits the cache, so (c) on it can look better than a real run. Times the workers count,
  this is the loader's ceiling (collate and pinning excluded).

Timing: each row runs ``--warmup`` untimed steps per batch size, then ``--repeats`` blocks
of ``--steps`` steps, round-robin between (a) and (b). On CUDA a block is timed with one
device sync at each end, so asccl's host can run ahead as it does in training, and pairs/s
is the median block rate. On CPU, where steps are synchronous, pairs/s comes from the
median step: other tenants of a shared machine can slow one step several times. (c) runs
at asccl's best batch: ``--loader-warmup`` untimed steps (worker start-up), then
``--loader-steps`` timed steps. It is compared with (b) blocks of the same length run just
before and just after it, on the same model. Up to ``workers x 2`` batches prefetched
during the warmup can flatter (c) by at most that many steps over ``--loader-steps``; the
script prints that bound. On CUDA, one extra step per row runs under
``torch.cuda.set_sync_debug_mode("warn")`` and the script prints the host syncs it counts.

Precision: every row runs under PyTorch's TF32 defaults (cuDNN convolutions may use TF32,
matmuls do not) and without cuDNN autotuning unless ``--cudnn-benchmark``, as
``train_metric`` leaves them. ``--amp fp16`` is for CUDA: on CPU it is far slower than
fp32.

Projection: 50 epochs of the authors' 70,303 pairs at the reference's rate (batch 16,
else the first batch), asccl's best on-device rate and the loader-fed rate.

Peak memory: ``torch.cuda.max_memory_allocated`` per row (both models' weights and Adam
states included; "step" is the peak minus what was allocated before the block). On CPU
it is the process's peak RSS (``resource.getrusage``) plus that of the largest DataLoader
worker. ``--json PATH`` also writes the results.

Sections: the on-device rows of each batch size, the host sync count, (c), the reader, the
comparisons and the FLOP count each print their lines as soon as they are measured, and
``--json`` is rewritten (atomically) after every section, so a run killed at its time
budget keeps what it finished. A section that fails (a DataLoader worker killed by SIGBUS
on a small ``/dev/shm``, out of memory, a compile error) prints ``section NAME failed:
ERROR`` (its traceback's end on stderr); the later sections still run and the script
exits 1 at the end. ``--no-loader`` skips (c) and the reader (without ``--data``, the
on-device rows then run on random uint8 pixels).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import resource
import statistics
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, RandomSampler

from asccl.data.frame_pack import PACK_DIR
from asccl.io import write_text_atomic
from asccl.metric.model import ASCCLMetric
from asccl.training.config import TrainConfig
from asccl.training.dataset import PairedFrames, to_model_input
from bench_loss import authors_step, build_metric

#: dense bf16 tensor-core peak, TFLOP/s, by device-name fragment (vendor data sheets)
PEAK_BF16 = {"H200": 989.4, "H100 PCIe": 756.0, "H100": 989.4, "A100": 312.0, "L40S": 362.0}
AUTHORS_PAIRS = 70_303  # training frame pairs in the authors' pair file
EPOCHS = 50  # the paper's schedule
DEMO_ROOT = Path(__file__).resolve().parents[1] / "demo_data" / "MEAD"


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--backbone", help="default: iresnet50 on CUDA, iresnet18 on CPU")
    p.add_argument("--image-size", type=int, help="default: 224 on CUDA, 112 on CPU")
    p.add_argument("--batches", help="comma-separated batch sizes (default: 16 CUDA, 8 CPU)")
    p.add_argument("--steps", type=int, help="steps per timed block (default: 20 CUDA, 1 CPU)")
    p.add_argument("--repeats", type=int, help="timed blocks per row (default: 3 CUDA, 5 CPU)")
    p.add_argument("--warmup", type=int, help="untimed steps per row and batch (5 CUDA, 1 CPU)")
    p.add_argument("--loader-steps", type=int, help="timed (c) steps (default: 100 CUDA, 5 CPU)")
    p.add_argument("--loader-warmup", type=int, help="untimed (c) steps (default: 10 CUDA, 1 CPU)")
    p.add_argument("--amp", choices=["off", "bf16", "fp16"], default="off")
    p.add_argument("--channels-last", action="store_true")
    p.add_argument("--compile", action="store_true", help="torch.compile asccl's backbone")
    p.add_argument(
        "--compile-backend",
        default="inductor",
        help='torch.compile backend ("eager": dynamo only, for quick CPU checks)',
    )
    p.add_argument(
        "--flops",
        action="store_true",
        help="count a step's FLOPs; print achieved TFLOP/s per row (and vs peak)",
    )
    p.add_argument(
        "--peak-tflops",
        type=float,
        help="the device's dense bf16 peak (default: known GPUs, see PEAK_BF16)",
    )
    p.add_argument("--cudnn-benchmark", action="store_true", help="cuDNN autotune, every row")
    p.add_argument("--data", metavar="DIR", help="stage-1 output folder (default: temp demo)")
    p.add_argument("--crop-format", choices=["jpeg", "npy"], default="jpeg")
    p.add_argument("--demo-speaker", default="W901")
    p.add_argument("--demo-emotions", default="angry", help="comma-separated, besides neutral")
    p.add_argument("--workers", type=int, default=TrainConfig().workers)
    p.add_argument("--cache-size", type=int, default=64, help="PairedFrames readers per worker")
    p.add_argument("--read-items", type=int, default=200, help="items for the reader rate")
    p.add_argument("--arcface", metavar="PATH", help="insightface backbone.pth to load")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--no-loader",
        action="store_true",
        help="skip (c) and the reader rows (without --data: random pixels)",
    )
    p.add_argument(
        "--json", metavar="PATH", help="also write the results here (rewritten after every section)"
    )
    args = p.parse_args()
    cuda = args.device.startswith("cuda")
    args.backbone = args.backbone or ("iresnet50" if cuda else "iresnet18")
    args.image_size = args.image_size or (224 if cuda else 112)
    args.batches = [int(b) for b in (args.batches or ("16" if cuda else "8")).split(",")]
    defaults = {"steps": (20, 1), "repeats": (3, 5), "warmup": (5, 1),
                "loader_steps": (100, 5), "loader_warmup": (10, 1)}  # fmt: skip
    for name, (on_cuda, on_cpu) in defaults.items():
        if getattr(args, name) is None:
            setattr(args, name, on_cuda if cuda else on_cpu)
    return args


# ----------------------------------------------------------------------------- data


def build_demo_data(out: Path, size: int, speaker: str, emotions: list[str]) -> Path:
    """A stage-1 folder from a subset of ``demo_data/MEAD``: ``speaker``'s neutral level-1
    clips and its level-3 clips of ``emotions``, crops at ``size``, under ``out``."""
    from asccl.data.prepare import DataConfig, run_crops, run_index, run_pairs

    root = out / "MEAD"
    for kind, parts in (("video", ("video", "front")), ("audio", ("audio",))):
        for emotion, level in [("neutral", "level_1")] + [(e, "level_3") for e in emotions]:
            source = DEMO_ROOT.joinpath(speaker, *parts, emotion, level)
            if not source.is_dir():
                raise SystemExit(f"no demo {kind} folder {source}")
            link = root.joinpath(speaker, *parts, emotion, level)
            link.parent.mkdir(parents=True, exist_ok=True)
            link.symlink_to(source, target_is_directory=True)
    config = DataConfig(root=root, out=out / "data", crop_size=size, workers=0)
    with contextlib.redirect_stderr(io.StringIO()):  # the stages' progress bars
        for stage in (run_index, run_pairs, run_crops):
            summary = stage(config)
            if summary.failures:
                raise SystemExit(summary.report())
    return config.out


def batch_of(dataset: PairedFrames, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The first ``n`` items (wrapping around), collated: uint8 ``(n, 3, S, S)`` each."""
    items = [dataset[i % len(dataset)] for i in range(n)]
    return torch.stack([a for a, _ in items]), torch.stack([b for _, b in items])


def read_rate(dataset: PairedFrames, n: int, seed: int) -> float:
    """Frame pairs per second one process reads (``dataset[i]``), random order, no collate."""
    order = torch.randint(len(dataset), (n,), generator=torch.Generator().manual_seed(seed))
    start = time.perf_counter()
    for i in order.tolist():
        dataset[i]
    return n / (time.perf_counter() - start)


# ----------------------------------------------------------------------------- timing


def reset_compiled() -> None:
    """Drop torch.compile's graphs: the next call compiles afresh, with static shapes."""
    import torch._dynamo

    torch._dynamo.reset()


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def peak_rss_mib() -> tuple[float, float]:
    """Peak resident memory of this process and of its largest finished child (MiB)."""
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    child = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return own, child


class Row:
    """One row's timings and peak memory at one batch size.

    On CUDA a block is timed as a whole (the host runs ahead of the device inside it) and
    the rate is the median block rate. On CPU every step is synchronous, so each step is
    timed and the rate comes from the median step: robust to other tenants of a shared
    machine, which can slow a single step several times.
    """

    def __init__(self, name: str, batch: int, per_step: bool) -> None:
        self.name, self.batch, self.per_step = name, batch, per_step
        self.peak_mib = self.step_mib = 0.0
        self.error: str | None = None
        self.reset()

    def reset(self) -> None:
        self.blocks: list[tuple[int, float]] = []  # (steps, seconds)
        self.step_seconds: list[float] = []

    def rates(self) -> list[float]:
        """Per-step rates on CPU, per-block rates on CUDA (pairs/s)."""
        if self.per_step:
            return [self.batch / s for s in self.step_seconds]
        return [self.batch * n / s for n, s in self.blocks]

    def block_rates(self) -> list[float]:
        """One rate per block, by the same rule as :attr:`pairs_per_s`."""
        if not self.per_step:
            return [self.batch * n / s for n, s in self.blocks]
        rates, start = [], 0
        for n, _ in self.blocks:
            rates.append(self.batch / statistics.median(self.step_seconds[start : start + n]))
            start += n
        return rates

    @property
    def pairs_per_s(self) -> float | None:
        if self.error or not self.blocks:
            return None
        if self.per_step:
            return self.batch / statistics.median(self.step_seconds)
        return statistics.median(self.rates())

    def as_dict(self) -> dict:
        return {"row": self.name, "batch": self.batch, "pairs_per_s": self.pairs_per_s,
                "rates": self.rates(), "rate_from": "median step" if self.per_step
                else "median block", "blocks": self.blocks, "peak_mib": self.peak_mib,
                "step_mib": self.step_mib, "error": self.error}  # fmt: skip


def run_block(row: Row, step: Callable[[], None], n: int, device: torch.device) -> None:
    """``n`` steps with one sync at each end; records time and CUDA peak memory."""
    if row.error:
        return
    cuda = device.type == "cuda"
    try:
        sync(device)
        if cuda:
            before = torch.cuda.memory_allocated(device)
            torch.cuda.reset_peak_memory_stats(device)
        start = last = time.perf_counter()
        for _ in range(n):
            step()
            now = time.perf_counter()
            row.step_seconds.append(now - last)  # meaningful only where steps are synchronous
            last = now
        sync(device)
        row.blocks.append((n, time.perf_counter() - start))
        if cuda:
            peak = torch.cuda.max_memory_allocated(device) / 2**20
            row.peak_mib = max(row.peak_mib, peak)
            row.step_mib = max(row.step_mib, peak - before / 2**20)
    except torch.OutOfMemoryError:
        row.error = "out of memory"
        if cuda:
            torch.cuda.empty_cache()


def count_syncs(step: Callable[[], None], device: torch.device) -> int | None:
    """Host syncs one step makes, as CUDA's sync debug mode reports them (CUDA only)."""
    if device.type != "cuda":
        return None
    import warnings

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            step()
        finally:
            torch.cuda.set_sync_debug_mode("default")
    sync(device)
    return sum("synchroniz" in str(w.message) for w in caught)


def flops_per_pair(
    args: argparse.Namespace,
    initial: dict,
    batches_of: Callable[[int], tuple[torch.Tensor, torch.Tensor]],
    device: torch.device,
) -> float:
    """FLOPs of one asccl training step (forward + backward of both images, the loss),
    per frame pair, counted by ``torch.utils.flop_counter`` on an eager copy (FLOPs do not
    depend on compile or precision; Adam's elementwise update is left out)."""
    from torch.utils.flop_counter import FlopCounterMode

    metric = ASCCLMetric(backbone=args.backbone, image_size=args.image_size)
    metric.load_state_dict(initial)
    metric.to(device).train()
    batch = args.batches[0]
    neutral, emotional = (to_model_input(t.to(device), size=args.image_size, flip_channels=
                          metric.config.channel_order == "bgr", channels_last=False)
                          for t in batches_of(batch))  # fmt: skip
    with FlopCounterMode(display=False) as counter:
        metric(neutral, emotional, generator=torch.Generator().manual_seed(0)).loss.backward()
    return counter.get_total_flops() / batch


def peak_tflops(args: argparse.Namespace, device: torch.device) -> float | None:
    if args.peak_tflops or device.type != "cuda":
        return args.peak_tflops
    name = torch.cuda.get_device_name(device)
    return next((v for k, v in PEAK_BF16.items() if k in name), None)


# ----------------------------------------------------------------------------- sections


class Sections:
    """The script's sections, each run so that a failure (a killed DataLoader worker, an
    out-of-memory or compile error) prints one line, ``section NAME failed: ERROR``, and
    the later sections still run. The results gathered so far are written to ``--json``
    (atomically) after every section, so a run killed at its time budget keeps them."""

    def __init__(self, json_path: str | None) -> None:
        self.json_path = json_path
        self.results: dict = {}
        self.failed: list[str] = []

    @contextlib.contextmanager
    def run(self, name: str) -> Iterator[None]:
        try:
            yield
        except Exception as error:  # report it and go on: the other sections still measure
            print(f"section {name} failed: {one_line(error)}", flush=True)
            print("".join(traceback.format_exc(limit=-4).splitlines(True)[-12:]),
                  file=sys.stderr, flush=True)  # fmt: skip
            self.failed.append(name)
            self.results.setdefault("failed_sections", {})[name] = one_line(error)
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
        finally:
            self.write()

    def write(self) -> None:
        """The results so far, to ``--json`` (atomically), if given."""
        if self.json_path:
            text = json.dumps(self.results, indent=2, default=str)
            write_text_atomic(self.json_path, text + "\n")


def one_line(error: BaseException, limit: int = 300) -> str:
    """``Type: message``, first line only, at most ``limit`` characters."""
    text = f"{type(error).__name__}: {error}".strip().splitlines()[0]
    return text if len(text) <= limit else text[: limit - 3] + "..."


def cold_reader(data_dir: Path, crop_format: str) -> PairedFrames:
    """The reader of the "every read opens its store" row: per-clip crop stores
    (``frame_pack="off"``, even where ``crops.pack`` exists) and a one-clip cache, so
    nearly every random read opens a store, as at MEAD scale (~7,650 clips, 64 cached)."""
    return PairedFrames(data_dir, crop_format=crop_format, cache_size=1, frame_pack="off")


def store_read(dataset: PairedFrames) -> str:
    """Which store a reader reads: ``crops.pack`` or the per-clip stores."""
    return PACK_DIR if "read from " + PACK_DIR in dataset.describe() else "per-clip stores"


def random_batch(n: int, size: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Two uint8 ``(n, 3, size, size)`` batches of random pixels (``--no-loader`` without
    ``--data``: a step's time does not depend on the pixel values)."""
    generator = torch.Generator().manual_seed(seed)
    shape = (n, 3, size, size)
    return tuple(torch.randint(0, 256, shape, generator=generator, dtype=torch.uint8)
                 for _ in range(2))  # fmt: skip


# ----------------------------------------------------------------------------- main


def main() -> None:
    wall_start = time.perf_counter()
    args = parse_args()
    device = torch.device(args.device)
    cuda = device.type == "cuda"
    torch.manual_seed(args.seed)
    np.random.seed(args.seed)  # noqa: NPY002 (seeds the reference row's draws)
    # cuDNN autotuning: off unless asked, as train_metric leaves it (every row alike).
    torch.backends.cudnn.benchmark = args.cudnn_benchmark
    # TF32: PyTorch's defaults for every row (cuDNN convolutions may use TF32, matmuls do
    # not); neither the authors' code nor asccl's trainer changes them.
    amp_dtype = {"off": None, "bf16": torch.bfloat16, "fp16": torch.float16}[args.amp]
    if args.amp == "fp16" and not cuda:
        print("warning: fp16 autocast on CPU measured ~60x slower than fp32 here; use bf16")
    sections = Sections(args.json)
    results = sections.results

    # ---- data (every section needs it: a failure here ends the run)
    tmp = None
    data_start = time.perf_counter()
    dataset: PairedFrames | None = None
    if args.data:
        data_dir, data_note = Path(args.data), "given"
    elif args.no_loader:
        data_dir, data_note = None, "random uint8 pixels (--no-loader without --data)"
    else:
        tmp = tempfile.TemporaryDirectory(prefix="bench_train_")
        emotions = [e for e in args.demo_emotions.split(",") if e]
        data_dir = build_demo_data(Path(tmp.name), args.image_size, args.demo_speaker, emotions)
        data_note = (
            f"built from demo_data ({args.demo_speaker}: neutral + {', '.join(emotions)}) "
            f"in {time.perf_counter() - data_start:.1f} s"
        )
    if data_dir is not None:
        dataset = PairedFrames(data_dir, crop_format=args.crop_format,
                               cache_size=args.cache_size)  # fmt: skip

    def batches_of(n: int) -> tuple[torch.Tensor, torch.Tensor]:
        if dataset is None:
            return random_batch(n, args.image_size, args.seed)
        return batch_of(dataset, n)

    # ---- what runs, printed before anything is measured
    device_name = torch.cuda.get_device_name(device) if cuda else "cpu"
    print(f"device   : {device_name} ({device})")
    print(f"torch    : {torch.__version__}, {torch.get_num_threads()} CPU threads")
    weights = args.arcface or "random (std 1/sqrt(fan_in))"
    print(f"model    : {args.backbone} at {args.image_size}x{args.image_size}, weights {weights}")
    if cuda:
        print(
            f"tf32     : PyTorch defaults, every row (cudnn.conv "
            f"{torch.backends.cudnn.conv.fp32_precision}, cuda.matmul "
            f"{torch.backends.cuda.matmul.fp32_precision}); cudnn.benchmark "
            f"{args.cudnn_benchmark}"
        )
    print(
        f"settings : asccl amp={args.amp} channels_last={args.channels_last} "
        f"compile={args.compile}; reference fp32, contiguous, no compile"
    )
    how = "median step" if not cuda else "median block"
    print(
        f"timing   : {args.warmup} warmup step(s), then {args.repeats} blocks of {args.steps} "
        f"step(s) per row and batch, round-robin; rate from the {how}"
    )
    print(f"data     : {data_dir or '-'} ({data_note})")
    if dataset is not None:
        print(f"           {dataset.describe().splitlines()[0]}")
    if args.json:
        print(f"json     : {args.json} (rewritten after every section)")
    sys.stdout.flush()
    results.update({
        "device": str(device), "device_name": device_name, "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "settings": {k: v for k, v in vars(args).items() if k != "json"},
        "data": {"dir": str(data_dir) if data_dir else None, "note": data_note,
                 "pairs": len(dataset) if dataset is not None else None},
        "rows": [], "loader": {}, "failed_sections": {},
    })  # fmt: skip
    sections.write()

    # ---- one set of initial weights, two trainable copies
    template = build_metric(argparse.Namespace(backbone=args.backbone, arcface=args.arcface))
    initial = template.state_dict()
    del template

    def fresh_metric() -> ASCCLMetric:
        metric = ASCCLMetric(backbone=args.backbone, image_size=args.image_size)
        metric.load_state_dict(initial)
        return metric.to(device).train()

    train = TrainConfig()
    reference = fresh_metric()
    ref_optimizer = torch.optim.Adam(reference.parameters(), lr=train.lr)

    metric = fresh_metric()
    if args.channels_last:
        metric.to(memory_format=torch.channels_last)
    if args.compile:
        metric.compile_backbone(backend=args.compile_backend)  # the trainer's call
    optimizer = torch.optim.Adam([p for p in metric.parameters() if p.requires_grad], lr=train.lr)
    scaler = torch.amp.GradScaler(device.type, enabled=args.amp == "fp16")
    region_generator = torch.Generator().manual_seed(args.seed + 1)
    flip = metric.config.channel_order == "bgr"

    def autocast():
        if amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device.type, dtype=amp_dtype)

    def prepare(batch: torch.Tensor) -> torch.Tensor:  # the trainer's prepare()
        return to_model_input(
            batch.to(device, non_blocking=True),
            size=args.image_size,
            flip_channels=flip,
            channels_last=args.channels_last,
        )

    def asccl_step(neutral: torch.Tensor, emotional: torch.Tensor) -> None:
        x, y = prepare(neutral), prepare(emotional)
        with autocast():
            output = metric(x, y, generator=region_generator)
        scaler.scale(output.loss).backward()
        scaler.step(optimizer)
        scaler.update()
        optimizer.zero_grad(set_to_none=True)

    def reference_step(x: torch.Tensor, y: torch.Tensor) -> None:
        ref_optimizer.zero_grad()
        authors_step(reference, x, y)  # forward both, backward, loss.item()
        ref_optimizer.step()

    header = (f"{'batch':>5}  {'row':<16}{'pairs/s':>9}{'min':>9}{'max':>9}{'ms/step':>9}"
              f"{'peak MiB':>10}{'step MiB':>10}")  # fmt: skip

    def print_row(row: Row) -> None:
        if row.error or not row.blocks:
            print(f"{row.batch:>5}  {row.name:<16}{row.error or 'no data':>9}", flush=True)
            return
        rates = row.rates()
        memory = f"{row.peak_mib:>10.0f}{row.step_mib:>10.0f}" if cuda else f"{'-':>10}{'-':>10}"
        print(
            f"{row.batch:>5}  {row.name:<16}{row.pairs_per_s:>9.1f}{min(rates):>9.1f}"
            f"{max(rates):>9.1f}{1e3 * row.batch / row.pairs_per_s:>9.1f}{memory}",
            flush=True,
        )

    # ---- (a) and (b), round-robin, per batch size; each batch's rows printed (and
    # written to --json) as soon as they are measured
    rows: list[Row] = []
    syncs: dict[str, int | None] = {}
    sync_counted = False
    for batch in args.batches:
        batch_rows = {name: Row(name, batch, not cuda) for name in ("(a) reference", "(b) asccl")}
        rows += batch_rows.values()
        with sections.run(f"on-device rows (batch {batch})"):
            try:
                neutral_u8, emotional_u8 = (t.to(device) for t in batches_of(batch))
                x_ref = to_model_input(neutral_u8, size=args.image_size, flip_channels=flip,
                                       channels_last=False)  # fmt: skip
                y_ref = to_model_input(emotional_u8, size=args.image_size, flip_channels=flip,
                                       channels_last=False)  # fmt: skip
                steps = {
                    "(a) reference": lambda x=x_ref, y=y_ref: reference_step(x, y),
                    "(b) asccl": lambda n=neutral_u8, e=emotional_u8: asccl_step(n, e),
                }
                if args.compile:
                    reset_compiled()  # static shapes per batch size, as in a real run
                for name, step in steps.items():
                    start = time.perf_counter()
                    run_block(batch_rows[name], step, args.warmup, device)
                    batch_rows[name].reset()
                    # printed as it happens: a row killed at its time budget still shows
                    # how far it got (on a GPU, --compile's first steps mostly compile)
                    took = time.perf_counter() - start
                    compiling = args.compile and "asccl" in name
                    print(f"warm-up  : batch {batch} {name}, {args.warmup} step(s) in "
                          f"{took:.1f} s{' (compiles the backbone)' if compiling else ''}",
                          flush=True)  # fmt: skip
                if cuda and not sync_counted:
                    sync_counted = True
                    with sections.run("host sync count"):
                        syncs = {name: count_syncs(step, device) for name, step in steps.items()}
                        print("host syncs per step (CUDA sync debug mode): "
                              + ", ".join(f"{k} {v}" for k, v in syncs.items()),
                              flush=True)  # fmt: skip
                        results["host_syncs_per_step"] = syncs
                for _ in range(args.repeats):
                    for name, step in steps.items():
                        run_block(batch_rows[name], step, args.steps, device)
            finally:
                print(header)
                for row in batch_rows.values():
                    print_row(row)
                results["rows"] = [r.as_dict() for r in rows]
                steps = x_ref = y_ref = neutral_u8 = emotional_u8 = None

    # ---- (c) at asccl's best batch, bracketed by on-device (b) blocks
    ours = [r for r in rows if r.name == "(b) asccl" and r.pairs_per_s]
    refs = [r for r in rows if r.name == "(a) reference" and r.pairs_per_s]
    best = max(ours, key=lambda r: r.pairs_per_s) if ours else None
    loader_result: dict = {}
    loader_rows: list[Row] = []
    if args.no_loader:
        print("\n(c) loader-fed: skipped (--no-loader)", flush=True)
    elif best is None:
        print("\n(c) loader-fed: skipped (no on-device (b) asccl rate to compare with)")
    else:
        with sections.run("loader-fed rows"):
            batch = best.batch
            device_row = Row("(b) on-device", batch, not cuda)
            loader_row = Row("(c) loader-fed", batch, not cuda)
            loader_rows = [device_row, loader_row]
            print(f"\n(c) loader-fed at batch {batch}: {args.workers} workers, "
                  f"{args.loader_warmup} + {args.loader_steps} steps", flush=True)  # fmt: skip
            try:
                if args.compile and batch != args.batches[-1]:
                    reset_compiled()  # compiled for the last batch size: back to this one
                neutral_u8, emotional_u8 = (t.to(device) for t in batches_of(batch))

                def on_device() -> None:
                    asccl_step(neutral_u8, emotional_u8)

                needed = batch * (args.loader_warmup + args.loader_steps)
                sampler = RandomSampler(
                    dataset, num_samples=needed,
                    generator=torch.Generator().manual_seed(args.seed),
                )  # fmt: skip
                loader = DataLoader(dataset, batch_size=batch, sampler=sampler, drop_last=True,
                                    num_workers=args.workers, pin_memory=cuda,
                                    persistent_workers=False)  # fmt: skip
                if args.compile and batch != args.batches[-1]:
                    run_block(device_row, on_device, args.warmup, device)  # recompile
                    device_row.reset()
                run_block(device_row, on_device, args.loader_steps, device)
                batches = iter(loader)

                def from_loader() -> None:
                    asccl_step(*next(batches))

                run_block(loader_row, from_loader, args.loader_warmup, device)  # workers start
                loader_row.reset()
                run_block(loader_row, from_loader, args.loader_steps, device)
                for _ in batches:  # the sampler ends here: the iterator stops its workers
                    pass
                batches = None
                run_block(device_row, on_device, args.loader_steps, device)
            finally:
                for row in loader_rows:
                    print_row(row)
                on_device_rate = device_row.pairs_per_s
                loader_rate = loader_row.pairs_per_s
                prefetch = args.workers * 2 if args.workers else 0
                loader_result = {
                    "batch": batch,
                    "loader_pairs_per_s": loader_rate,
                    "on_device_pairs_per_s": on_device_rate,
                    "on_device_before_after": device_row.block_rates(),
                    "ratio": loader_rate / on_device_rate
                    if loader_rate and on_device_rate else None,
                    "prefetch_bound": prefetch / args.loader_steps,
                    "peak_mib": loader_row.peak_mib,
                    "workers": args.workers,
                    "rows": [device_row.as_dict(), loader_row.as_dict()],
                }  # fmt: skip
                results["loader"] = loader_result
                neutral_u8 = emotional_u8 = None
            r = loader_result
            if r["ratio"]:
                print(
                    f"(c) loader-fed at batch {r['batch']}: {r['loader_pairs_per_s']:.1f} "
                    f"pairs/s vs on-device {r['on_device_pairs_per_s']:.1f} (blocks "
                    f"before/after: {', '.join(f'{v:.1f}' for v in r['on_device_before_after'])}"
                    f") = {r['ratio']:.2f} (target on GPU >= 0.90); {args.workers} workers, "
                    f"prefetch bound +{100 * r['prefetch_bound']:.0f}% at most",
                    flush=True,
                )
                before_after = r["on_device_before_after"]
                if len(before_after) == 2 and max(before_after) > 1.2 * min(before_after):
                    print(
                        "  noisy: the on-device blocks before and after (c) differ by more "
                        "than 20% (other load on the machine?); rerun before trusting this ratio"
                    )

    # ---- the reader alone: LRU cache warm, and every read opening its clip's own store
    # (MEAD scale: ~7,650 clips against a 64-clip cache per worker, so nearly every read
    # misses). The cold reader never reads crops.pack: with a pack there is no store to open.
    if args.no_loader:
        print("reader   : skipped (--no-loader)", flush=True)
    else:
        with sections.run("reader rows"):
            read_rate(dataset, args.read_items, args.seed)  # warms the cache
            warm_read = read_rate(dataset, args.read_items, args.seed)
            cold = cold_reader(data_dir, args.crop_format)
            cold_read = read_rate(cold, args.read_items, args.seed)
            warm_store, cold_store = store_read(dataset), store_read(cold)
            del cold
            results["reader_pairs_per_s"] = {
                "cache_warm": warm_read, "every_read_opens": cold_read,
                "cache_warm_reads": warm_store, "every_read_opens_reads": cold_store,
            }  # fmt: skip
            ceiling = f" vs asccl's best {best.pairs_per_s:.1f}" if best else ""
            print(
                f"reader, one process: {warm_read:.0f} pairs/s with its clip cache warm "
                f"(reads {warm_store}), {cold_read:.0f} when every read opens its store "
                f"(reads {cold_store}; MEAD scale); x{args.workers} workers: "
                f"{args.workers * warm_read:.0f} / {args.workers * cold_read:.0f} pairs/s"
                f"{ceiling}",
                flush=True,
            )

    # ---- the comparisons, from whatever was measured
    print()
    with sections.run("summary"):
        if args.compile:
            from torch._dynamo.utils import counters

            print(
                f"compiled : {counters['stats']['unique_graphs']} graph(s) of "
                f"backbone.forward_stages by dynamo (backend {args.compile_backend}; with and "
                "without grad, per batch size)"
            )
        if not cuda:
            own, child = peak_rss_mib()
            print(f"peak RSS : {own:.0f} MiB this process (all rows), {child:.0f} MiB largest "
                  "DataLoader worker")  # fmt: skip
            results["peak_rss_mib"] = {"process": own, "largest_worker": child}
        by_batch = {(r.name, r.batch): r.pairs_per_s for r in rows}
        speedups = {}
        for batch in args.batches:
            a, b = by_batch[("(a) reference", batch)], by_batch[("(b) asccl", batch)]
            if a and b:
                speedups[batch] = b / a
                print(f"asccl / reference at batch {batch:<4} = {b / a:.2f}x")
            else:
                print(f"asccl / reference at batch {batch:<4} = n/a (a row has no rate)")
        results["speedup_by_batch"] = speedups
        base = next((r for r in refs if r.batch == 16), refs[0] if refs else None)
        best_overall = None
        if best and base and len(args.batches) > 1:
            best_overall = best.pairs_per_s / base.pairs_per_s
            print(
                f"best asccl (batch {best.batch}, {best.pairs_per_s:.1f} pairs/s) / reference "
                f"at batch {base.batch} ({base.pairs_per_s:.1f} pairs/s) = {best_overall:.2f}x"
            )
        results["best_asccl_over_reference_16"] = best_overall
        projections = {}
        candidates = [("reference", base.pairs_per_s if base else None, base.batch if base else 0),
                      ("asccl on-device", best.pairs_per_s if best else None,
                       best.batch if best else 0),
                      ("asccl loader-fed", loader_result.get("loader_pairs_per_s"),
                       loader_result.get("batch", 0))]  # fmt: skip
        print(f"projected {EPOCHS} epochs over the authors' {AUTHORS_PAIRS:,} pairs:")
        for label, rate, batch in candidates:
            if rate:
                hours = EPOCHS * AUTHORS_PAIRS / rate / 3600
                projections[label] = {"batch": batch, "pairs_per_s": rate, "hours": hours}
                print(f"  {label:<17} batch {batch:<4} {rate:>8.1f} pairs/s -> {hours:>8.1f} h")
        results["projection_50_epochs"] = projections
        sys.stdout.flush()

    if args.flops:
        with sections.run("FLOP count"):
            per_pair = flops_per_pair(args, initial, batches_of, device)
            peak = peak_tflops(args, device)
            known = f"{peak:.0f} TFLOP/s (dense bf16)" if peak else "unknown (--peak-tflops)"
            print(f"FLOPs per frame pair (one step, fwd + bwd): {per_pair / 1e9:.2f} GFLOP; "
                  f"peak {known}")  # fmt: skip
            achieved_by_row = {}
            for row in rows + loader_rows:
                if row.pairs_per_s:
                    achieved = per_pair * row.pairs_per_s / 1e12
                    achieved_by_row[f"{row.name} batch {row.batch}"] = achieved
                    share = f" = {100 * achieved / peak:.1f}% of peak" if peak else ""
                    print(f"  achieved {row.name:<16} batch {row.batch:<4} {achieved:8.3f} "
                          f"TFLOP/s{share}", flush=True)  # fmt: skip
            results["flops"] = {"per_pair": per_pair, "peak_tflops": peak,
                                "achieved_tflops": achieved_by_row}  # fmt: skip

    wall = time.perf_counter() - wall_start
    print(f"\nwall time {wall:.0f} s")
    results["wall_s"] = wall
    sections.write()
    if args.json:
        print(f"results written to {args.json}")
    if tmp is not None:
        tmp.cleanup()
    if sections.failed:
        print(f"{len(sections.failed)} section(s) failed: {', '.join(sections.failed)}",
              flush=True)  # fmt: skip
        raise SystemExit(1)


if __name__ == "__main__":
    main()
