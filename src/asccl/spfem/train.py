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
loss term, ``asccl`` next to them), ``curves.png``, ``samples/step_<N>.png`` (labelled
sheets: the step; rows: one frame pair per emotion; columns: source | translated to each
emotion | target),
``checkpoints/step_<N>/`` and the final ``generator.safetensors`` (read it back with
:func:`~asccl.spfem.generators.checkpoint.load_generator`).

The plumbing is :class:`~asccl.training.loop.TrainingRun`'s: the run resumes from the
newest checkpoint in ``out`` (``resume = true``) and a run killed at any point and started
again ends with the same weights as an uninterrupted one (bit for bit on the CPU with a
fixed seed); a resume whose settings differ in anything that moves the data order or the
maths (:meth:`SPFEMTrainConfig.run_settings`), or from a checkpoint past ``steps``, is
refused with one line naming the keys; ``resume = false`` starts over, removing the earlier
run's checkpoints, samples and final generator. The random draws of the generators use the
global RNG (saved in checkpoints); the data order uses its own seeded generators; ASCCL's
region draw uses its own generator (seed + 1), so turning it on does not shift the others.

Under torchrun every process computes its share of the batch and gradients are averaged
by an all-reduce after each backward (no ``DistributedDataParallel`` wrapper: the losses
are methods of the model, and the WGAN gradient penalty needs a double backward); every
process shares the seed, so the random draws agree and resuming is exact.

A loss that is not finite (NaN or infinite, discriminator or generator side, on any
process) stops the run before its generator update with one line naming the step and every
loss term's value; nothing of that step is written, so the newest checkpoint stays the
last good state (one host sync per step).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from asccl.config import ConfigError
from asccl.io import atomic_write, load_state_dict_strict
from asccl.spfem.config import SPFEMTrainConfig
from asccl.spfem.data import SPFEMFrames
from asccl.spfem.generators import ReferenceGenerator, build_generator
from asccl.spfem.generators.checkpoint import MODEL_FILE, save_generator
from asccl.training import loop
from asccl.training.amp import AMP
from asccl.training.dataset import data_run_settings
from asccl.training.distributed import average_gradients, broadcast_module
from asccl.training.loop import TrainingRun

log = logging.getLogger(__name__)

SAMPLES_DIR = "samples"
#: the curves: discriminator terms, generator terms with ``asccl``, totals
PANELS: dict[str, Callable[[str], bool]] = {
    "discriminator terms": lambda c: c.startswith("d_") and c != "d_total",
    "generator terms": lambda c: (c.startswith("g_") and c != "g_total") or c == "asccl",
    "totals": lambda c: c in ("d_total", "g_total", "total"),
}


