"""Process-group set-up under ``torchrun`` and the collective helpers every trainer uses."""

from __future__ import annotations

import os
from collections.abc import Iterable

import torch
import torch.distributed as dist
from torch import nn

from asccl.config import ConfigError


def world_size() -> int:
    """Processes in this run: ``WORLD_SIZE`` under torchrun, else 1."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def require_device(device: str) -> None:
    """A CUDA device asked for where there is none (or not that many) is a config error."""
    if not device.startswith("cuda"):
        return
    index = int(device.partition(":")[2] or 0)
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if index >= count:
        raise ConfigError(f"device {device!r}: this machine has {count} CUDA device(s)")


def setup_distributed(device: str) -> tuple[int, int, torch.device]:
    """(rank, world size, device); initialises torch.distributed under torchrun."""
    require_device(device)
    world = world_size()
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda":
        device = f"cuda:{local_rank}"
    dev = torch.device(device)
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if dev.type == "cuda" else "gloo")
    return rank, world, dev


def broadcast_module(module: nn.Module, world: int) -> None:
    """Copy process 0's weights and buffers to every process (no-op for one process)."""
    if world > 1:
        for tensor in module.state_dict().values():
            dist.broadcast(tensor, 0)


def average_gradients(parameters: Iterable[nn.Parameter], world: int) -> None:
    """All-reduce (mean) the gradients of ``parameters`` over the processes."""
    if world == 1:
        return
    for p in parameters:
        if p.grad is not None:
            dist.all_reduce(p.grad)
            p.grad.div_(world)


def barrier(world: int) -> None:
    """Wait for every process (no-op for one process)."""
    if world > 1:
        dist.barrier()


def shutdown(world: int) -> None:
    """The end of a run: wait for every process, then leave the process group."""
    if world > 1 and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()
