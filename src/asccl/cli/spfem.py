"""``asccl spfem train``, ``asccl experiment`` (stage 3) and ``asccl face3d``."""

from __future__ import annotations

import argparse
from collections.abc import Sequence


def _spfem_train(args: argparse.Namespace, overrides: Sequence[str]) -> int:
    import logging

    from asccl.config import load_config
    from asccl.spfem.train import SPFEMTrainConfig, train_spfem

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    config = load_config(SPFEMTrainConfig, args.config, overrides)
    path = train_spfem(config)
    print(
        f"generator checkpoint: {path}\ntraining log: {config.out / 'log.csv'}\n"
        f"curves: {config.out / 'curves.png'}\nsample grids: {config.out / 'samples'}"
    )
    return 0


def _experiment(args: argparse.Namespace, overrides: Sequence[str]) -> int:
    import logging

    from asccl.config import load_config
    from asccl.spfem.experiment import ExperimentConfig, run_experiment

    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    config = load_config(ExperimentConfig, args.config, overrides)
    outputs = run_experiment(config)
    if "comparison_md" in outputs:
        print(outputs["comparison_md"].read_text(), end="")
    for name, path in outputs.items():
        print(f"{name}: {path}")
    return 0


def _face3d_convert_flame(args: argparse.Namespace, overrides: Sequence[str]) -> int:
    from asccl.spfem.face3d import convert_flame

    print(f"wrote {convert_flame(args.source, args.output)}")
    return 0


def add_spfem(commands: argparse._SubParsersAction) -> None:
    """``asccl spfem ACTION``."""
    spfem = commands.add_parser("spfem", help="stage 3: reference SPFEM generators")
    spfem_commands = spfem.add_subparsers(dest="spfem_command", required=True, metavar="ACTION")
    spfem_train = spfem_commands.add_parser(
        "train",
        help="train (or resume) a GANmut- or ICface-style generator, optionally with ASCCL",
        description="Train a reference generator on stage-1 crops. Extra --key value options "
        "override the config, e.g. --model ganmut --asccl-weight 1 --asccl-checkpoint "
        "metric.safetensors --data runs/mead --out runs/ganmut_asccl. Under torchrun each "
        "process trains on its share of the batch and gradients are averaged.",
        config="asccl.spfem.config:SPFEMTrainConfig",
    )
    spfem_train.add_argument("--config", help="TOML config, e.g. configs/spfem/ganmut_demo.toml")
    spfem_train.set_defaults(handler=_spfem_train, takes_overrides=True)


def add_experiment(commands: argparse._SubParsersAction) -> None:
    """``asccl experiment``."""
    experiment = commands.add_parser(
        "experiment",
        help="baseline vs +ASCCL: train both, generate test results, evaluate, compare",
        description="Train each model with and without ASCCL (same seed and budget), write "
        "the test set's results, evaluate them and compare. Extra --key value options "
        "override the config, nested ones too, e.g. --metric runs/demo/metric/metric.safetensors "
        "--ganmut.steps 500 --eval.device cuda (or --ganmut configs/spfem/ganmut.toml).",
        config="asccl.spfem.experiment:ExperimentConfig",
    )
    experiment.add_argument("--config", help="TOML config, e.g. configs/experiments/demo.toml")
    experiment.set_defaults(handler=_experiment, takes_overrides=True)


def add_face3d(commands: argparse._SubParsersAction) -> None:
    """``asccl face3d ACTION``."""
    face3d = commands.add_parser(
        "face3d", help="3DMM route: FLAME/BFM models for NED stage 1 and DSM"
    )
    face3d_commands = face3d.add_subparsers(dest="face3d_command", required=True, metavar="ACTION")
    convert_flame = face3d_commands.add_parser(
        "convert-flame",
        help="FLAME generic_model.pkl -> .npz (restricted unpickler: no code from the file runs)",
    )
    convert_flame.add_argument("source", help="FLAME's generic_model.pkl (flame.is.tue.mpg.de)")
    convert_flame.add_argument("output", help="output .npz path")
    convert_flame.set_defaults(handler=_face3d_convert_flame)
