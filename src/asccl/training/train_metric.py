"""Train the ASCCL metric on DTW-paired (neutral, emotional) face crops.

One process (CPU or one GPU)::

    asccl train-metric --config configs/metric/seed.toml --data runs/mead \\
        --arcface-weights backbone.pth

Several GPUs / nodes (DDP; the same command line, ``batch_size`` is the global batch)::

    torchrun --nproc_per_node 8 -m asccl train-metric --config configs/metric/seed.toml ...

The run resumes from the newest valid checkpoint in ``--out`` unless ``--resume false``;
a run killed at any point (even SIGKILL) and resumed ends with the same weights as an
uninterrupted one (bit for bit on CPU with a fixed seed). ``precision = "float64"``
trains in double precision, where runs that differ only in the order of sums (processes,
threads) agree to rounding (~1e-16 relative): for reproducibility checks.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Iterator
from contextlib import nullcontext
from itertools import islice
from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader, Sampler
from tqdm import tqdm

from asccl.config import ConfigError, save_config
from asccl.metric import ASCCLMetric, save_metric
from asccl.metric.iresnet import check_arcface_weights
from asccl.training.checkpoints import (
    Progress,
    latest_checkpoint,
    restore_rng,
    save_checkpoint,
)
from asccl.training.config import TrainConfig
from asccl.training.distributed import setup_distributed
from asccl.training.history import TrainingLog, plot_curves

log = logging.getLogger(__name__)


class EpochSampler(Sampler[int]):
    """Shuffles ``n`` items once per epoch (seeded by ``seed`` and the epoch), gives this
    process its ``rank::world`` share (padded to equal length, as ``DistributedSampler``),
    and can start part-way through an epoch: the position a resumed run continues from."""

    def __init__(self, n: int, seed: int, rank: int = 0, world: int = 1) -> None:
        self.n, self.seed, self.rank, self.world = n, seed, rank, world
        self.per_rank = math.ceil(n / world)
        self.epoch, self.start = 0, 0

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        self.epoch, self.start = epoch, start

    def __iter__(self) -> Iterator[int]:
        order = torch.randperm(
            self.n, generator=torch.Generator().manual_seed(self.seed + self.epoch)
        )
        order = torch.cat([order, order[: self.per_rank * self.world - self.n]])
        return iter(order[self.rank :: self.world][self.start :].tolist())

    def __len__(self) -> int:
        return self.per_rank - self.start


def _set_train_mode(metric: nn.Module, batchnorm: str) -> None:
    metric.train()
    if batchnorm == "frozen":  # running statistics only: BN layers stay in eval mode
        for module in metric.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                module.eval()


def train_metric(config: TrainConfig) -> Path:
    """Run (or resume) a training run; returns the final metric checkpoint's path."""
    _require_device(config.device)
    rank, world, device = setup_distributed(config.device)
    dtype = {"float32": torch.float32, "float64": torch.float64}[config.precision]
    main_process = rank == 0
    out = config.out
    if config.batch_size % (world * config.grad_accum):
        raise ConfigError(
            f"batch_size {config.batch_size} must be divisible by processes ({world}) x "
            f"grad_accum ({config.grad_accum})"
        )
    micro_batch = config.batch_size // (world * config.grad_accum)  # per process, per pass
    torch.manual_seed(config.seed)

    # ---- start from this run's newest checkpoint, else from ArcFace weights (or random);
    # a missing weights file is reported now, not after a long scan of the data
    checkpoint = latest_checkpoint(out) if config.resume else None
    arcface = None
    if checkpoint is None and config.init == "arcface":
        arcface = check_arcface_weights(config.arcface_weights, config.metric.backbone)

    # ---- data: DTW-paired crops; validation speakers held out
    from asccl.training.dataset import split_by_speaker, to_model_input

    train_set, val_set = split_by_speaker(
        config.data, config.val_speakers, emotions=config.emotions
    )
    if main_process:
        log.info("training pairs: %s", train_set.describe())
        log.info("validation pairs (%s): %d", ", ".join(config.val_speakers), len(val_set))

    # ---- model
    metric = ASCCLMetric(config.metric).to(dtype)
    if checkpoint is not None:
        if checkpoint.metric.config != metric.config:
            raise ConfigError(
                f"{checkpoint.path}: its metric config differs from this run's; use another "
                "--out, or --resume false to start over"
            )
        metric.load_state_dict(_saved_weights(checkpoint.path, config.precision))
        if main_process:
            log.info("resuming from %s (step %d)", checkpoint.path, checkpoint.progress.step)
    elif config.init == "arcface":
        metric.init_backbone_from_arcface(arcface)
    elif main_process:
        log.warning("=" * 70)
        log.warning("RANDOM INITIALISATION (init = 'random'): no ArcFace weights are used.")
        log.warning("The paper fine-tunes ArcFace; use this only for tests and demos.")
        log.warning("=" * 70)
    if config.batchnorm == "sync" and world > 1 and device.type == "cuda":
        metric = nn.SyncBatchNorm.convert_sync_batchnorm(metric)
    elif config.batchnorm == "sync" and world > 1 and main_process:
        log.warning("batchnorm='sync' needs CUDA: BatchNorm uses per-process statistics here")
    if config.amp == "fp16" and device.type == "cpu" and main_process:
        log.warning("amp='fp16' on CPU is very slow (no fp16 kernels): use 'bf16'")
    metric.to(device)
    if config.channels_last:
        metric.to(memory_format=torch.channels_last)
    if config.compile:
        metric.backbone.compile()
    model = metric
    if world > 1:
        model = nn.parallel.DistributedDataParallel(
            metric, device_ids=[device.index] if device.type == "cuda" else None
        )

    optimizer = torch.optim.Adam([p for p in metric.parameters() if p.requires_grad], lr=config.lr)
    amp_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(config.amp)
    scaler = torch.amp.GradScaler(device.type, enabled=config.amp == "fp16")
    region_generator = torch.Generator().manual_seed(config.seed + 1)  # same on every rank
    progress = Progress()
    if checkpoint is not None:
        optimizer.load_state_dict(checkpoint.optimizer_state)
        if checkpoint.scaler_state:
            scaler.load_state_dict(checkpoint.scaler_state)
        restore_rng(checkpoint.rng, region_generator)
        progress = checkpoint.progress

    def autocast():
        if amp_dtype is None:
            return nullcontext()
        return torch.autocast(device.type, dtype=amp_dtype)

    def prepare(batch: torch.Tensor) -> torch.Tensor:
        return to_model_input(
            batch.to(device, non_blocking=True),
            size=config.metric.image_size,
            flip_channels=config.metric.channel_order == "bgr",
            channels_last=config.channels_last,
        ).to(dtype)

    history = TrainingLog(out, checkpoint.progress.step if checkpoint else None,
                          config.tensorboard) if main_process else None  # fmt: skip
    if main_process:
        save_config(config, out / "config.json")

    def validate() -> None:
        """Mean loss and positive/negative cosines on the held-out speakers (rank 0)."""
        if main_process and len(val_set):
            row = evaluate(metric, val_set, config, prepare, autocast)
            history.write({"step": progress.step, "epoch": progress.epoch, "split": "val", **row})
            log.info("step %d validation: loss %.4f, positive cosine %.4f, negative %.4f, "
                     "gap %.4f", progress.step, row["loss"], row["positive_cosine"],
                     row["negative_cosine"], row["gap"])  # fmt: skip
        if world > 1:
            dist.barrier()

    def checkpoint_now() -> None:
        if main_process:
            save_checkpoint(out, metric, optimizer, scaler, region_generator, progress,
                            keep=config.keep_checkpoints)  # fmt: skip
        if world > 1:
            dist.barrier()

    # ---- the loop
    sampler = EpochSampler(len(train_set), config.seed, rank, world)
    steps_per_epoch = len(sampler) // (micro_batch * config.grad_accum)
    if steps_per_epoch == 0:
        raise ConfigError(f"{len(train_set)} training pairs are fewer than one batch")
    total_steps = config.epochs * steps_per_epoch
    if config.max_steps is not None:
        total_steps = min(total_steps, config.max_steps)
    if progress.step == 0:
        validate()  # the health signal before training
    bar = tqdm(total=total_steps, initial=progress.step, desc="training metric", unit="step",
               disable=not main_process)  # fmt: skip
    window_start, window_steps = time.perf_counter(), 0
    while progress.step < total_steps:
        sampler.set_epoch(
            progress.epoch, start=progress.batch_in_epoch * micro_batch * config.grad_accum
        )
        loader = DataLoader(train_set, batch_size=micro_batch, sampler=sampler, drop_last=True,
                            num_workers=config.num_workers, pin_memory=device.type == "cuda",
                            persistent_workers=False)  # fmt: skip
        _set_train_mode(metric, config.batchnorm)
        micro = 0
        # whole optimiser steps only: a micro-batch left over at the epoch's end would leak
        # its gradient into the next epoch's first step (and a resumed run lacks it)
        micro_batches = (steps_per_epoch - progress.batch_in_epoch) * config.grad_accum
        for neutral, emotional in islice(loader, micro_batches):
            x, y = prepare(neutral), prepare(emotional)  # (b, 3, S, S) in [-1, 1]
            last_micro = micro == config.grad_accum - 1
            sync = model.no_sync() if world > 1 and not last_micro else nullcontext()
            with sync, autocast():
                output = model(x, y, generator=region_generator)
            scaler.scale(output.loss / config.grad_accum).backward()
            micro += 1
            if not last_micro:
                continue
            micro = 0
            scaler.step(optimizer)
            scaler.update()
            optimizer.zero_grad(set_to_none=True)
            progress.step += 1
            progress.batch_in_epoch += 1
            window_steps += 1
            bar.update()
            if main_process and progress.step % config.log_every == 0:
                elapsed = time.perf_counter() - window_start
                rate = window_steps * config.batch_size / max(elapsed, 1e-9)
                history.write({
                    "step": progress.step, "epoch": progress.epoch, "split": "train",
                    "loss": output.loss.item(), "pairs_per_s": rate, "lr": config.lr,
                    **_cosines(output.positive_cosine, output.negative_cosine),
                })  # fmt: skip
                bar.set_postfix(loss=f"{output.loss.item():.3f}", pairs_s=f"{rate:.1f}")
                window_start, window_steps = time.perf_counter(), 0
            # The last step validates before its checkpoint, like every other: a run
            # resumed from any checkpoint (even the last) then logs each row exactly once.
            done = progress.step >= total_steps
            if done or _due(progress.step, config.val_every):
                validate()
                _set_train_mode(metric, config.batchnorm)
            if done or _due(progress.step, config.checkpoint_every):
                checkpoint_now()
            if done:
                break
        else:  # the epoch ran out
            progress.epoch += 1
            progress.batch_in_epoch = 0
            if not _due(progress.step, config.val_every):  # else validated at this step
                validate()
            checkpoint_now()
    bar.close()

    final = out / "metric.safetensors"
    if main_process:
        save_metric(metric, final)
        history.close()
        plot_curves(history.path, out / "curves.png")
        log.info("metric written to %s; curves in %s", final, out / "curves.png")
    if world > 1:
        dist.barrier()
        dist.destroy_process_group()
    return final