def train_spfem(config: SPFEMTrainConfig) -> Path:
    """Run (or resume) a training run; returns the final ``generator.safetensors``."""
    run = TrainingRun(config, config.run_settings(), desc=f"training {config.model}",
                      outputs=[f"{SAMPLES_DIR}/step_*.png"])  # fmt: skip
    device, world = run.device, run.world
    local_batch = run.local_batch(config.batch_size)

    # ---- data: DTW frame pairs (neutral source, aligned emotional target)
    dataset = SPFEMFrames(
        config.data,
        image_size=config.image_size,
        speakers=list(config.speakers) if config.speakers is not None else None,
        exclude_speakers=config.exclude_speakers,
        emotions=list(config.emotions) if config.emotions is not None else None,
        crop_format=config.crop_format,
    )
    run.settings.update(data_run_settings(dataset))  # compared in run.begin()
    if run.main:
        log.info("training pairs: %s", dataset.describe())

    # ---- model, optimisers, AMP
    model = build_generator(config.model, config.model_config()).to(device)
    saved = run.saved_weights(MODEL_FILE)
    if saved is not None:
        load_state_dict_strict(model, saved, run.checkpoint.path / MODEL_FILE)
    g_params, d_params = list(model.generator_parameters()), list(model.discriminator_parameters())
    g_opt = torch.optim.Adam(g_params, lr=config.g_lr, betas=config.betas)
    d_opt = torch.optim.Adam(d_params, lr=config.d_lr, betas=config.betas)
    amp = AMP(config.amp, device, warn=run.main)
    g_scaler, d_scaler = amp.grad_scaler(), amp.grad_scaler()

    # ---- ASCCL: built only when it has a weight (weight 0 is exactly the baseline); before
    # the RNG states are restored, as building it draws from the global RNG
    asccl = None
    if config.asccl_weight > 0:
        from asccl.spfem.supervision import ASCCLSupervision

        asccl = ASCCLSupervision(
            config.asccl_checkpoint, adapter=model.adapter, weight=config.asccl_weight,
            warmup_steps=config.asccl_warmup, every_n_steps=config.asccl_every,
        ).to(device)  # fmt: skip
    asccl_generator = torch.Generator().manual_seed(config.seed + 1)  # ASCCL's region draws
    run.track(models={MODEL_FILE: lambda path: save_generator(model, path)},
              optimizers={"g": g_opt, "d": d_opt}, scalers={"g": g_scaler, "d": d_scaler},
              generators={"asccl": asccl_generator})  # fmt: skip
    broadcast_module(model, world)  # the same start on every process

    samples = _sample_batch(dataset, config.sample_rows) if run.main else None

    def write_samples() -> None:
        if run.main:
            batch = {k: v.to(device) for k, v in samples.items()}
            path = config.out / SAMPLES_DIR / f"step_{run.step:08d}.png"
            model.eval()
            with amp.autocast():
                write_sample_grid(model, batch, path)
            model.train()

    # ---- the loop
    batches = run.batches(dataset, local_batch)
    run.begin(config.steps)
    model.train()
    if run.step == 0:
        write_samples()
    while not run.done:
        # 1. discriminator: n_critic updates, each on a fresh batch
        d_totals = []
        for _ in range(config.n_critic):
            batch = {k: v.to(device, non_blocking=True) for k, v in next(batches).items()}
            d_opt.zero_grad(set_to_none=True)
            with amp.autocast():
                d_terms = model.discriminator_losses(batch)
            d_total = sum(d_terms.values())
            d_totals.append(d_total.detach().float())
            d_scaler.scale(d_total).backward()
            average_gradients(d_params, world)
            d_scaler.step(d_opt)
            d_scaler.update()

        # 2. generator: its own terms + the ASCCL term, on the last batch
        for p in d_params:  # D gets no gradient from G's losses
            p.requires_grad_(False)
        g_opt.zero_grad(set_to_none=True)
        with amp.autocast():
            g_terms, outputs = model.generator_losses(batch)
            g_total = sum(g_terms.values())
            total = g_total
            asccl_logs: dict[str, Any] = {}
            if asccl is not None:
                extra, asccl_logs = asccl(batch, outputs, run.step, generator=asccl_generator)
                total = g_total + extra
        _stop_unless_finite(d_totals, total, {**d_terms, **g_terms, **asccl_logs}, run.step + 1,
                            config.out, world)  # fmt: skip
        g_scaler.scale(total).backward()
        for p in d_params:
            p.requires_grad_(True)
        average_gradients(g_params, world)
        g_scaler.step(g_opt)
        g_scaler.update()
        run.step_done()

        # 3. logs, samples, checkpoints
        if run.main and (run.done or run.due(config.log_every)):
            raw = asccl_logs.get("asccl")
            row = {
                **{k: v.item() for k, v in d_terms.items()}, "d_total": d_total.item(),
                **{k: v.item() for k, v in g_terms.items()},
                "asccl": raw.item() if raw is not None else None,
                "asccl_weight": float(asccl_logs.get("asccl_weight", 0.0)),
                "g_total": g_total.item(), "total": total.item(),
                "s_per_step": run.seconds_per_step(),
            }  # fmt: skip
            run.log(row)
            run.bar.set_postfix(d=f"{row['d_total']:.3f}", g=f"{row['g_total']:.3f}")
        if run.done or run.due(config.sample_every):
            write_samples()
        if run.done or run.due(config.checkpoint_every):
            run.save_checkpoint()
    return run.finish(PANELS)


def _stop_unless_finite(
    d_totals: list[Tensor], total: Tensor, terms: dict[str, Any], step: int, out: Path, world: int
) -> None:
    """Raise one line naming ``step`` and ``terms``' values if a discriminator total (one per
    critic update) or the generator's ``total`` is not finite on any process."""
    bad = (~torch.isfinite(torch.stack([*d_totals, total.detach().float()]))).any().float()
    if world > 1:  # every process stops together (else the others wait in an all-reduce)
        torch.distributed.all_reduce(bad)
    if not bad.item():
        return
    numbers = {k: v.detach() if isinstance(v, Tensor) else v for k, v in terms.items()}
    values = ", ".join(f"{k}={float(v):.4g}" for k, v in numbers.items())
    # a ConfigError: the CLI prints it as one line, and the remedy is a setting
    raise ConfigError(
        f"spfem train: step {step}: a loss is not finite ({values}); the run stops before this "
        f"step's generator update, the newest checkpoint in {out / 'checkpoints'} stays (try "
        'lower g_lr/d_lr, smaller loss weights or amp = "off")'
    )


