"""``asccl groundtruth``: the ground-truth SPFEM benchmark, end to end (issue 17).

1. ``asccl data synth`` (``synth``): procedural speakers in the paper's seven emotions, in
   MEAD's layout, with the exact answer of every (neutral clip, target emotion) in
   ``ground_truth/``.
2. ``asccl data prepare`` (``data``) on ``<synth.out>/MEAD``: index, DTW pairs, face crops.
3. ``asccl train-metric`` (``train``) on those crops, the test speakers held out.
4. ``asccl metric evaluate`` (``health``): the trained metric's health on the held-out
   speakers beside its untrained init and pixel L2.
5. ``asccl experiment`` (``experiment``) over its ``seeds``: baseline vs +ASCCL for both
   reference generators, each seed trained and evaluated, the ground truth framed like the
   outputs into ``results/ground_truth/`` so that ``asccl evaluate`` adds the ground-truth
   columns (mouth/face landmark error, PSNR, SSIM); mean and spread over seeds.

What ties the stages together is set here: ``data.root = <synth.out>/MEAD``, ``data.out =
<out>/data``, ``train.data`` the latter, ``train.out = <out>/metric``, ``train.val_speakers``
and ``health.val_speakers`` = ``experiment.test_speakers`` (never trained on by the metric
nor by the generators), ``health`` on ``<out>/metric/metric.safetensors`` into
``<out>/metric_health``, ``experiment.data``/``metric``/``out = <out>/experiment``/
``ground_truth = <synth.out>/ground_truth`` (so its ``reference_rows``, on in the
configs, are scored: ``source`` and ``truth`` beside the methods, never ranked). Every
stage resumes, so a rerun picks up where a killed one stopped. Ends by printing where the
tables and plots are.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path

from asccl.config import ConfigError, path_field, require
from asccl.data.config import DataConfig
from asccl.data.synth.config import SynthConfig
from asccl.metric.config import MetricEvalConfig
from asccl.spfem.experiment import ExperimentConfig
from asccl.training.config import TrainConfig


@dataclass(frozen=True)
class GroundTruthConfig:
    """Settings of ``asccl groundtruth`` (see ``configs/experiments/groundtruth.toml``); the
    nested stages' keys named in the module doc are set from here."""

    out: Path = Path("runs/groundtruth")  #: data/, metric/, metric_health/, experiment/
    #: stage 1, ``asccl data synth`` (its ``out`` holds ``MEAD/`` and ``ground_truth/``)
    synth: SynthConfig = field(default_factory=lambda: SynthConfig(out=Path("runs/synth")))
    #: stage 2, ``asccl data prepare`` (``root`` and ``out`` are set here)
    data: DataConfig = field(default_factory=lambda: DataConfig(crop_size=112))
    #: stage 3, ``asccl train-metric`` (``data``, ``out``, ``val_speakers`` are set here)
    train: TrainConfig = field(default_factory=lambda: TrainConfig(init="random"))
    #: stage 4, ``asccl metric evaluate`` (``checkpoint``, ``data``, ``out``, speakers set here)
    health: MetricEvalConfig = field(default_factory=MetricEvalConfig)
    #: stage 5, ``asccl experiment`` over its ``seeds`` (data, metric, out, ground truth set)
    experiment: ExperimentConfig = field(default_factory=lambda: ExperimentConfig(seeds=(0, 1, 2)))

    def __post_init__(self) -> None:
        """One :class:`~asccl.config.ConfigError` per nonsense value, naming its key."""
        path_field(self, "out")
        stages = (("synth", SynthConfig), ("data", DataConfig), ("train", TrainConfig),
                  ("health", MetricEvalConfig), ("experiment", ExperimentConfig))  # fmt: skip
        for key, cls in stages:
            require(isinstance(getattr(self, key), cls), self, key,
                    f"must be a [{key}] table or a config file name")  # fmt: skip


