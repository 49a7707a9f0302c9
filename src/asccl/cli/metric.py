"""``asccl train-metric`` (stage 2) and ``asccl metric`` (info, convert, export, evaluate)."""

from __future__ import annotations

import argparse
from collections.abc import Sequence


def _train_metric(args: argparse.Namespace, overrides: Sequence[str]) -> int:
    import logging

    from asccl.config import load_config
    from asccl.training.config import TrainConfig
    from asccl.training.train_metric import train_metric

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    config = load_config(TrainConfig, args.config, overrides)
    path = train_metric(config)
    print(
        f"metric checkpoint: {path}\ntraining log: {config.out / 'log.csv'}\n"
        f"curves: {config.out / 'curves.png'}"
    )
    return 0


def _metric_info(args: argparse.Namespace, overrides: Sequence[str]) -> int:
    from asccl.metric.checkpoint import describe_metric

    print(describe_metric(args.checkpoint))  # every check: config, keys, shapes, finite values
    return 0


def _metric_convert(args: argparse.Namespace, overrides: Sequence[str]) -> int:
    from asccl.metric import load_metric, save_metric
    from asccl.metric.checkpoint import read_metric_speakers

    # --channel-order given: it wins; else the file's own (the authors' .pth: bgr)
    order = {"channel_order": args.channel_order} if args.channel_order else {}
    metric = load_metric(args.source, authors_compat=args.authors_compat, **order)
    speakers = read_metric_speakers(args.source)  # an asccl file's record is kept
    path = save_metric(metric, args.output, speakers=speakers)
    config = metric.config
    arithmetic = "asccl's" if config.authors_differences() else "the authors'"
    print(
        f"wrote {path} ({config.backbone}, channel order {config.channel_order}, "
        f"{arithmetic} loss arithmetic)"
    )
    return 0


def _metric_export(args: argparse.Namespace, overrides: Sequence[str]) -> int:
    from asccl.metric.export import README_FILE, WEIGHTS_FILE, export_metric

    module = export_metric(args.checkpoint, args.out)
    folder = module.parent
    print(f"wrote {module}, {folder / WEIGHTS_FILE} and {folder / README_FILE}")
    return 0


def _metric_evaluate(args: argparse.Namespace, overrides: Sequence[str]) -> int:
    from asccl.config import load_config
    from asccl.metric.health import MetricEvalConfig, evaluate_metric

    outputs = evaluate_metric(load_config(MetricEvalConfig, args.config, overrides))
    print(outputs["table_md"].read_text(), end="")
    for name, path in outputs.items():
        print(f"{name}: {path}")
    return 0


def add_train_metric(commands: argparse._SubParsersAction) -> None:
    """``asccl train-metric``."""
    train = commands.add_parser(
        "train-metric",
        help="stage 2: train the ASCCL metric on paired crops",
        description="Train (or resume) the metric. Extra --key value options override the "
        "config, e.g. --data runs/mead --arcface-weights backbone.pth --metric.backbone "
        "iresnet50. Under torchrun it trains with DDP.",
        config="asccl.training.config:TrainConfig",
    )
    train.add_argument("--config", help="TOML config, e.g. configs/metric/seed.toml")
    train.set_defaults(handler=_train_metric, takes_overrides=True)


def add_metric(commands: argparse._SubParsersAction) -> None:
    """``asccl metric ACTION``."""
    metric = commands.add_parser("metric", help="inspect and convert metric checkpoints")
    metric_commands = metric.add_subparsers(dest="metric_command", required=True, metavar="ACTION")
    info = metric_commands.add_parser(
        "info", help="print a checkpoint's every setting (config, input, version)"
    )
    info.add_argument("checkpoint")
    info.set_defaults(handler=_metric_info)
    convert = metric_commands.add_parser(
        "convert", help="convert the authors' .pth checkpoint to an asccl .safetensors file"
    )
    convert.add_argument("source", help="the authors' checkpoint (resnet50.* / mlp.* keys)")
    convert.add_argument("output", help="output .safetensors path")
    convert.add_argument(
        "--channel-order",
        choices=("rgb", "bgr"),
        default=None,
        help="channel order the checkpoint was trained on (default: an asccl file's own; "
        "the authors' .pth: bgr)",
    )
    convert.add_argument(
        "--authors-compat",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="store the authors' loss arithmetic (their anchor window, adaptive weighting) "
        "in the header, so the file gives their loss with no flags at load (default: the "
        "source's own; the authors' .pth: theirs). --no-authors-compat: asccl's arithmetic",
    )
    convert.set_defaults(handler=_metric_convert)
    export = metric_commands.add_parser(
        "export",
        help="write the loss as one plain-PyTorch file + .npz weights for old environments "
        "(Python >= 3.8, PyTorch >= 1.7; no asccl needed)",
    )
    export.add_argument("checkpoint", help="metric checkpoint (.safetensors, or the authors' .pth)")
    export.add_argument("out", help="output folder: asccl_loss_standalone.py, weights, README.txt")
    export.set_defaults(handler=_metric_export)
    health = metric_commands.add_parser(
        "evaluate",
        help="a metric's health on held-out speakers: cosine gap, DTW-partner retrieval, "
        "vs its untrained init and pixel L2 -> table + PNG",
        description="Evaluate a trained metric on the held-out speakers of its data. Extra "
        "--key value options override the config, e.g. --checkpoint runs/metric/"
        "metric.safetensors --data runs/mead --val-speakers '[\"W021\"]' --max-pairs 50 "
        "--arcface-weights backbone.pth.",
        config="asccl.metric.config:MetricEvalConfig",
    )
    health.add_argument("--config", help="TOML config, e.g. configs/metric/health_demo.toml")
    health.set_defaults(handler=_metric_evaluate, takes_overrides=True)
