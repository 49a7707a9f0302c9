"""Train the ASCCL metric on DTW-paired (neutral, emotional) face crops.

One process (CPU or one GPU)::

    asccl train-metric --config configs/metric/seed.toml --data runs/mead \\
        --arcface-weights backbone.pth

Several GPUs / nodes (DDP; the same command line, ``batch_size`` is the global batch)::

    torchrun --nproc_per_node 8 -m asccl train-metric --config configs/metric/seed.toml ...

The run resumes from the newest valid checkpoint in ``--out`` unless ``--resume false``;
a run killed at any point (even SIGKILL) and resumed ends with the same weights as an
uninterrupted one (bit for bit on CPU with a fixed seed). A resume with settings that move
the data order or the maths (batch size, lr, seed, data, metric...) is refused in one line
naming them (:meth:`TrainConfig.run_settings`). ``precision = "float64"`` trains in double
precision, where runs that differ only in the order of sums (processes, threads) agree to
rounding (~1e-16 relative): for reproducibility checks. The plumbing (processes, resume,
epochs, checkpoints, log) is :class:`~asccl.training.loop.TrainingRun`'s.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import DataLoader

from asccl.io import load_state_dict_strict
from asccl.metric import ASCCLMetric, save_metric
from asccl.metric.iresnet import check_arcface_weights
from asccl.metric.model import MetricHealth
from asccl.training.amp import AMP
from asccl.training.config import TrainConfig
from asccl.training.distributed import barrier
from asccl.training.loop import TrainingRun

log = logging.getLogger(__name__)

METRIC_FILE = "metric.safetensors"
#: the curves: loss, mean cosines and their gap, per-stage cosines (train and validation)
PANELS: dict[str, Callable[[str], bool]] = {
    "ASCCL loss": lambda c: c == "loss",
    "mean cosine similarity": lambda c: c in ("positive_cosine", "negative_cosine", "gap"),
    "per-stage cosine similarity": lambda c: c.startswith(("positive_cosine_", "negative_cosine_")),
}


def train_metric(config: TrainConfig) -> Path:
    """Run (or resume) a training run; returns the final metric checkpoint's path."""
    run = TrainingRun(config, config.run_settings(), desc="training metric")
    device, world = run.device, run.world
    dtype = {"float32": torch.float32, "float64": torch.float64}[config.precision]
    micro_batch = run.local_batch(config.batch_size, config.grad_accum)  # per process, pass

    # ---- start from this run's newest checkpoint, else from ArcFace weights (or random);
    # a missing weights file is reported now, not after a long scan of the data
    saved = run.saved_weights(METRIC_FILE)
    arcface = None
    if saved is None and config.init == "arcface":
        arcface = check_arcface_weights(config.arcface_weights, config.metric.backbone)

    # ---- data: DTW-paired crops; validation speakers held out
    from asccl.training.dataset import data_run_settings, split_by_speaker, to_model_input

    train_set, val_set = split_by_speaker(
        config.data, config.val_speakers, emotions=config.emotions
    )
    run.settings.update(data_run_settings(train_set, val_set))  # compared in run.begin()
    if run.main:
        log.info("training pairs: %s", train_set.describe())
        log.info("validation pairs (%s): %d", ", ".join(config.val_speakers), len(val_set))

    # ---- model
    metric = ASCCLMetric(config.metric).to(dtype)
    if saved is not None:  # as saved: float64 weights stay float64
        load_state_dict_strict(metric, saved, run.checkpoint.path / METRIC_FILE)
    elif config.init == "arcface":
        metric.init_backbone_from_arcface(arcface)
    elif run.main:
        log.warning("=" * 70)
        log.warning("RANDOM INITIALISATION (init = 'random'): no ArcFace weights are used.")
        log.warning("The paper fine-tunes ArcFace; use this only for tests and demos.")
        log.warning("=" * 70)
    if config.batchnorm == "sync" and world > 1 and device.type == "cuda":
        metric = nn.SyncBatchNorm.convert_sync_batchnorm(metric)
    elif config.batchnorm == "sync" and world > 1 and run.main:
        log.warning("batchnorm='sync' needs CUDA: BatchNorm uses per-process statistics here")
    metric.to(device)
    if config.channels_last:
        metric.to(memory_format=torch.channels_last)
    if config.compile:
        metric.compile_backbone()
    model = metric
    if world > 1:  # DDP copies process 0's weights to every process
        model = nn.parallel.DistributedDataParallel(
            metric, device_ids=[device.index] if device.type == "cuda" else None
        )

    # ---- optimiser, AMP, region draws; restored when resuming
    optimizer = torch.optim.Adam([p for p in metric.parameters() if p.requires_grad], lr=config.lr)
    amp = AMP(config.amp, device, warn=run.main)
    scaler = amp.grad_scaler()
    region_generator = torch.Generator().manual_seed(config.seed + 1)  # same on every rank
    # the speakers it trained and validated on, in the file (asccl experiment checks them)
    speakers = {"train": train_set.speakers(), "validation": val_set.speakers()}
    run.track(models={METRIC_FILE: lambda path: save_metric(metric, path, speakers=speakers)},
              optimizers={"metric": optimizer}, scalers={"metric": scaler},
              generators={"regions": region_generator})  # fmt: skip

    def prepare(batch: torch.Tensor) -> torch.Tensor:
        return to_model_input(
            batch.to(device, non_blocking=True),
            size=config.metric.image_size,
            flip_channels=config.metric.channel_order == "bgr",
            channels_last=config.channels_last,
        ).to(dtype)

    def validate() -> None:
        """Mean loss and positive/negative cosines on the held-out speakers (rank 0)."""
        if run.main and len(val_set):
            row = evaluate(metric, val_set, config, prepare, amp.autocast)
            run.log({"split": "val", **row})
            log.info("step %d validation: loss %.4f, positive cosine %.4f, negative %.4f, "
                     "gap %.4f", run.step, row["loss"], row["positive_cosine"],
                     row["negative_cosine"], row["gap"])  # fmt: skip
        _set_train_mode(metric, config.batchnorm)
        barrier(world)

    # ---- the loop: whole optimiser steps of grad_accum micro-batches
    batches = run.batches(train_set, micro_batch, group=config.grad_accum)
    total_steps = config.epochs * (batches.per_epoch // config.grad_accum)
    if config.max_steps is not None:
        total_steps = min(total_steps, config.max_steps)
    run.begin(total_steps)
    if run.step == 0:
        validate()  # the health signal before training
    _set_train_mode(metric, config.batchnorm)
    while not run.done:
        logged = (run.step + 1) % config.log_every == 0  # this step's row needs its health
        means = _PairMeans()  # the logged row: over all the step's micro-batches
        for micro in range(config.grad_accum):
            neutral, emotional = next(batches)
            x, y = prepare(neutral), prepare(emotional)  # (b, 3, S, S) in [-1, 1]
            last = micro == config.grad_accum - 1
            sync = model.no_sync() if world > 1 and not last else nullcontext()
            with sync, amp.autocast():
                output = model(x, y, generator=region_generator, health=logged)
            scaler.scale(output.loss / config.grad_accum).backward()
            if logged:
                means.add(output, len(x))
        scaler.step(optimizer)
        scaler.update()
        optimizer.zero_grad(set_to_none=True)
        epoch_ended = run.step_done()

        if logged:
            rate = config.batch_size / run.seconds_per_step()
            row = means.row()
            loss = row.pop("loss")
            run.log({"split": "train", "loss": loss, "pairs_per_s": rate, "lr": config.lr,
                     **row})  # fmt: skip
            run.bar.set_postfix(loss=f"{loss:.3f}", pairs_s=f"{rate:.1f}")
        # The last step validates before its checkpoint, like every other: a run resumed
        # from any checkpoint (even the last) then logs each row exactly once.
        if run.done or epoch_ended or run.due(config.val_every):
            validate()
        if run.done or epoch_ended or run.due(config.checkpoint_every):
            run.save_checkpoint()
    return run.finish(PANELS)


def _set_train_mode(metric: nn.Module, batchnorm: str) -> None:
    metric.train()
    if batchnorm == "frozen":  # running statistics only: BN layers stay in eval mode
        for module in metric.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                module.eval()


def _cosines(health: MetricHealth) -> dict[str, float]:
    """The log columns of a health signal: mean and per-stage cosines, their gap."""
    pos, neg = health.positive_cosine.float().cpu(), health.negative_cosine.float().cpu()
    row = {"positive_cosine": pos.mean().item(), "negative_cosine": neg.mean().item()}
    row["gap"] = row["positive_cosine"] - row["negative_cosine"]
    for i in range(len(pos)):
        row[f"positive_cosine_{i + 1}"] = pos[i].item()
        row[f"negative_cosine_{i + 1}"] = neg[i].item()
    return row


class _PairMeans:
    """Means over pairs of the loss and health cosines of several batches: each batch's
    means (as :class:`~asccl.metric.model.ContrastiveOutput` gives them) weighted by its
    number of pairs, summed in float64 on the CPU."""

    def __init__(self) -> None:
        self.pairs = 0
        self.loss = self.positive = self.negative = 0.0  # float64 tensors once added to

    def add(self, output, pairs: int) -> None:
        """One batch of ``pairs`` pairs (``output.health`` computed)."""
        as_sum = lambda t: t.detach().cpu().double() * pairs  # noqa: E731
        self.pairs += pairs
        self.loss = self.loss + as_sum(output.loss)
        self.positive = self.positive + as_sum(output.health.positive_cosine)
        self.negative = self.negative + as_sum(output.health.negative_cosine)

    def row(self) -> dict[str, float]:
        """The log columns: ``loss`` and :func:`_cosines`'."""
        row = _cosines(MetricHealth(self.positive / self.pairs, self.negative / self.pairs))
        row["loss"] = (self.loss / self.pairs).item()
        return row


@torch.no_grad()
def evaluate(
    metric: ASCCLMetric,
    dataset,
    config: TrainConfig,
    prepare: Callable[[torch.Tensor], torch.Tensor],
    autocast: Callable[[], AbstractContextManager],
) -> dict[str, float]:
    """Loss and per-stage cosines on ``dataset`` in eval mode, on fixed regions and the first
    ``config.val_batches`` batches, so successive validations compare like with like."""
    was_training = metric.training
    metric.eval()
    generator = torch.Generator().manual_seed(config.seed + 3)
    loader = DataLoader(dataset, batch_size=config.batch_size, shuffle=False,
                        num_workers=config.workers, generator=torch.Generator())  # fmt: skip
    means = _PairMeans()
    for batches, (neutral, emotional) in enumerate(loader, start=1):
        with autocast():
            output = metric(prepare(neutral), prepare(emotional), generator=generator,
                            health=True)  # fmt: skip
        means.add(output, len(neutral))  # a short last batch weighs by its pairs
        if config.val_batches and batches >= config.val_batches:
            break
    metric.train(was_training)
    return means.row()