def stage_configs(
    config: GroundTruthConfig,
) -> tuple[DataConfig, TrainConfig, MetricEvalConfig, ExperimentConfig]:
    """The stages' configs with what ties them together (see the module doc)."""
    out, synth = Path(config.out), Path(config.synth.out)
    held_out = list(config.experiment.test_speakers)
    try:
        data = replace(config.data, root=synth / "MEAD", out=out / "data")
        train = replace(config.train, data=data.out, out=out / "metric", val_speakers=held_out)
        metric = train.out / "metric.safetensors"
        health = replace(config.health, checkpoint=metric, data=data.out,
                         out=out / "metric_health", val_speakers=held_out,
                         crop_format=data.crop_format)  # fmt: skip
        experiment = replace(config.experiment, data=data.out, metric=metric,
                             out=out / "experiment",
                             ground_truth=synth / "ground_truth")  # fmt: skip
    except ConfigError as exc:
        raise ConfigError(f"groundtruth: {exc}") from None
    return data, train, health, experiment


@contextmanager
def _stage_keys(table: str) -> Iterator[None]:
    """A stage's refusal to resume names its own flag: ``--resume false`` is
    ``--<table>.resume false`` here (e.g. after ``asccl data synth`` redid the clips under a
    new recipe and stage 1 recut their crops)."""
    from asccl.training.resume import START_OVER

    try:
        yield
    except ConfigError as exc:
        if START_OVER not in str(exc):
            raise
        here = START_OVER.replace("--resume", f"--{table}.resume")  # --out: the whole benchmark's
        raise ConfigError(str(exc).replace(START_OVER, here)) from exc


def run_groundtruth(config: GroundTruthConfig) -> dict[str, Path]:
    """Run (or resume) every stage; returns ``{name: path}`` of the main outputs and prints
    each stage's time and where the tables and plots are."""
    from asccl.config import save_config
    from asccl.data.prepare import run_prepare
    from asccl.data.synth import run_synth
    from asccl.metric.health import evaluate_metric
    from asccl.spfem.experiment import run_experiment
    from asccl.training.train_metric import train_metric

    data, train, health, experiment = stage_configs(config)
    Path(config.out).mkdir(parents=True, exist_ok=True)
    paths = {"config": save_config(config, Path(config.out) / "config.json")}
    times: dict[str, float] = {}
    start = time.perf_counter()

    def stage(name: str) -> None:
        times[name] = time.perf_counter() - start - sum(times.values())
        print(f"[{name}: {times[name]:.0f} s]")

    print(f"1. asccl data synth -> {config.synth.out}")
    summary = run_synth(config.synth)
    print(summary.report())
    stage("synth")
    print(f"2. asccl data prepare {data.root} -> {data.out}")
    for summary in run_prepare(data):
        print(summary.report())
    stage("data")
    print(f"3. asccl train-metric -> {train.out} (held out: {', '.join(train.val_speakers)})")
    with _stage_keys("train"):
        paths["metric"] = train_metric(train)
    stage("metric")
    print(f"4. asccl metric evaluate -> {health.out}")
    outputs = evaluate_metric(health)
    print(outputs["table_md"].read_text())
    paths |= {"health_md": outputs["table_md"], "health_png": outputs["plot_png"]}
    stage("health")
    seeds = experiment.seeds or (experiment.seed,)
    print(f"5. asccl experiment -> {experiment.out}: {', '.join(experiment.models)}, baseline "
          f"vs +ASCCL, seeds {list(seeds)}, evaluated against the ground truth")  # fmt: skip
    with _stage_keys("experiment"):
        outputs = run_experiment(experiment)
    paths |= {f"experiment_{k}": v for k, v in outputs.items()}
    stage("experiment")
    if "comparison_md" in outputs:
        print(outputs["comparison_md"].read_text())
    total = sum(times.values())
    print("times: " + ", ".join(f"{k} {v:.0f} s" for k, v in times.items())
          + f"; total {total:.0f} s ({total / 60:.1f} min)")  # fmt: skip
    print("\nground-truth benchmark outputs:")
    shown = [k for k in paths if k in ("health_md", "health_png", "experiment_comparison_md")
             or k.startswith(("experiment_seeds_table_", "experiment_seeds_spread_",
                              "experiment_seeds_plot_",
                              "experiment_seeds_references_"))]  # fmt: skip
    for name in shown:
        if not name.endswith(("_csv", "_tex")):
            print(f"  {name:<40} {paths[name]}")
    return paths


__all__ = ["GroundTruthConfig", "run_groundtruth", "stage_configs"]
