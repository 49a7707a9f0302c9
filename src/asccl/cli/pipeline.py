"""``asccl demo`` and ``asccl groundtruth``: the whole pipeline in one command."""

from __future__ import annotations

import argparse
from collections.abc import Sequence


def _demo(args: argparse.Namespace, overrides: Sequence[str]) -> int:
    from asccl.config import load_config
    from asccl.demo import DemoConfig, run_demo

    run_demo(load_config(DemoConfig, args.config, overrides))
    return 0


def _groundtruth(args: argparse.Namespace, overrides: Sequence[str]) -> int:
    import logging

    from asccl.config import load_config
    from asccl.groundtruth import GroundTruthConfig, run_groundtruth

    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    run_groundtruth(load_config(GroundTruthConfig, args.config, overrides))
    return 0


def add_demo(commands: argparse._SubParsersAction) -> None:
    """``asccl demo``."""
    demo = commands.add_parser(
        "demo",
        help="run the pipeline (as far as it exists) on bundled data",
        description="Run the demo. Extra --key value options override the config, nested "
        "ones too: --out runs/x --train.max-steps 10 --experiment.ganmut.steps 50.",
        config="asccl.demo:DemoConfig",
    )
    demo.add_argument(
        "--config",
        default="configs/demo.toml",
        help="TOML config (default: configs/demo.toml, which reads configs/metric/demo.toml "
        "and configs/experiments/demo.toml)",
    )
    demo.set_defaults(handler=_demo, takes_overrides=True)


def add_groundtruth(commands: argparse._SubParsersAction) -> None:
    """``asccl groundtruth``."""
    groundtruth = commands.add_parser(
        "groundtruth",
        help="the ground-truth SPFEM benchmark: synth data -> metric -> experiment over seeds",
        description="asccl data synth, data prepare, train-metric, metric evaluate, then "
        "asccl experiment over its seeds with the synthetic ground truth framed into the "
        "results (mouth/face landmark error, PSNR, SSIM columns); resumable. Nested keys "
        "override, e.g. --experiment.seeds '[0]' --train.max-steps 20.",
        config="asccl.groundtruth:GroundTruthConfig",
    )
    groundtruth.add_argument(
        "--config", help="TOML config, e.g. configs/experiments/groundtruth.toml"
    )
    groundtruth.set_defaults(handler=_groundtruth, takes_overrides=True)