def check_resumable(config: SPFEMTrainConfig) -> None:
    """Raise the :class:`~asccl.config.ConfigError` :func:`train_spfem` would raise on
    resuming ``config`` (other settings, or a checkpoint past ``steps``), without training;
    nothing to resume (or ``resume = false``) is fine."""
    loop.check_resumable(config, config.run_settings(), config.steps)


# ----------------------------------------------------------------------------- samples


def _sample_batch(dataset: SPFEMFrames, rows: int) -> dict[str, Tensor]:
    """One item per target emotion (the first of each), up to ``rows``, as a batch."""
    items = [dataset[i] for i in dataset.first_item_per_emotion()[:rows]]
    return {k: torch.stack([item[k] for item in items]) for k in items[0]}


@torch.no_grad()
def write_sample_grid(
    model: ReferenceGenerator,
    batch: dict[str, Tensor],
    path: Path,
    *,
    tile: int = 96,
    header: int = 44,
    margin: int = 88,
) -> Path:
    """A labelled PNG sample sheet: a row per frame pair; columns: the source | the source
    turned to each row's target emotion (row ``j``'s target frame and landmarks as the
    reference) | the real target frame. The top band names the step (from ``path``'s
    ``step_<N>`` name) and each column (``output: <emotion>``), the left band each row
    (``pair i``, its target emotion); so the diagonal of the outputs is each pair's own
    translation. Images are scaled by a whole factor to at least ``tile`` pixels (nearest:
    the generator's pixels stay visible); the sheet is ``header + n * T`` by
    ``margin + (n + 2) * T`` pixels, ``T = S * ceil(tile / S)`` for ``S``-pixel frames."""
    import math

    import numpy as np

    from asccl.data.opencv import cv2
    from asccl.spfem.data import EMOTIONS

    n, _, size, _ = batch["source"].shape
    columns = [batch["source"]]
    for j in range(n):
        column = dict(batch)
        for key in ("target", "reference", "target_landmarks", "target_emotion"):
            column[key] = batch[key][j : j + 1].expand_as(batch[key])
        columns.append(model.translate(column).float())
    columns.append(batch["target"])
    grid = torch.cat([torch.cat(list(c), dim=1) for c in columns], dim=2)  # (3, n*S, C*S)
    image = ((grid.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(1, 2, 0)
    scale = math.ceil(tile / size)
    cells = cv2.resize(
        np.ascontiguousarray(image.cpu().numpy()),
        None,
        fx=scale,
        fy=scale,
        interpolation=cv2.INTER_NEAREST,
    )
    side = size * scale
    sheet = np.full((header + cells.shape[0], margin + cells.shape[1], 3), 255, np.uint8)
    sheet[header:, margin:] = cells
    names = [EMOTIONS[int(e)] for e in batch["target_emotion"].flatten().tolist()]
    font, black = cv2.FONT_HERSHEY_SIMPLEX, (0, 0, 0)

    def text(label: str, x: int, y: int, width: int) -> None:  # shrunk to fit ``width``
        scale_ = 0.42
        while scale_ > 0.25 and cv2.getTextSize(label, font, scale_, 1)[0][0] > width - 4:
            scale_ -= 0.02
        cv2.putText(sheet, label, (x + 2, y), font, scale_, black, 1, cv2.LINE_AA)

    stem = Path(path).stem
    step = stem.removeprefix("step_").lstrip("0") or "0"
    title = f"step {step}" if stem.startswith("step_") else stem
    text(title, 2, 16, margin + side)
    headings = ["source"] + [f"output: {name}" for name in names] + ["target (real)"]
    for c, label in enumerate(headings):
        text(label, margin + c * side, header - 8, side)
    for r, name in enumerate(names):
        top = header + r * side
        text(f"pair {r + 1}", 0, top + side // 2 - 4, margin)
        text(f"to {name}", 0, top + side // 2 + 14, margin)
    ok, png = cv2.imencode(".png", cv2.cvtColor(sheet, cv2.COLOR_RGB2BGR))
    if not ok:
        raise RuntimeError(f"could not encode the sample grid for {path}")
    with atomic_write(path) as tmp:
        tmp.write_bytes(png.tobytes())
    return path


__all__ = ["SPFEMTrainConfig", "check_resumable", "train_spfem", "write_sample_grid"]
