"""``asccl demo``: the pipeline as far as it exists, on the bundled demo data, in minutes.

1. Stage 1 on ``demo_data/MEAD``: index, DTW frame pairs, face crops (``asccl data
   prepare``), with an alignment plot and a contact sheet of crops.
2. Stage 2: a short metric training on those crops (``asccl train-metric`` with the
   ``train`` config, ``configs/metric/demo.toml`` in ``configs/demo.toml``), printing and
   plotting the validation health signal; then ``asccl metric evaluate`` on the trained
   metric (``health``, ``configs/metric/health_demo.toml``): cosine gap and DTW-partner
   retrieval on the held-out speaker, beside the untrained init and pixel L2.
3. The trained metric as a loss (``ASCCLLoss``): score a face against edited versions of
   itself, and optimise a degraded image with the loss alone to show that its gradients
   carry signal.
4. The experiment (``asccl experiment`` with the ``experiment`` config,
   ``configs/experiments/demo.toml`` in ``configs/demo.toml``): the
   GANmut-style and ICface-style reference generators, each trained as a baseline and with
   the trained metric as an extra loss (same seed, data and steps), their results for the
   held-out speaker, evaluated (``asccl evaluate``) with random-weight ArcFace and SyncNet
   saved in their published formats, and compared: the tables, plots and grids of the
   paper's layout. With random evaluation networks and a minute of CPU training per model,
   the numbers show the plumbing, not the method.
Writes Markdown/CSV tables and PNG figures and prints where they are.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING

from asccl.config import (
    ConfigError,
    is_int,
    is_number,
    names_field,
    path_field,
    require,
    save_config,
)
from asccl.data.config import DataConfig
from asccl.data.prepare import run_prepare
from asccl.metric.config import MetricEvalConfig
from asccl.spfem.experiment import ExperimentConfig
from asccl.training.config import TrainConfig

if TYPE_CHECKING:
    from torch import Tensor

#: the edited versions of the face the demo scores (see :mod:`asccl.demo_loss`)
VARIANTS = ("identical", "brighter", "shifted", "mouth_open", "unrelated")


@dataclass(frozen=True)
class DemoConfig:
    """Settings of ``asccl demo`` (see ``configs/demo.toml``).

    The demo sets in its stages' configs what ties them together: ``train.data`` and
    ``experiment.data`` are ``data.out``; ``train.out`` is ``<out>/metric``,
    ``experiment.out`` ``<out>/experiment``; ``experiment.metric`` is the metric used here
    and ``experiment.seed`` is ``seed``; ArcFace and SyncNet weights with random values are
    made for the experiment's evaluation where ``experiment.eval`` names none.
    """

    #: the random-weights metric's backbone, used only with neither ``train`` nor
    #: ``checkpoint`` (stage 2 trains ``train.metric``'s; a checkpoint holds its own)
    backbone: str = "iresnet18"
    #: that metric's input side (the paper uses 224); the same rule as ``backbone``
    image_size: int = 112
    checkpoint: Path | None = None  #: a trained metric to use instead of stage 2's
    out: Path = Path("runs/demo")  #: the demo's outputs: metric/, experiment/, loss table, figures
    seed: int = 0  #: seed of the demo's random draws, and the experiment's seed
    optimise_steps: int = 30  #: gradient steps on the degraded image
    optimise_lr: float = 0.02  #: Adam learning rate of those steps
    variants: tuple[str, ...] = VARIANTS  #: edits of a sample face whose loss is tabulated
    run_data_stage: bool = True  #: run stage 1 on ``data.root`` first
    #: stage 1 (a table or a config file); its ``out`` is the data of stages 2 and 4
    data: DataConfig = field(
        default_factory=lambda: DataConfig(out=Path("runs/demo/data"), crop_size=112)
    )
    #: stage 2, the metric training (a table or a config file); none: skip (random weights)
    train: TrainConfig | None = None
    #: after stage 2, ``asccl metric evaluate`` on the metric (a table or a config file;
    #: checkpoint, data, out, held-out speakers and ArcFace weights are set by the demo);
    #: none: skip
    health: MetricEvalConfig | None = None
    #: stage 4, the experiment (a table or a config file); none: skip
    experiment: ExperimentConfig | None = None

    def __post_init__(self) -> None:
        """One :class:`~asccl.config.ConfigError` per nonsense value, naming its key."""
        from asccl.metric.config import MetricConfig

        path_field(self, "out")
        path_field(self, "checkpoint", optional=True)
        require(is_int(self.seed, 0, 2**63 - 1), self, "seed", "must be in [0, 2**63)")
        require(is_int(self.optimise_steps, 1), self, "optimise_steps", "must be an integer >= 1")
        require(is_number(self.optimise_lr) and self.optimise_lr > 0, self, "optimise_lr",
                "must be a finite number > 0")  # fmt: skip
        names_field(self, "variants", empty=f'name at least one of {list(VARIANTS)}, e.g. '
                    '["identical", "unrelated"], or leave it out for all')  # fmt: skip
        require(len(self.variants) > 0 and all(v in VARIANTS for v in self.variants), self,
                "variants", f"must be a non-empty list of {list(VARIANTS)}")  # fmt: skip
        require(isinstance(self.run_data_stage, bool), self, "run_data_stage",
                "must be true or false")  # fmt: skip
        for key, cls in (("data", DataConfig), ("train", TrainConfig),
                         ("experiment", ExperimentConfig),
                         ("health", MetricEvalConfig)):  # fmt: skip
            value = getattr(self, key)
            require(isinstance(value, cls) or (value is None and key != "data"), self, key,
                    f"must be a [{key}] table or a config file name")  # fmt: skip
        try:  # the metric's own checks (backbone name, image_size a multiple of 16...)
            MetricConfig(backbone=self.backbone, image_size=self.image_size)
        except (TypeError, ValueError) as exc:  # its message names the key
            raise ConfigError(str(exc)) from None
        self._check_metric_keys_used()

    def _check_metric_keys_used(self) -> None:
        """``backbone``/``image_size`` build only the random-weights metric: with a
        checkpoint or stage 2 they are unused, so a value other than the default that
        differs from the one used is refused, naming the key to set instead."""
        defaults = {f.name: f.default for f in fields(self)}
        for key in ("backbone", "image_size"):
            value, flag = getattr(self, key), "--" + key.replace("_", "-")
            if value == defaults[key]:
                continue  # left as is: nothing asked for
            if self.checkpoint is not None:
                raise ConfigError(
                    f"{key} = {value!r} is not used: the checkpoint holds its metric's "
                    f"{key}; leave {flag} out"
                )
            if self.train is not None and value != getattr(self.train.metric, key):
                raise ConfigError(
                    f"{key} = {value!r} is not used: stage 2 trains train.metric's "
                    f"({getattr(self.train.metric, key)!r}); set --train.metric.{flag[2:]} "
                    f"(train.metric.{key}) instead"
                )


def run_demo(config: DemoConfig) -> dict[str, Path]:
    """Run the demo; return the paths of what it wrote."""
    import torch

    from asccl.demo_loss import run_loss_demo

    out = config.out
    out.mkdir(parents=True, exist_ok=True)
    paths: dict[str, Path] = {"config": save_config(config, out / "config.json")}
    torch.manual_seed(config.seed)

    # 1. Stage 1 on the demo data.
    if config.run_data_stage:
        paths.update(_data_stage(config.data, out))

    # 2. Stage 2: train the metric briefly on the demo crops.
    trained = None
    if config.train is not None and config.checkpoint is None:
        trained, train_paths = _train_stage(config)
        paths.update(train_paths)

    # A metric: a given checkpoint, the one just trained, else random weights.
    if config.checkpoint is None and trained is not None:
        checkpoint = trained
        print(f"metric: {checkpoint} (trained above)")
    elif config.checkpoint is None:
        from asccl.metric import ASCCLMetric, save_metric

        metric = ASCCLMetric(backbone=config.backbone, image_size=config.image_size)
        checkpoint = save_metric(metric, out / "metric_random.safetensors")
        print(f"metric: {config.backbone}, random weights (no trained checkpoint given)")
    else:
        checkpoint = config.checkpoint
        print(f"metric: {checkpoint}")
    if config.health is not None and (trained is not None or config.checkpoint is not None):
        paths.update(_health_stage(config, Path(checkpoint)))
    # 3-4. The metric as a loss: edited faces scored, a degraded copy optimised.
    paths["checkpoint"] = Path(checkpoint)
    paths.update(run_loss_demo(config, checkpoint))

    # 5. Baseline vs +ASCCL for the reference generators, evaluated.
    if config.experiment is not None:
        paths.update(_experiment_stage(config, Path(checkpoint)))
    print("\nDemo outputs:")
    for name, path in paths.items():
        print(f"  {name:<17} {path}")
    return paths


def _experiment_stage(config: DemoConfig, metric: Path) -> dict[str, Path]:
    """``asccl experiment`` on the demo crops with ``metric``; ArcFace and SyncNet with
    random weights where its evaluation names none."""
    import torch

    from asccl.evaluation.syncnet import SyncNet
    from asccl.metric import build_iresnet
    from asccl.spfem.experiment import run_experiment

    assert config.experiment is not None
    evaluation = config.experiment.eval
    weights = config.out / "random_weights"
    weights.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(config.seed)
    random_nets: dict[str, object] = {}
    # rewritten only when they change (another seed): the evaluation cache knows a weights
    # file by its size and mtime, so a rerun of the demo reuses its features
    arcface, syncnet = weights / "backbone.pth", weights / "syncnet_v2.model"
    arcface_state = build_iresnet("iresnet18").state_dict()  # drawn always: same RNG order
    if evaluation.arcface_weights is None:
        random_nets.update(arcface_weights=arcface, arcface_backbone="iresnet18")
        _save_if_changed(arcface_state, arcface)
    if evaluation.syncnet_weights is None:
        random_nets["syncnet_weights"] = syncnet
        _save_if_changed(SyncNet().state_dict(), syncnet)
    experiment = replace(
        config.experiment,
        data=config.data.out,
        metric=metric,
        out=config.out / "experiment",
        seed=config.seed,
        eval=replace(evaluation, **random_nets),
    )
    print(f"\nstage 4: asccl experiment: {' and '.join(experiment.models)}, baseline vs "
          f"+ASCCL, test speakers {', '.join(experiment.test_speakers)}")  # fmt: skip
    if random_nets:
        print("(evaluation with RANDOM-weight ArcFace and SyncNet: the numbers show the plumbing)")
    try:
        outputs = run_experiment(experiment)
    except ConfigError as exc:  # e.g. a rerun with another seed cannot resume its training
        raise ConfigError(f"{exc} (asccl demo: give another --out)") from None
    for name, path in outputs.items():
        if name.startswith("eval_table_") and name.endswith("_md"):
            print(path.read_text())
    if "comparison_md" in outputs:
        print(outputs["comparison_md"].read_text())
    return {f"experiment_{name}": path for name, path in outputs.items()}


def _health_stage(config: DemoConfig, metric: Path) -> dict[str, Path]:
    """``asccl metric evaluate`` on ``metric``: its health on the held-out speakers of the
    demo data, beside its untrained init and pixel L2; prints the table and its time."""
    import time

    from asccl.metric.health import evaluate_metric

    assert config.health is not None
    train = config.train
    health = replace(
        config.health,
        checkpoint=metric,
        data=config.data.out,
        out=config.out / "metric_health",
        crop_format=config.data.crop_format,
        val_speakers=train.val_speakers if train is not None else config.health.val_speakers,
        arcface_weights=train.arcface_weights
        if train is not None and train.init == "arcface"
        else config.health.arcface_weights,
    )
    print(f"asccl metric evaluate: {metric} on held-out {', '.join(health.val_speakers)}")
    start = time.perf_counter()
    outputs = evaluate_metric(health)
    print(outputs["table_md"].read_text())
    print(f"(metric health: {time.perf_counter() - start:.1f} s)\n")
    return {"metric_health_md": outputs["table_md"], "metric_health_png": outputs["plot_png"]}


def _save_if_changed(state: dict[str, Tensor], path: Path) -> None:
    """``torch.save`` to ``path`` unless it already holds exactly these bytes."""
    import io

    import torch

    from asccl.io import write_bytes_atomic

    buffer = io.BytesIO()
    torch.save(state, buffer)
    data = buffer.getvalue()
    if path.is_file() and path.stat().st_size == len(data) and path.read_bytes() == data:
        return
    write_bytes_atomic(path, data)


def _train_stage(config: DemoConfig) -> tuple[Path, dict[str, Path]]:
    """Stage 2 on the demo crops; prints the validation gap before and after."""
    import logging

    from asccl.training.history import read_log
    from asccl.training.train_metric import train_metric

    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    assert config.train is not None
    train = replace(config.train, data=config.data.out, out=config.out / "metric")
    print(f"\nstage 2: training the metric on {train.data} -> {train.out}")
    final = train_metric(train)
    val = [r for r in read_log(train.out / "log.csv") if r["split"] == "val"]
    print(
        "validation health signal (positive - negative cosine): "
        + " -> ".join(f"{r['gap']:.3f} (step {int(r['step'])})" for r in val)
    )
    print(f"validation loss: {val[0]['loss']:.3f} -> {val[-1]['loss']:.3f}\n")
    return final, {"metric": final, "train_log": train.out / "log.csv",
                   "curves_png": train.out / "curves.png"}  # fmt: skip


def _data_stage(config: DataConfig, out: Path) -> dict[str, Path]:
    """Stage 1 on the demo data, then its two figures."""
    import numpy as np

    from asccl.data.audio import frame_features, load_audio
    from asccl.data.crop_store import crop_path, open_clip_crops
    from asccl.data.dtw import cost_matrix
    from asccl.data.pair_files import read_pairs_table
    from asccl.data.plots import plot_alignment, plot_crop_sheet

    print(f"stage 1 on {config.root}:")
    for summary in run_prepare(config):
        print(summary.report())
    paths: dict[str, Path] = {"data": config.out}
    pairs = read_pairs_table(config.out / "pairs.csv")
    if pairs:
        pair = pairs[0]
        from asccl.data.clip_index import read_clip_index

        clips = {c.clip_id: c for c in read_clip_index(config.out / "clips.csv")}
        feats = [
            frame_features(
                load_audio(clips[cid].audio, config.sample_rate),
                config.sample_rate,
                clips[cid].fps,
                kind=config.features,
            )
            for cid in (pair.neutral_clip, pair.emotional_clip)
        ]
        cost = cost_matrix(feats[0], feats[1], metric=config.dtw_metric)
        paths["alignment_png"] = plot_alignment(
            cost, pair.neutral_frames, pair.emotional_frames, out / "dtw_alignment.png",
            title=f"{pair.neutral_clip} vs {pair.emotional_clip}",
        )  # fmt: skip
        sheet = {}
        first_per_speaker = {p.speaker: p for p in reversed(pairs)}  # one pair per speaker
        for p in sorted(first_per_speaker.values(), key=lambda p: p.speaker):
            for cid in (p.neutral_clip, p.emotional_clip):
                path = crop_path(config.out, cid, config.crop_format)
                if path.exists():
                    reader = open_clip_crops(path)
                    sheet[cid] = np.stack([reader.frame(i) for i in range(len(reader))])
        if sheet:
            paths["crops_png"] = plot_crop_sheet(sheet, out / "crops_contact_sheet.png")
    return paths


__all__ = ["DemoConfig", "run_demo"]
