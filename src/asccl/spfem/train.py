"""Train a reference SPFEM generator (GANmut- or ICface-style), with or without ASCCL.

One process (CPU or one GPU)::

    asccl spfem train --model ganmut --config configs/spfem/ganmut_demo.toml
    asccl spfem train --model ganmut --config configs/spfem/ganmut.toml \\
        --asccl-weight 1 --asccl-checkpoint runs/metric/metric.safetensors

Several GPUs (torchrun; ``batch_size`` is the global batch)::

    torchrun --nproc_per_node 4 -m asccl spfem train --model ganmut --config ...

Each step: ``n_critic`` discriminator updates (each on its own batch), then one generator
update on the last batch with ``total = sum(generator terms) + asccl``. ``asccl`` is
:class:`~asccl.spfem.supervision.ASCCLSupervision` (adapter ``model.adapter``) with
``asccl_weight``, ``asccl_warmup`` and ``asccl_every``; with ``asccl_weight = 0`` the metric
is never loaded nor run and the run is exactly the baseline (same weights, bit for bit).

Outputs under ``out``: ``config.json``, ``log.csv`` (one row per ``log_every`` steps: every
loss term, ``asccl`` next to them), ``curves.png``, ``samples/step_<N>.png`` (rows: one
frame pair per emotion; columns: source | translated to each emotion | target),
``checkpoints/step_<N>/`` and the final ``generator.safetensors`` (read it back with
:func:`load_generator`).

The run resumes from the newest checkpoint in ``out`` (``resume = true``): a run killed at
any point and started again ends with the same weights as an uninterrupted one (bit for bit
on the CPU with a fixed seed). Each checkpoint holds the settings that made it
(:func:`run_settings`); a resume whose settings differ in anything that moves the data order
or the maths (batch size, learning rates, model, seed, data, the ASCCL weight and metric...)
is refused with one line naming the keys, as is one from a checkpoint past ``steps``; only
:data:`RESUMABLE_CHANGES` (more steps, workers, logging, device, threads...) may differ.
``resume = false`` starts over: the earlier run's checkpoints, samples and final generator
in ``out`` are removed first. The random draws of the generators use the global RNG (saved
in checkpoints); the data order uses its own seeded generators; ASCCL's region draw uses
its own generator (seed + 1), so turning it on does not shift the others.

Under torchrun every process computes its share of the batch and gradients are averaged
by an all-reduce after each backward (no ``DistributedDataParallel`` wrapper: the losses
are methods of the model, and the WGAN gradient penalty needs a double backward); every
process shares the seed, so the random draws agree and resuming is exact.
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import json
import logging
import math
import os
import re
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torch.distributed as dist
from torch import Tensor
from torch.utils.data import DataLoader
from tqdm import tqdm

from asccl.config import ConfigError, save_config
from asccl.spfem.data import SPFEMFrames
from asccl.spfem.generators import GENERATORS, ReferenceGenerator, build_generator
from asccl.spfem.generators.ganmut import GANmutConfig
from asccl.spfem.generators.icface import ICfaceConfig
from asccl.training.checkpoints import (
    checkpoint_dirs,
    checkpoint_folder,
    flatten_optimizer_state,
    unflatten_optimizer_state,
)
from asccl.training.distributed import setup_distributed
from asccl.training.train_metric import EpochSampler

log = logging.getLogger(__name__)

MODEL_FILE = "generator.safetensors"
SAMPLES_DIR = "samples"
#: what ``device`` may be: "auto", "cpu", "mps", "cuda" or "cuda:N"
DEVICE = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")


def _is_int(value: object, low: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= low


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


@dataclass(frozen=True)
class SPFEMTrainConfig:
    """Settings of ``asccl spfem train`` (see ``configs/spfem/*.toml``).

    The model's own settings are the table named after it (``[ganmut]`` or ``[icface]``);
    ``image_size`` here overrides theirs.
    """

    model: Literal["ganmut", "icface"] = "ganmut"
    data: Path = Path("runs/demo/data")  #: stage-1 output (pairs.csv + crops/)
    out: Path = Path("runs/spfem/ganmut")  #: checkpoints, samples, log, final generator
    steps: int = 1000  #: generator updates
    batch_size: int = 16  #: frame pairs per update, over all processes
    g_lr: float = 1e-4  #: generator Adam learning rate [GANmut 1e-4]
    d_lr: float = 1e-4  #: discriminator Adam learning rate [GANmut 1e-4]
    betas: tuple[float, float] = (0.5, 0.999)  #: Adam betas [GANmut 0.5, 0.999]
    n_critic: int = 1  #: discriminator updates per generator update [GANmut 5]
    image_size: int = 64  #: frames are resized to this side
    seed: int = 0
    amp: Literal["off", "bf16", "fp16"] = "off"  #: autocast (fp16: CUDA + GradScaler)
    asccl_checkpoint: Path | None = None  #: the frozen ASCCL metric (.safetensors)
    asccl_weight: float = 0.0  #: 0: baseline, the metric is never built
    asccl_warmup: int = 0  #: steps of the linear ramp of the ASCCL weight
    asccl_every: int = 1  #: compute the ASCCL term every n steps
    sample_every: int = 100  #: steps between sample grids (0: only at the end)
    sample_rows: int = 7  #: frame pairs (one per emotion, up to this many) in a grid
    checkpoint_every: int = 100  #: steps between checkpoints (and at the end)
    keep_checkpoints: int = 2  #: newest checkpoints kept on disk
    log_every: int = 10  #: steps between log rows
    workers: int = 2  #: DataLoader workers per process
    speakers: tuple[str, ...] | None = None  #: train on these speakers only (None: all)
    exclude_speakers: tuple[str, ...] = ()  #: held out (test speakers)
    emotions: tuple[str, ...] | None = None  #: target emotions to train on (None: all)
    crop_format: Literal["jpeg", "npy"] = "jpeg"
    device: str = "auto"  #: "auto" (cuda if available), "cpu", "cuda", "cuda:1"
    #: CPU threads for torch (0: torch's default); 1 is fastest on a busy shared machine
    threads: int = 0
    resume: bool = True  #: continue from the newest checkpoint in ``out``
    ganmut: GANmutConfig = field(default_factory=GANmutConfig)
    icface: ICfaceConfig = field(default_factory=ICfaceConfig)

    def __post_init__(self) -> None:
        """One :class:`ConfigError` per nonsense value, naming its key."""
        # a single name given on the command line arrives as a string
        for name in ("speakers", "exclude_speakers", "emotions"):
            value = getattr(self, name)
            if isinstance(value, str):
                object.__setattr__(self, name, (value,))
            elif isinstance(value, list):
                object.__setattr__(self, name, tuple(value))
        check = self._require
        check(self.model in GENERATORS, "model", f"must be one of {sorted(GENERATORS)}")
        for name in ("data", "out"):
            check(isinstance(getattr(self, name), Path), name, "must be a path")
        check(self.asccl_checkpoint is None or isinstance(self.asccl_checkpoint, Path),
              "asccl_checkpoint", "must be a path")  # fmt: skip
        for name in ("steps", "batch_size", "n_critic", "asccl_every", "sample_rows"):
            check(_is_int(getattr(self, name), 1), name, "must be an integer >= 1")
        for name in ("asccl_warmup", "sample_every", "checkpoint_every", "keep_checkpoints",
                     "log_every", "workers", "threads"):  # fmt: skip
            check(_is_int(getattr(self, name), 0), name, "must be an integer >= 0")
        check(_is_int(self.seed, 0) and self.seed < 2**63 - 2, "seed", "must be in [0, 2**63 - 2)")
        check(_is_int(self.image_size, 16) and self.image_size <= 1024, "image_size",
              "must be an integer in [16, 1024]")  # fmt: skip
        for name in ("g_lr", "d_lr"):
            check(_is_number(getattr(self, name)) and getattr(self, name) > 0, name,
                  "must be a finite number > 0")  # fmt: skip
        check(isinstance(self.betas, tuple) and len(self.betas) == 2
              and all(_is_number(b) and 0 <= b < 1 for b in self.betas), "betas",
              "must be two numbers in [0, 1), e.g. [0.5, 0.999]")  # fmt: skip
        check(_is_number(self.asccl_weight) and self.asccl_weight >= 0, "asccl_weight",
              "must be a finite number >= 0")  # fmt: skip
        check(isinstance(self.device, str) and bool(DEVICE.match(self.device)), "device",
              'must be "auto", "cpu", "mps", "cuda" or "cuda:N"')  # fmt: skip
        for name in ("speakers", "exclude_speakers", "emotions"):
            value = getattr(self, name)
            check(value is None or all(isinstance(v, str) and v for v in value), name,
                  'must be a list of names, e.g. ["W021"]')  # fmt: skip
        if self.asccl_weight > 0 and self.asccl_checkpoint is None:
            raise ConfigError(
                f"asccl_weight = {self.asccl_weight} needs asccl_checkpoint (a metric "
                ".safetensors from `asccl train-metric`)"
            )
        try:  # the model's own checks (e.g. image_size a multiple of 2**downsamples)
            self.model_config()
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"{self.model}: {exc}") from None

    def _require(self, ok: bool, key: str, problem: str) -> None:
        if not ok:
            raise ConfigError(f"{key} {problem}, got {getattr(self, key)!r}")

    def model_config(self) -> Any:
        """The chosen model's config with this run's ``image_size``."""
        return dataclasses.replace(getattr(self, self.model), image_size=self.image_size)


#: settings a resumed run may change: they move neither the data order nor the maths
RESUMABLE_CHANGES = frozenset({
    "out", "steps", "sample_every", "sample_rows", "checkpoint_every", "keep_checkpoints",
    "log_every", "workers", "device", "threads", "resume",
})  # fmt: skip


def file_digest(path: str | os.PathLike) -> str:
    """The first 16 hex digits of a file's SHA-256; ``"missing"`` if it cannot be read."""
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    except OSError:
        return "missing"
    return digest.hexdigest()[:16]


def weights_digest(path: str | os.PathLike) -> str:
    """The first 16 hex digits of a SHA-256 over a safetensors file's header metadata and
    tensors (not its bytes: the header's order is not fixed, so a file written again with
    the same weights keeps its digest); other files: :func:`file_digest`."""
    from safetensors import safe_open

    digest = hashlib.sha256()
    try:
        with safe_open(str(path), framework="pt") as handle:
            digest.update(json.dumps(handle.metadata(), sort_keys=True).encode())
            for key in sorted(handle.keys()):
                tensor = handle.get_tensor(key)
                digest.update(f"{key} {tensor.dtype} {tuple(tensor.shape)}".encode())
                digest.update(tensor.contiguous().view(torch.uint8).numpy().tobytes())
    except Exception:  # not a safetensors file (e.g. the authors' .pth): its bytes
        return file_digest(path)
    return digest.hexdigest()[:16]


def run_settings(config: SPFEMTrainConfig) -> dict[str, str]:
    """What a run's weights depend on, as ``{dotted key: JSON text}``: every setting but
    :data:`RESUMABLE_CHANGES`; the chosen model's table only; the data folder and a digest
    of its ``pairs.csv``; the ASCCL settings only when its weight is > 0, with the metric
    file by :func:`weights_digest`. Saved in each checkpoint; a resume must match it."""
    values = dataclasses.asdict(config)
    for key in (*RESUMABLE_CHANGES, "ganmut", "icface"):
        values.pop(key)
    values[config.model] = dataclasses.asdict(config.model_config())
    values["data"] = str(Path(config.data).resolve())
    values["data_pairs_csv"] = file_digest(Path(config.data) / "pairs.csv")
    if config.asccl_weight > 0:
        values["asccl_checkpoint"] = weights_digest(config.asccl_checkpoint)
    else:  # the metric is never built: none of its settings matter
        for key in ("asccl_checkpoint", "asccl_warmup", "asccl_every"):
            values.pop(key)
    flat: dict[str, str] = {}

    def add(prefix: str, value: Any) -> None:
        if isinstance(value, dict):
            for key, item in value.items():
                add(f"{prefix}{key}.", item)
        else:
            flat[prefix[:-1]] = json.dumps(value, default=str)

    add("", values)
    return flat


def settings_differences(saved: dict[str, str], now: dict[str, str]) -> list[str]:
    """``["key old -> new", ...]`` for every key whose value differs (``unset`` if absent)."""
    return [
        f"{key} {saved.get(key, 'unset')} -> {now.get(key, 'unset')}"
        for key in sorted(set(saved) | set(now))
        if saved.get(key) != now.get(key)
    ]


# ----------------------------------------------------------------------------- saving


def save_generator(model: ReferenceGenerator, path: Path) -> Path:
    """Write ``model``'s weights (generator and discriminator) with its name and config in
    the safetensors header, atomically."""
    from safetensors.torch import save_file

    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    metadata = {
        "model": model.name,
        "config": json.dumps(dataclasses.asdict(model.config)),
        "format": "asccl-spfem-generator-1",
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    save_file(tensors, str(tmp), metadata=metadata)
    os.replace(tmp, path)
    return path


def load_generator(path: str | os.PathLike) -> ReferenceGenerator:
    """A trained generator, in eval mode on the CPU, from a ``generator.safetensors`` file, a
    checkpoint folder ``checkpoints/step_<N>/`` or a run folder (its final file, else its
    newest checkpoint).

    Raises:
        FileNotFoundError: nothing loadable at ``path``.
        ValueError: the file is not an SPFEM generator, or its weights do not fit its config.
    """
    from safetensors import safe_open
    from safetensors.torch import load_file

    path = Path(path)
    if path.is_dir():
        candidates = [path / MODEL_FILE, *(d / MODEL_FILE for d in checkpoint_dirs(path)[::-1])]
        found = next((c for c in candidates if c.is_file()), None)
        if found is None:
            raise FileNotFoundError(f"{path}: no {MODEL_FILE} here nor in checkpoints/step_*")
        path = found
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such generator file")
    with safe_open(str(path), "pt") as handle:
        metadata = handle.metadata() or {}
    if metadata.get("format") != "asccl-spfem-generator-1":
        raise ValueError(f"{path}: not an asccl SPFEM generator (no format in its header)")
    model = build_generator(metadata["model"], json.loads(metadata["config"]))
    try:
        model.load_state_dict(load_file(str(path)))
    except RuntimeError as exc:
        raise ValueError(f"{path}: weights do not fit the saved config ({exc})") from exc
    return model.eval()


@dataclass
class _Progress:
    step: int = 0  #: generator updates done
    epoch: int = 0
    batch_in_epoch: int = 0  #: loader batches consumed in this epoch


def _save_checkpoint(out: Path, model: ReferenceGenerator, optimizers: dict, scalers: dict,
                     rngs: dict[str, torch.Generator], progress: _Progress,
                     keep: int, settings: dict[str, str]) -> Path:  # fmt: skip
    """``out/checkpoints/step_<N>/``: model, both optimisers, RNG states, progress and the
    run's :func:`run_settings`; written to a temporary folder and renamed into place (a kill
    leaves it whole or absent)."""
    from safetensors.torch import save_file

    with checkpoint_folder(out, progress.step, keep) as folder:
        save_generator(model, folder / MODEL_FILE)
        meta: dict[str, Any] = {"progress": dataclasses.asdict(progress), "optimizers": {},
                                "scalers": {}, "settings": settings}  # fmt: skip
        for name, optimizer in optimizers.items():
            tensors, meta["optimizers"][name] = flatten_optimizer_state(optimizer.state_dict())
            save_file(tensors, str(folder / f"optimizer_{name}.safetensors"))
        for name, scaler in scalers.items():
            meta["scalers"][name] = scaler.state_dict() if scaler.is_enabled() else None
        rng = {"torch_cpu": torch.get_rng_state(), **{k: g.get_state() for k, g in rngs.items()}}
        if torch.cuda.is_available():
            for i, state in enumerate(torch.cuda.get_rng_state_all()):
                rng[f"torch_cuda_{i}"] = state
        save_file(rng, str(folder / "rng.safetensors"))
        (folder / "state.json").write_text(json.dumps(meta, indent=1))
    return out / "checkpoints" / f"step_{progress.step:08d}"


def _load_latest(out: Path) -> tuple[Path, dict, dict[str, Tensor], dict] | None:
    """``(folder, model state, rng tensors, meta)`` of the newest loadable checkpoint."""
    from safetensors.torch import load_file

    for folder in reversed(checkpoint_dirs(out)):
        try:
            meta = json.loads((folder / "state.json").read_text())
            state = load_file(str(folder / MODEL_FILE))
            rng = load_file(str(folder / "rng.safetensors"))
            meta["optimizer_states"] = {
                name: unflatten_optimizer_state(
                    load_file(str(folder / f"optimizer_{name}.safetensors")), opt_meta
                )
                for name, opt_meta in meta["optimizers"].items()
            }
            return folder, state, rng, meta
        except Exception as exc:  # partial copy, corrupt file: try the previous one
            log.warning("skipping checkpoint %s: it does not load (%s)", folder, exc)
    return None


# ----------------------------------------------------------------------------- logging


class _LossLog:
    """``<out>/log.csv``: a header fixed by the first row; on resume, rows past the resumed
    step are dropped first (they belong to the killed run)."""

    def __init__(self, out: Path, resumed_step: int | None) -> None:
        self.path = out / "log.csv"
        out.mkdir(parents=True, exist_ok=True)
        self.rows: list[dict[str, str]] = []
        self.columns: list[str] | None = None
        if self.path.exists() and resumed_step is not None:
            with self.path.open(newline="") as handle:
                reader = csv.DictReader(handle)
                self.columns = list(reader.fieldnames or []) or None
                self.rows = [r for r in reader if int(r["step"]) <= resumed_step]
        self._rewrite()

    def _rewrite(self) -> None:
        tmp = self.path.with_name(f".{self.path.name}.tmp")
        with tmp.open("w", newline="") as handle:
            if self.columns:
                writer = csv.DictWriter(handle, fieldnames=self.columns)
                writer.writeheader()
                writer.writerows(self.rows)
        os.replace(tmp, self.path)

    def write(self, row: dict[str, Any]) -> None:
        row = {k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items()}
        if self.columns is None or set(row) - set(self.columns):
            self.columns = list(dict.fromkeys([*(self.columns or []), *row]))
            self.rows.append(row)
            self._rewrite()
            return
        self.rows.append(row)
        with self.path.open("a", newline="") as handle:
            csv.DictWriter(handle, fieldnames=self.columns).writerow(row)


def plot_spfem_curves(log_path: Path, png_path: Path) -> Path:
    """Discriminator terms, generator terms (with ``asccl``) and totals per step."""
    from asccl.figures import pyplot, save_figure

    with log_path.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    plt = pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(14, 3.8))
    steps = [int(r["step"]) for r in rows]
    groups = {
        "discriminator terms": [c for c in rows[0] if c.startswith("d_")] if rows else [],
        "generator terms": [c for c in rows[0] if c.startswith("g_") or c == "asccl"]
        if rows else [],
        "totals": ["d_total", "g_total", "total"],
    }  # fmt: skip
    for ax, (title, columns) in zip(axes, groups.items(), strict=True):
        for column in columns:
            if column in ("d_total", "g_total") and title != "totals":
                continue
            values = [float(r[column]) if r.get(column) not in ("", None) else np.nan
                      for r in rows]  # fmt: skip
            if not np.all(np.isnan(values)):
                ax.plot(steps, values, label=column)
        ax.set_title(title)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    return save_figure(fig, png_path, dpi=110)


# ----------------------------------------------------------------------------- samples


def _sample_batch(dataset: SPFEMFrames, rows: int) -> dict[str, Tensor]:
    """One item per target emotion (the first of each), up to ``rows``, as a batch."""
    items = [dataset[i] for i in dataset.first_item_per_emotion()[:rows]]
    return {k: torch.stack([item[k] for item in items]) for k in items[0]}


@torch.no_grad()
def write_sample_grid(model: ReferenceGenerator, batch: dict[str, Tensor], path: Path) -> Path:
    """PNG grid: a row per frame pair; columns: source | the source turned to each row's
    emotion (row ``j``'s target frame and landmarks as the reference) | target."""
    import cv2

    n = batch["source"].shape[0]
    columns = [batch["source"]]
    for j in range(n):
        column = dict(batch)
        for key in ("target", "reference", "target_landmarks", "target_emotion"):
            column[key] = batch[key][j : j + 1].expand_as(batch[key])
        columns.append(model.translate(column).float())
    columns.append(batch["target"])
    grid = torch.cat([torch.cat(list(c), dim=1) for c in columns], dim=2)  # (3, n*S, C*S)
    image = ((grid.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(1, 2, 0)
    ok, png = cv2.imencode(".png", cv2.cvtColor(image.cpu().numpy(), cv2.COLOR_RGB2BGR))
    if not ok:
        raise RuntimeError(f"could not encode the sample grid for {path}")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(png.tobytes())
    os.replace(tmp, path)
    return path


# ----------------------------------------------------------------------------- the loop


def _average_gradients(parameters: list[torch.nn.Parameter], world: int) -> None:
    """All-reduce (mean) the gradients of ``parameters`` over the processes."""
    if world == 1:
        return
    for p in parameters:
        if p.grad is not None:
            dist.all_reduce(p.grad)
            p.grad.div_(world)


def train_spfem(config: SPFEMTrainConfig) -> Path:
    """Run (or resume) a training run; returns the final ``generator.safetensors``."""
    rank, world, device = setup_distributed(config.device)
    main_process = rank == 0
    out = Path(config.out)
    if config.batch_size % world:
        raise ConfigError(f"batch_size {config.batch_size} must be divisible by the number "
                          f"of processes ({world})")  # fmt: skip
    local_batch = config.batch_size // world
    if config.threads > 0:
        torch.set_num_threads(config.threads)
    torch.manual_seed(config.seed)

    # ---- data: DTW frame pairs (neutral source, aligned emotional target)
    dataset = SPFEMFrames(
        config.data,
        image_size=config.image_size,
        speakers=list(config.speakers) if config.speakers is not None else None,
        exclude_speakers=config.exclude_speakers,
        emotions=list(config.emotions) if config.emotions is not None else None,
        crop_format=config.crop_format,
    )
    if main_process:
        log.info("training pairs: %s", dataset.describe())

    # ---- model, optimisers, AMP
    model = build_generator(config.model, config.model_config()).to(device)
    g_params, d_params = list(model.generator_parameters()), list(model.discriminator_parameters())
    g_opt = torch.optim.Adam(g_params, lr=config.g_lr, betas=config.betas)
    d_opt = torch.optim.Adam(d_params, lr=config.d_lr, betas=config.betas)
    if config.amp == "fp16" and device.type == "cpu" and main_process:
        log.warning("amp='fp16' on CPU is very slow (no fp16 kernels): use 'bf16'")
    amp_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(config.amp)
    fp16 = config.amp == "fp16" and device.type == "cuda"
    scalers = {"g": torch.amp.GradScaler(device.type, enabled=fp16),
               "d": torch.amp.GradScaler(device.type, enabled=fp16)}  # fmt: skip

    def autocast() -> AbstractContextManager:
        if amp_dtype is None:
            return nullcontext()
        return torch.autocast(device.type, dtype=amp_dtype)

    # ---- ASCCL: built only when it has a weight (weight 0 is exactly the baseline)
    asccl = None
    if config.asccl_weight > 0:
        from asccl.spfem.supervision import ASCCLSupervision

        asccl = ASCCLSupervision(
            config.asccl_checkpoint, adapter=model.adapter, weight=config.asccl_weight,
            warmup_steps=config.asccl_warmup, every_n_steps=config.asccl_every,
        ).to(device)  # fmt: skip
    rngs = {
        "asccl": torch.Generator().manual_seed(config.seed + 1),  # ASCCL's region draws
        "loader": torch.Generator().manual_seed(config.seed + 2),  # DataLoader worker seeds
    }

    # ---- resume: only a run made with the same settings (bar RESUMABLE_CHANGES)
    progress = _Progress()
    settings = run_settings(config)
    checkpoint = _load_latest(out) if config.resume else None
    if checkpoint is not None:
        folder, state, rng, meta = checkpoint
        _check_resume(config, folder, meta, settings)
        model.load_state_dict(state)
        g_opt.load_state_dict(meta["optimizer_states"]["g"])
        d_opt.load_state_dict(meta["optimizer_states"]["d"])
        for name, scaler in scalers.items():
            if meta["scalers"].get(name):
                scaler.load_state_dict(meta["scalers"][name])
        torch.set_rng_state(rng["torch_cpu"])
        for name, generator in rngs.items():
            generator.set_state(rng[name])
        cuda = [rng[k] for k in sorted(rng) if k.startswith("torch_cuda_")]
        if cuda and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(cuda)
        progress = _Progress(**meta["progress"])
        if main_process:
            log.info("resuming from %s (step %d)", folder, progress.step)
    if world > 1:  # same start on every process
        for tensor in model.state_dict().values():
            dist.broadcast(tensor, 0)

    if checkpoint is None and main_process:
        _clear_earlier_run(out)
    history = _LossLog(out, progress.step if checkpoint else None) if main_process else None
    if main_process:
        save_config(config, out / "config.json")
    samples = _sample_batch(dataset, config.sample_rows) if main_process else None

    def write_samples() -> None:
        if main_process:
            batch = {k: v.to(device) for k, v in samples.items()}
            model.eval()
            with autocast():
                write_sample_grid(model, batch, out / SAMPLES_DIR / f"step_{progress.step:08d}.png")
            model.train()

    def checkpoint_now() -> None:
        if main_process:
            _save_checkpoint(out, model, {"g": g_opt, "d": d_opt}, scalers, rngs, progress,
                             config.keep_checkpoints, settings)  # fmt: skip
        if world > 1:
            dist.barrier()

    # ---- batches: a seeded shuffle per epoch, resumable mid-epoch
    sampler = EpochSampler(len(dataset), config.seed, rank, world)
    batches_per_epoch = len(sampler) // local_batch
    if batches_per_epoch == 0:
        raise ConfigError(f"{len(dataset)} frame pairs are fewer than one batch per process")

    def batches() -> Iterator[dict[str, Tensor]]:
        while True:
            sampler.set_epoch(progress.epoch, start=progress.batch_in_epoch * local_batch)
            loader = DataLoader(dataset, batch_size=local_batch, sampler=sampler,
                                drop_last=True, num_workers=config.workers,
                                generator=rngs["loader"],
                                pin_memory=device.type == "cuda")  # fmt: skip
            for batch in loader:
                progress.batch_in_epoch += 1
                yield {k: v.to(device, non_blocking=True) for k, v in batch.items()}
            progress.epoch += 1
            progress.batch_in_epoch = 0

    data = batches()
    model.train()
    if progress.step == 0:
        write_samples()
    bar = tqdm(total=config.steps, initial=progress.step, desc=f"training {config.model}",
               unit="step", disable=not main_process)  # fmt: skip
    window_start, window_steps = time.perf_counter(), 0
    while progress.step < config.steps:
        # 1. discriminator: n_critic updates, each on a fresh batch
        for _ in range(config.n_critic):
            batch = next(data)
            d_opt.zero_grad(set_to_none=True)
            with autocast():
                d_terms = model.discriminator_losses(batch)
            d_total = sum(d_terms.values())
            scalers["d"].scale(d_total).backward()
            _average_gradients(d_params, world)
            scalers["d"].step(d_opt)
            scalers["d"].update()

        # 2. generator: its own terms + the ASCCL term, on the last batch
        for p in d_params:  # D gets no gradient from G's losses
            p.requires_grad_(False)
        g_opt.zero_grad(set_to_none=True)
        with autocast():
            g_terms, outputs = model.generator_losses(batch)
            g_total = sum(g_terms.values())
            total = g_total
            asccl_logs: dict[str, Any] = {}
            if asccl is not None:
                extra, asccl_logs = asccl(batch, outputs, progress.step, generator=rngs["asccl"])
                total = g_total + extra
        scalers["g"].scale(total).backward()
        for p in d_params:
            p.requires_grad_(True)
        _average_gradients(g_params, world)
        scalers["g"].step(g_opt)
        scalers["g"].update()
        progress.step += 1
        window_steps += 1
        bar.update()

        # 3. logs, samples, checkpoints
        done = progress.step >= config.steps
        if main_process and (done or _due(progress.step, config.log_every)):
            elapsed = time.perf_counter() - window_start
            raw = asccl_logs.get("asccl")
            row = {
                "step": progress.step, "epoch": progress.epoch,
                **{k: v.item() for k, v in d_terms.items()}, "d_total": d_total.item(),
                **{k: v.item() for k, v in g_terms.items()},
                "asccl": raw.item() if raw is not None else "",
                "asccl_weight": float(asccl_logs.get("asccl_weight", 0.0)),
                "g_total": g_total.item(), "total": total.item(),
                "s_per_step": elapsed / max(window_steps, 1),
            }  # fmt: skip
            history.write(row)
            bar.set_postfix(d=f"{row['d_total']:.3f}", g=f"{row['g_total']:.3f}")
            window_start, window_steps = time.perf_counter(), 0
        if done or _due(progress.step, config.sample_every):
            write_samples()
        if done or _due(progress.step, config.checkpoint_every):
            checkpoint_now()
    bar.close()

    final = out / MODEL_FILE
    if main_process:
        save_generator(model, final)
        if history.rows:
            plot_spfem_curves(history.path, out / "curves.png")
        log.info("generator written to %s; curves in %s", final, out / "curves.png")
    if world > 1:
        dist.barrier()
        dist.destroy_process_group()
    return final


def check_resumable(config: SPFEMTrainConfig) -> None:
    """Raise the :class:`ConfigError` :func:`train_spfem` would raise on resuming ``config``
    (settings that differ from its newest checkpoint's, or a checkpoint past ``steps``),
    without training; nothing to resume (or ``resume = false``) is fine."""
    checkpoint = _load_latest(Path(config.out)) if config.resume else None
    if checkpoint is not None:
        _check_resume(config, checkpoint[0], checkpoint[3], run_settings(config))


def _check_resume(
    config: SPFEMTrainConfig, folder: Path, meta: dict, settings: dict[str, str]
) -> None:
    force = "use --resume false to train from scratch, or another --out"
    if "settings" in meta:
        changed = settings_differences(meta["settings"], settings)
        if changed:
            raise ConfigError(f"{folder}: cannot resume, this run's settings differ: "
                              f"{'; '.join(changed)}; {force}")  # fmt: skip
    else:  # a checkpoint from before settings were saved: its model config at least
        saved = load_generator(folder / MODEL_FILE).config
        if saved != config.model_config():
            raise ConfigError(f"{folder}: cannot resume, its model config {saved} differs "
                              f"from this run's {config.model_config()}; {force}")  # fmt: skip
    if meta["progress"]["step"] > config.steps:
        raise ConfigError(f"{folder}: cannot resume, it is past this run's steps = "
                          f"{config.steps}; {force}")  # fmt: skip


def _clear_earlier_run(out: Path) -> None:
    """A run that starts from step 0 removes what an earlier run left in ``out`` (its
    checkpoints, final generator, sample grids, curves): none of it is this run's, and an
    old checkpoint past this run's steps would be resumed from, or outlive its own."""
    import shutil

    old = [*checkpoint_dirs(out), *sorted((out / SAMPLES_DIR).glob("step_*.png"))]
    old += [p for p in (out / MODEL_FILE, out / "curves.png") if p.is_file()]
    if not old:
        return
    log.info("starting from step 0: removing %d files and folders of an earlier run in %s",
             len(old), out)  # fmt: skip
    for path in old:
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink()


def _due(step: int, every: int) -> bool:
    """Whether ``step`` is a multiple of ``every`` (0: never)."""
    return every > 0 and step % every == 0


__all__ = [
    "RESUMABLE_CHANGES",
    "SPFEMTrainConfig",
    "check_resumable",
    "file_digest",
    "load_generator",
    "plot_spfem_curves",
    "run_settings",
    "save_generator",
    "settings_differences",
    "train_spfem",
    "weights_digest",
    "write_sample_grid",
]
