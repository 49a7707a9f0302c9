"""Resumable epoch sampling: a seeded shuffle per epoch, this process's share of it, and
batches that continue mid-epoch exactly where a checkpoint left off."""

from __future__ import annotations

import math
from collections.abc import Iterator
from itertools import islice
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from asccl.config import ConfigError
from asccl.training.progress import Progress


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


class EpochBatches:
    """Endless batches of ``dataset`` for this process, epoch after epoch, that keep
    ``progress.epoch`` / ``progress.batch_in_epoch`` up to date and start where they say.

    An epoch is ``per_epoch`` batches of ``batch`` items: the whole batches of this
    process's share, rounded down to a multiple of ``group`` (the micro-batches of one
    optimiser step: an epoch ends on a whole step, so no gradient of a left-over
    micro-batch leaks into the next epoch, which a resumed run would lack). Each
    ``DataLoader`` draws its worker seeds from ``generator`` (saved in checkpoints), never
    from the global RNG, so how often other loaders are made cannot shift the run.
    """

    def __init__(
        self,
        dataset: Dataset,
        progress: Progress,
        *,
        batch: int,
        seed: int,
        rank: int,
        world: int,
        workers: int,
        generator: torch.Generator,
        group: int = 1,
        pin_memory: bool = False,
    ) -> None:
        self.dataset, self.progress, self.batch = dataset, progress, batch
        self.workers, self.generator, self.pin_memory = workers, generator, pin_memory
        self.sampler = EpochSampler(len(dataset), seed, rank, world)
        self.per_epoch = len(self.sampler) // batch // group * group
        if self.per_epoch == 0:
            raise ConfigError(
                f"{len(dataset)} training items are fewer than one batch per process "
                f"({batch * group} over {world} process(es))"
            )
        self._iterator = self._batches()

    def epoch_ended(self) -> bool:
        """If the current epoch's batches are all drawn, count the epoch as done (epoch + 1,
        no batch drawn yet) and say so; call after each optimiser step."""
        if self.progress.batch_in_epoch < self.per_epoch:
            return False
        self.progress.epoch += 1
        self.progress.batch_in_epoch = 0
        return True

    def __iter__(self) -> EpochBatches:
        return self

    def __next__(self) -> Any:
        return next(self._iterator)

    def close(self) -> None:
        """Stop the current loader (and its worker processes)."""
        self._iterator.close()

    def _batches(self) -> Iterator[Any]:
        progress = self.progress
        while True:
            self.sampler.set_epoch(progress.epoch, start=progress.batch_in_epoch * self.batch)
            loader = DataLoader(self.dataset, batch_size=self.batch, sampler=self.sampler,
                                drop_last=True, num_workers=self.workers,
                                generator=self.generator,
                                pin_memory=self.pin_memory)  # fmt: skip
            for batch in islice(loader, self.per_epoch - progress.batch_in_epoch):
                progress.batch_in_epoch += 1
                yield batch
            self.epoch_ended()  # a step that spans two epochs: the rest comes from the next
