"""Training checkpoints: everything needed to continue a run exactly where it stopped.

A checkpoint is a folder ``<out>/checkpoints/step_<N>/`` holding

* ``metric.safetensors``: the metric (weights + its config in the header; usable as is by
  ``ASCCLLoss``);
* ``optimizer.safetensors``: the optimiser's tensors (Adam moments, step counts);
* ``rng.safetensors``: the global CPU/CUDA RNG states and the region sampler's generator;
* ``state.json``: epoch, step, position in the epoch, optimiser hyper-parameters, AMP scaler.

It is written to a temporary folder and renamed into place, so a run killed at any moment
(even by SIGKILL) leaves either a complete checkpoint or none (the next save removes the
temporary folder it left); :func:`latest_checkpoint` skips a folder that does not load, with
a warning. Nothing is unpickled.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from asccl.metric import ASCCLMetric, load_metric, save_metric

log = logging.getLogger(__name__)
STEP_DIR = re.compile(r"^step_(\d+)$")


@dataclass
class Progress:
    """Where a run is: optimiser steps done, current epoch, batches done in that epoch."""

    step: int = 0
    epoch: int = 0
    batch_in_epoch: int = 0


def save_checkpoint(
    out: Path,
    metric: ASCCLMetric,
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler | None,
    region_generator: torch.Generator,
    progress: Progress,
    keep: int = 3,
) -> Path:
    """Write a checkpoint for ``progress.step`` atomically; keep the ``keep`` newest."""
    from safetensors.torch import save_file

    with checkpoint_folder(out, progress.step, keep) as folder:
        save_metric(metric, folder / "metric.safetensors")
        opt_tensors, opt_meta = flatten_optimizer_state(optimizer.state_dict())
        save_file(opt_tensors, str(folder / "optimizer.safetensors"))
        save_file(_rng_tensors(region_generator), str(folder / "rng.safetensors"))
        state = {
            "progress": asdict(progress),
            "optimizer": opt_meta,
            "scaler": scaler.state_dict() if scaler is not None and scaler.is_enabled() else None,
        }
        (folder / "state.json").write_text(json.dumps(state, indent=1))
    return out / "checkpoints" / f"step_{progress.step:08d}"


@contextmanager
def checkpoint_folder(out: Path, step: int, keep: int) -> Iterator[Path]:
    """A temporary folder to fill; on leaving the block it becomes
    ``out/checkpoints/step_<step>`` by one rename (a kill leaves a whole checkpoint or none)
    and all but the ``keep`` newest step folders are removed (``keep <= 0``: none). An error
    inside the block removes the temporary folder and leaves the old checkpoints alone."""
    root = out / "checkpoints"
    root.mkdir(parents=True, exist_ok=True)
    for stale in root.glob(".step_*"):  # the temporary folder of a run killed mid-write
        shutil.rmtree(stale, ignore_errors=True)
    final = root / f"step_{step:08d}"
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", dir=root))
    try:
        yield tmp
        os.chmod(tmp, 0o755)  # mkdtemp creates 0700
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    for old in checkpoint_dirs(out)[:-keep] if keep > 0 else []:
        shutil.rmtree(old, ignore_errors=True)


def checkpoint_dirs(out: Path) -> list[Path]:
    """``out/checkpoints/step_N`` folders, oldest first (by N)."""
    root = out / "checkpoints"
    if not root.is_dir():
        return []
    dirs = [p for p in root.iterdir() if p.is_dir() and STEP_DIR.match(p.name)]
    return sorted(dirs, key=lambda p: int(STEP_DIR.match(p.name).group(1)))


@dataclass
class Checkpoint:
    """A loaded checkpoint (tensors on the CPU)."""

    path: Path
    metric: ASCCLMetric
    optimizer_state: dict[str, Any]
    scaler_state: dict[str, Any] | None
    rng: dict[str, Tensor]
    progress: Progress


def load_checkpoint(path: Path) -> Checkpoint:
    """Read a checkpoint folder; raises if any part is missing or malformed."""
    from safetensors.torch import load_file

    state = json.loads((path / "state.json").read_text())
    optimizer_state = unflatten_optimizer_state(
        load_file(str(path / "optimizer.safetensors")), state["optimizer"]
    )
    return Checkpoint(
        path=path,
        metric=load_metric(path / "metric.safetensors"),
        optimizer_state=optimizer_state,
        scaler_state=state["scaler"],
        rng=load_file(str(path / "rng.safetensors")),
        progress=Progress(**state["progress"]),
    )


def latest_checkpoint(out: Path) -> Checkpoint | None:
    """The newest checkpoint under ``out`` that loads; broken ones are skipped with a warning."""
    for path in reversed(checkpoint_dirs(out)):
        try:
            return load_checkpoint(path)
        except Exception as exc:  # partial copy, corrupt file, wrong format...
            log.warning("skipping checkpoint %s: it does not load (%s)", path, exc)
    return None


def restore_rng(rng: dict[str, Tensor], region_generator: torch.Generator) -> None:
    """Put back the RNG states saved by :func:`save_checkpoint`."""
    torch.set_rng_state(rng["torch_cpu"])
    region_generator.set_state(rng["regions"])
    cuda = [rng[k] for k in sorted(rng) if k.startswith("torch_cuda_")]
    if cuda and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda)


def _rng_tensors(region_generator: torch.Generator) -> dict[str, Tensor]:
    tensors = {"torch_cpu": torch.get_rng_state(), "regions": region_generator.get_state()}
    if torch.cuda.is_available():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"torch_cuda_{i}"] = s
    return tensors


def flatten_optimizer_state(state_dict: dict[str, Any]) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """Split an optimiser state dict into tensors (``state.<param>.<name>``) and JSON."""
    tensors: dict[str, Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for param, entries in state_dict["state"].items():
        for name, value in entries.items():
            if isinstance(value, Tensor):
                tensors[f"state.{param}.{name}"] = value.detach().cpu().contiguous()
            else:
                scalars.setdefault(str(param), {})[name] = value
    return tensors, {"param_groups": state_dict["param_groups"], "scalars": scalars}


def unflatten_optimizer_state(tensors: dict[str, Tensor], meta: dict[str, Any]) -> dict[str, Any]:
    """Inverse of :func:`flatten_optimizer_state`."""
    state: dict[int, dict[str, Any]] = {}
    for key, value in tensors.items():
        _, param, name = key.split(".", 2)
        state.setdefault(int(param), {})[name] = value
    for param, entries in meta["scalars"].items():
        state.setdefault(int(param), {}).update(entries)
    return {"state": state, "param_groups": meta["param_groups"]}
