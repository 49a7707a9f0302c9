"""Training checkpoints: everything needed to continue a run exactly where it stopped.

A checkpoint is a folder ``<out>/checkpoints/step_<N>/`` holding

* the model file(s) a trainer writes (e.g. ``metric.safetensors``, ``generator.safetensors``:
  usable as they are);
* ``optimizer_<name>.safetensors``: each named optimiser's tensors (Adam moments, steps);
* ``rng.safetensors``: the global CPU/CUDA RNG states and each named ``torch.Generator``;
* ``state.json``: the format, the model files, progress (step, epoch, position in the
  epoch), the optimisers' hyper-parameters, each named AMP scaler, the run's settings
  (:func:`asccl.training.resume.run_settings`, compared on resume) and its full config.

It is written to a temporary folder and renamed into place, so a run killed at any moment
(even by SIGKILL) leaves either a complete checkpoint or none (the next save removes the
temporary folder it left); :func:`latest_checkpoint` skips a newer folder that does not load,
with a warning, and refuses to resume (one line naming the damaged file) when none loads.
Nothing is unpickled.
"""

from __future__ import annotations

import json
import logging
import re
import shutil
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from asccl.config import ConfigError
from asccl.io import CheckpointError, atomic_write, read_weights
from asccl.training.progress import Progress
from asccl.training.resume import START_OVER

log = logging.getLogger(__name__)
STEP_DIR = re.compile(r"^step_(\d+)$")
FORMAT = "asccl-training-checkpoint-2"


@dataclass
class Checkpoint:
    """A loaded checkpoint (tensors on the CPU)."""

    path: Path
    progress: Progress
    settings: dict[str, str]  #: the run settings that made it
    weights: dict[str, dict[str, Tensor]]  #: ``{model file: state dict}`` as saved
    optimizer_states: dict[str, dict[str, Any]]
    scaler_states: dict[str, dict[str, Any] | None]
    rng: dict[str, Tensor]

    def restore(
        self,
        optimizers: Mapping[str, torch.optim.Optimizer],
        scalers: Mapping[str, torch.amp.GradScaler],
        generators: Mapping[str, torch.Generator],
    ) -> None:
        """Load the named optimiser and scaler states and put back every RNG state."""
        for name, optimizer in optimizers.items():
            optimizer.load_state_dict(self.optimizer_states[name])
        for name, scaler in scalers.items():
            if self.scaler_states.get(name):
                scaler.load_state_dict(self.scaler_states[name])
        torch.set_rng_state(self.rng["torch_cpu"])
        for name, generator in generators.items():
            generator.set_state(self.rng[name])
        cuda = [self.rng[k] for k in sorted(self.rng) if k.startswith("torch_cuda_")]
        if cuda and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(cuda)


def save_checkpoint(
    out: Path,
    progress: Progress,
    *,
    models: Mapping[str, Callable[[Path], object]],
    optimizers: Mapping[str, torch.optim.Optimizer],
    scalers: Mapping[str, torch.amp.GradScaler],
    generators: Mapping[str, torch.Generator],
    settings: Mapping[str, str],
    config: Mapping[str, Any] | None = None,
    keep: int = 3,
) -> Path:
    """Write a checkpoint for ``progress.step`` atomically; keep the ``keep`` newest.

    ``models`` maps each model file's name to a function writing it to the path given.
    """
    from safetensors.torch import save_file

    with checkpoint_folder(out, progress.step, keep) as folder:
        for name, write in models.items():
            write(folder / name)
        state: dict[str, Any] = {"format": FORMAT, "models": list(models),
                                 "progress": asdict(progress), "optimizers": {},
                                 "scalers": {}, "settings": dict(settings),
                                 "config": config}  # fmt: skip
        for name, optimizer in optimizers.items():
            tensors, state["optimizers"][name] = flatten_optimizer_state(optimizer.state_dict())
            save_file(tensors, str(folder / f"optimizer_{name}.safetensors"))
        for name, scaler in scalers.items():
            state["scalers"][name] = scaler.state_dict() if scaler.is_enabled() else None
        save_file(_rng_tensors(generators), str(folder / "rng.safetensors"))
        (folder / "state.json").write_text(json.dumps(state, indent=1, default=str))
    return out / "checkpoints" / f"step_{progress.step:08d}"


@contextmanager
def checkpoint_folder(out: Path, step: int, keep: int) -> Iterator[Path]:
    """A temporary folder to fill; on leaving the block it becomes
    ``out/checkpoints/step_<step>`` (:func:`asccl.io.atomic_write`: a kill leaves a whole
    checkpoint or none) and all but the ``keep`` newest step folders are removed (``keep
    <= 0``: none). An error inside the block removes the temporary folder and leaves the
    old checkpoints alone."""
    root = out / "checkpoints"
    root.mkdir(parents=True, exist_ok=True)
    for stale in root.glob(".step_*"):  # what a run killed mid-write left
        shutil.rmtree(stale, ignore_errors=True)
    with atomic_write(root / f"step_{step:08d}", folder=True) as tmp:
        yield tmp
    for old in checkpoint_dirs(out)[:-keep] if keep > 0 else []:
        shutil.rmtree(old, ignore_errors=True)


