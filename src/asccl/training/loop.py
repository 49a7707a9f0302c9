"""The training core both trainers share: :class:`TrainingRun`.

A trainer builds one run from its config and run settings, then reads top to bottom::

    run = TrainingRun(config, config.run_settings(), desc="training metric")
    batch = run.local_batch(config.batch_size)          # this process's share
    model = build(...); state = run.saved_weights("model.safetensors")  # None: fresh
    optimizer, scaler = ..., amp.grad_scaler()
    run.track(models={"model.safetensors": writer}, optimizers={"model": optimizer},
              scalers={"model": scaler}, generators={"regions": generator})  # restored
    batches = run.batches(dataset, batch)
    run.begin(total_steps)                               # log, config.json, progress bar
    while not run.done:
        ...one optimiser step on next(batches)...
        run.step_done()
        if run.due(config.log_every): run.log({...})
        if run.done or run.due(config.checkpoint_every): run.save_checkpoint()
    return run.finish(panels)                            # final model(s), curves

What it does for them: the distributed set-up (``torchrun``), the seed and threads, the
resume (the newest loadable checkpoint in ``out``; its run settings must equal this run's,
see :mod:`asccl.training.resume`, and it may not be past this run's steps: else one line
naming the keys; checkpoints of which none loads are refused in one line naming the damaged
file, never taken for a fresh start), resumable epoch sampling
(:class:`~asccl.training.sampling.EpochBatches` with a saved ``loader`` generator),
checkpoints holding every named optimiser, scaler and generator, the log and curves, the
progress bar. A run that starts from step 0 first
removes what an earlier run left in ``out`` (checkpoints, final models, curves, the
trainer's ``outputs``): none of it is this run's.
"""

from __future__ import annotations

import dataclasses
import logging
import shutil
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, Protocol

import torch
from torch.utils.data import Dataset

from asccl.config import ConfigError, save_config
from asccl.training.checkpoints import checkpoint_dirs, latest_checkpoint, save_checkpoint
from asccl.training.distributed import barrier, setup_distributed, shutdown, world_size
from asccl.training.history import TrainingLog, plot_curves
from asccl.training.progress import Progress, progress_bar
from asccl.training.resume import check_resume
from asccl.training.sampling import EpochBatches

log = logging.getLogger(__name__)
#: the seed offset of the generator every DataLoader draws its worker seeds from
LOADER_SEED = 2


class RunConfig(Protocol):
    """The settings :class:`TrainingRun` reads from a trainer's config."""

    out: Path
    device: str
    seed: int
    threads: int
    workers: int
    resume: bool
    keep_checkpoints: int
    tensorboard: bool