def _require_device(device: str) -> None:
    """A CUDA device asked for where there is none (or not that many) is a config error."""
    if not device.startswith("cuda"):
        return
    index = int(device.partition(":")[2] or 0)
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if index >= count:
        raise ConfigError(f"device {device!r}: this machine has {count} CUDA device(s)")


def _saved_weights(checkpoint: Path, precision: str) -> dict[str, torch.Tensor]:
    """A checkpoint's metric weights as saved (``load_metric`` gives float32), refused if
    they were trained in another precision than this run's."""
    from safetensors.torch import load_file

    state = load_file(str(checkpoint / "metric.safetensors"))
    saved = {str(t.dtype).removeprefix("torch.") for t in state.values() if t.is_floating_point()}
    if saved != {precision}:
        raise ConfigError(
            f"{checkpoint}: trained in precision {', '.join(sorted(saved))}, this run's is "
            f"{precision}; use another --out, or --resume false to start over"
        )
    return state


def _due(step: int, every: int) -> bool:
    """Whether ``step`` is a multiple of ``every`` (0: never)."""
    return every > 0 and step % every == 0


def _cosines(positive: torch.Tensor, negative: torch.Tensor) -> dict[str, float]:
    pos, neg = positive.float().cpu(), negative.float().cpu()
    row = {"positive_cosine": pos.mean().item(), "negative_cosine": neg.mean().item()}
    row["gap"] = row["positive_cosine"] - row["negative_cosine"]
    for i in range(len(pos)):
        row[f"positive_cosine_{i + 1}"] = pos[i].item()
        row[f"negative_cosine_{i + 1}"] = neg[i].item()
    return row


@torch.no_grad()
def evaluate(
    metric: ASCCLMetric, dataset, config: TrainConfig, prepare, autocast
) -> dict[str, float]:
    """Loss and per-stage cosines on ``dataset`` in eval mode, on fixed regions and the first
    ``config.val_batches`` batches, so successive validations compare like with like."""
    was_training = metric.training
    metric.eval()
    generator = torch.Generator().manual_seed(config.seed + 2)
    loader = DataLoader(dataset, batch_size=config.batch_size, shuffle=False,
                        num_workers=config.num_workers)  # fmt: skip
    loss = positive = negative = 0.0
    batches = 0
    for neutral, emotional in loader:
        with autocast():
            output = metric(prepare(neutral), prepare(emotional), generator=generator)
        loss += output.loss.float()
        positive += output.positive_cosine.float()
        negative += output.negative_cosine.float()
        batches += 1
        if config.val_batches and batches >= config.val_batches:
            break
    metric.train(was_training)
    row = _cosines(positive / batches, negative / batches)
    row["loss"] = (loss / batches).item()
    return row