def checkpoint_dirs(out: Path) -> list[Path]:
    """``out/checkpoints/step_N`` folders, oldest first (by N)."""
    root = out / "checkpoints"
    if not root.is_dir():
        return []
    dirs = [p for p in root.iterdir() if p.is_dir() and STEP_DIR.match(p.name)]
    return sorted(dirs, key=lambda p: int(STEP_DIR.match(p.name).group(1)))


def load_checkpoint(path: Path) -> Checkpoint:
    """Read a checkpoint folder; every part is checked, nothing is unpickled.

    Raises:
        CheckpointError: a part is missing or damaged (one line naming that file:
            ``state.json``, a model file, an optimiser file or ``rng.safetensors``).
        ConfigError: a whole checkpoint of an older format (no run settings saved), which
            cannot be checked against this run.
    """
    state_file = path / "state.json"
    state = _read_state(state_file)
    if "format" not in state and "progress" in state:
        raise ConfigError(
            f"{path}: cannot resume, it was written by an older asccl without its run "
            f"settings; {START_OVER}"
        )
    try:
        if state["format"] != FORMAT:
            raise ValueError(f"unknown checkpoint format {state['format']!r}, not {FORMAT!r}")
        progress = Progress(**state["progress"])
        settings, scalers = dict(state["settings"]), dict(state["scalers"])
        models, optimizers = list(state["models"]), dict(state["optimizers"])
        if not all(isinstance(name, str) and "/" not in name for name in [*models, *optimizers]):
            raise ValueError("a model or optimiser name is not a plain file name")
    except (KeyError, TypeError, ValueError) as exc:
        problem = f"missing key {exc}" if isinstance(exc, KeyError) else str(exc)
        raise CheckpointError(state_file, f"malformed checkpoint state ({problem})") from None
    optimizer_states = {}
    for name, meta in optimizers.items():
        file = path / f"optimizer_{name}.safetensors"
        tensors = read_weights(file)
        try:
            optimizer_states[name] = unflatten_optimizer_state(tensors, meta)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise CheckpointError(
                file, f"malformed optimiser state ({type(exc).__name__}: {exc})"
            ) from None
    return Checkpoint(
        path=path,
        progress=progress,
        settings=settings,
        weights={name: read_weights(path / name) for name in models},
        optimizer_states=optimizer_states,
        scaler_states=scalers,
        rng=read_weights(path / "rng.safetensors"),
    )


def _read_state(file: Path) -> dict[str, Any]:
    """``state.json`` as a dict; a :class:`CheckpointError` naming it if it cannot be."""
    try:
        state = json.loads(file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CheckpointError(file, "missing: the checkpoint folder is incomplete") from None
    except OSError as exc:
        raise CheckpointError(file, f"cannot be read ({exc.strerror or exc})") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(file, f"not valid JSON ({exc})") from None
    if not isinstance(state, dict):
        raise CheckpointError(file, "malformed checkpoint state (not a JSON object)")
    return state


def latest_checkpoint(out: Path) -> Checkpoint | None:
    """The newest checkpoint under ``out`` that loads; ``None`` if there is none.

    Newer checkpoints that do not load are skipped, each with a warning naming its damaged
    file (the run goes on from the one before, and its next save replaces them).

    Raises:
        CheckpointError: checkpoints exist but none loads. Starting over would delete them
            and the run's other outputs, so this is refused in one line naming the newest
            checkpoint's damaged file and how to start over (``--resume false``).
        ConfigError: a checkpoint of an older format (see :func:`load_checkpoint`).
    """
    dirs = checkpoint_dirs(out)
    skipped: list[tuple[Path, CheckpointError]] = []
    for path in reversed(dirs):
        try:
            checkpoint = load_checkpoint(path)
        except CheckpointError as exc:
            skipped.append((path, exc))
            continue
        except ConfigError:
            raise
        except Exception as exc:  # anything else unreadable: named by its folder
            skipped.append((path, CheckpointError(path, f"does not load ({exc})")))
            continue
        for broken, exc in skipped:
            log.warning("skipping checkpoint %s: it does not load (%s)", broken, exc)
        return checkpoint
    if not skipped:
        return None
    newest = skipped[0][1]
    what = "the only checkpoint" if len(dirs) == 1 else f"none of the {len(dirs)} checkpoints"
    raise CheckpointError(
        newest.file,
        f"{newest.problem}; {what} in {out / 'checkpoints'} loads, so the run cannot resume: "
        f"{START_OVER} (a fresh run deletes them)",
    )


def _rng_tensors(generators: Mapping[str, torch.Generator]) -> dict[str, Tensor]:
    tensors = {"torch_cpu": torch.get_rng_state()}
    tensors.update({name: g.get_state() for name, g in generators.items()})
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