class TrainingRun:
    """One run of a trainer: its processes, where it stands, what it saves and logs."""

    def __init__(
        self,
        config: RunConfig,
        settings: Mapping[str, str],
        *,
        desc: str,
        outputs: Iterable[str] = (),
    ) -> None:
        """Set up the processes, seed, threads, and the checkpoint to resume from (refused
        with a :class:`ConfigError` if made with other settings, a
        :class:`~asccl.io.CheckpointError` if ``out`` has checkpoints but none loads: nothing
        in ``out`` is touched). ``outputs``: globs under ``out`` of the trainer's own files
        that a fresh run removes (e.g. sample grids)."""
        self.config, self.out, self.desc = config, Path(config.out), desc
        self.outputs = tuple(outputs)
        self.rank, self.world, self.device = setup_distributed(config.device)
        self.main = self.rank == 0
        if config.threads > 0:
            torch.set_num_threads(config.threads)
        torch.manual_seed(config.seed)
        self.settings = {**settings, "processes": str(self.world)}
        self.checkpoint = latest_checkpoint(self.out) if config.resume else None
        self.progress = Progress()
        if self.checkpoint is not None:
            cp = self.checkpoint
            check_resume(cp.path, cp.settings, self.settings, cp.progress.step, None)
            self.progress = dataclasses.replace(cp.progress)
            if self.main:
                log.info("resuming from %s (step %d)", cp.path, cp.progress.step)
        self.loader_generator = torch.Generator().manual_seed(config.seed + LOADER_SEED)
        self.models: dict[str, Callable[[Path], object]] = {}
        self.optimizers: dict[str, torch.optim.Optimizer] = {}
        self.scalers: dict[str, torch.amp.GradScaler] = {}
        self.generators: dict[str, torch.Generator] = {}
        self.total = 0
        self.history: TrainingLog | None = None
        self._batches: EpochBatches | None = None
        self._window = (time.perf_counter(), 0)

    # ---------------------------------------------------------------- set-up

    def local_batch(self, batch_size: int, grad_accum: int = 1) -> int:
        """This process's micro-batch of a global ``batch_size`` split over the processes
        and ``grad_accum`` micro-batches."""
        if batch_size % (self.world * grad_accum):
            raise ConfigError(
                f"batch_size {batch_size} must be divisible by processes ({self.world}) x "
                f"grad_accum ({grad_accum})"
            )
        return batch_size // (self.world * grad_accum)

    def saved_weights(self, file: str) -> dict[str, torch.Tensor] | None:
        """The state dict of model ``file`` in the checkpoint resumed from (as saved, on the
        CPU); ``None`` for a fresh run."""
        return self.checkpoint.weights[file] if self.checkpoint is not None else None

    def track(
        self,
        *,
        models: Mapping[str, Callable[[Path], object]],
        optimizers: Mapping[str, torch.optim.Optimizer],
        scalers: Mapping[str, torch.amp.GradScaler] | None = None,
        generators: Mapping[str, torch.Generator] | None = None,
    ) -> None:
        """What every checkpoint saves: ``models`` (file name -> writer), the named
        optimisers, AMP scalers and random generators; restored now when resuming (with
        the global RNG)."""
        self.models = dict(models)
        self.optimizers = dict(optimizers)
        self.scalers = dict(scalers or {})
        self.generators = {**(generators or {}), "loader": self.loader_generator}
        if self.checkpoint is not None:
            self.checkpoint.restore(self.optimizers, self.scalers, self.generators)

    def batches(self, dataset: Dataset, batch: int, group: int = 1) -> EpochBatches:
        """Endless, resumable batches of ``dataset`` for this process (see
        :class:`~asccl.training.sampling.EpochBatches`)."""
        self._batches = EpochBatches(
            dataset, self.progress, batch=batch, seed=self.config.seed, rank=self.rank,
            world=self.world, workers=self.config.workers, generator=self.loader_generator,
            group=group, pin_memory=self.device.type == "cuda",
        )  # fmt: skip
        return self._batches

    def begin(self, total_steps: int) -> None:
        """Start training towards ``total_steps``: refuse a checkpoint past it, clear an
        earlier run (fresh start), open the log, write ``config.json``, show progress."""
        self.total = total_steps
        cp = self.checkpoint
        if cp is not None:
            check_resume(cp.path, cp.settings, self.settings, cp.progress.step, total_steps)
        if self.main:
            if cp is None:
                self._clear_earlier_run()
            self.history = TrainingLog(
                self.out, cp.progress.step if cp else None, self.config.tensorboard
            )
            save_config(self.config, self.out / "config.json")
        self.bar = progress_bar(total_steps, self.progress.step, self.desc, self.main)
        self._window = (time.perf_counter(), 0)

    # ---------------------------------------------------------------- the loop

    @property
    def step(self) -> int:
        return self.progress.step

    @property
    def done(self) -> bool:
        return self.progress.step >= self.total

    def step_done(self) -> bool:
        """Count one optimiser step; ``True`` if it drew the epoch's last batch (the epoch
        is then counted as done)."""
        self.progress.step += 1
        start, steps = self._window
        self._window = (start, steps + 1)
        self.bar.update()
        return self._batches.epoch_ended() if self._batches is not None else False

    def due(self, every: int) -> bool:
        """Whether this step is a multiple of ``every`` (0: never)."""
        return every > 0 and self.progress.step % every == 0

    def seconds_per_step(self) -> float:
        """Mean wall time of the steps since the last call (or the start)."""
        start, steps = self._window
        now = time.perf_counter()
        self._window = (now, 0)
        return (now - start) / max(steps, 1)

    def log(self, row: Mapping[str, Any]) -> None:
        """A ``log.csv`` row (main process) with this step and epoch first."""
        if self.history is not None:
            self.history.write({"step": self.progress.step, "epoch": self.progress.epoch, **row})

    def save_checkpoint(self) -> None:
        """Checkpoint this step (main process; every process waits for it)."""
        if self.main:
            save_checkpoint(
                self.out, self.progress, models=self.models, optimizers=self.optimizers,
                scalers=self.scalers, generators=self.generators, settings=self.settings,
                config=dataclasses.asdict(self.config), keep=self.config.keep_checkpoints,
            )  # fmt: skip
        barrier(self.world)

    def finish(self, panels: Mapping[str, Callable[[str], bool]]) -> Path:
        """Write the final model file(s) and the curves (``panels``: see
        :func:`~asccl.training.history.plot_curves`); returns the first model's path."""
        self.bar.close()
        if self._batches is not None:
            self._batches.close()
        final = [self.out / name for name in self.models]
        if self.main:
            for path, write in zip(final, self.models.values(), strict=True):
                write(path)
            self.history.close()
            if self.history.rows:
                plot_curves(self.history.path, self.out / "curves.png", panels)
            log.info("%s written; log and curves in %s", final[0], self.out)
        shutdown(self.world)
        return final[0]

    def _clear_earlier_run(self) -> None:
        old = [*checkpoint_dirs(self.out)]
        for pattern in (*self.models, "curves.png", *self.outputs):
            old += sorted(p for p in self.out.glob(pattern) if p.is_file())
        if old:
            log.info("starting from step 0: removing %d files and folders of an earlier run "
                     "in %s", len(old), self.out)  # fmt: skip
        for path in old:
            if path.is_dir():
                shutil.rmtree(path)
            else:
                path.unlink()


def check_resumable(config: RunConfig, settings: Mapping[str, str], total_steps: int) -> None:
    """Raise the :class:`ConfigError` a :class:`TrainingRun` of ``config`` would raise on
    resuming (other settings, or a checkpoint past ``total_steps``), or its
    :class:`~asccl.io.CheckpointError` (checkpoints of which none loads), without training;
    nothing to resume (or ``resume = false``) is fine."""
    checkpoint = latest_checkpoint(Path(config.out)) if config.resume else None
    if checkpoint is not None:
        now = {**settings, "processes": str(world_size())}
        check_resume(checkpoint.path, checkpoint.settings, now, checkpoint.progress.step,
                     total_steps)  # fmt: skip
