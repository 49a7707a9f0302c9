"""``asccl data``: stage 1 (index, pairs, crops, prepare, synth, pack)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence


def _data(args: argparse.Namespace, overrides: Sequence[str]) -> int:
    from asccl.config import load_config
    from asccl.data import prepare

    config = load_config(prepare.DataConfig, args.config, overrides)
    run = {
        "index": lambda: [prepare.run_index(config)],
        "pairs": lambda: [prepare.run_pairs(config)],
        "crops": lambda: [prepare.run_crops(config)],
        "prepare": lambda: prepare.run_prepare(config),
    }[args.data_command]
    summaries = run()
    for summary in summaries:
        print(summary.report())
    # Items that failed: the summary above lists them; the last line is the first one's file.
    errors = [line for line in (s.error_line() for s in summaries) if line]
    if errors:
        print(f"asccl: error: {errors[0]}", file=sys.stderr)
    return 1 if errors else 0


def _data_pack(args: argparse.Namespace, overrides: Sequence[str]) -> int:
    from asccl.config import load_config
    from asccl.data.config import DataConfig
    from asccl.data.frame_pack import run_pack

    summary = run_pack(load_config(DataConfig, args.config, overrides))
    print(summary.report())
    error = summary.error_line()
    if error:
        print(f"asccl: error: {error}", file=sys.stderr)
    return 1 if error else 0


def _data_synth(args: argparse.Namespace, overrides: Sequence[str]) -> int:
    from asccl.config import load_config
    from asccl.data.synth import SynthConfig, run_synth

    summary = run_synth(load_config(SynthConfig, args.config, overrides))
    print(summary.report())
    error = summary.error_line()
    if error:
        print(f"asccl: error: {error}", file=sys.stderr)
    return 1 if error else 0


def add_data(commands: argparse._SubParsersAction) -> None:
    """``asccl data ACTION``."""
    data = commands.add_parser(
        "data",
        help="stage 1: index clips, DTW frame pairs, face crops",
        description="Stage 1 of the pipeline. Extra --key value options override the config "
        "(e.g. --root /data/MEAD --out runs/mead --shard 0/8 --workers 16; --preset authors: "
        "the authors' clip pairs).",
    )
    data_commands = data.add_subparsers(dest="data_command", required=True, metavar="ACTION")
    for action, text in (
        ("index", "list clips (speaker, emotion, level, sentence, paths, fps, frames)"),
        ("pairs", "align neutral/emotional clip pairs by DTW on audio"),
        ("crops", "detect landmarks and store face crops per clip"),
        ("prepare", "index, pairs and crops in turn"),
    ):
        sub = data_commands.add_parser(
            action, help=text, description=text, config="asccl.data.config:DataConfig"
        )
        sub.add_argument("--config", help="TOML config, e.g. configs/data/mead.toml")
        sub.set_defaults(handler=_data, takes_overrides=True)
    text = "write a synthetic MEAD (procedural speakers and speech) with SPFEM ground truth"
    synth = data_commands.add_parser(
        "synth", help=text, description=text + ". Extra --key value options set it, e.g. "
        "--out runs/synth --speakers 3 --sentences 3 --seed 0 --size 256 --duration 3",
        config="asccl.data.synth.config:SynthConfig",
    )  # fmt: skip
    synth.add_argument("--config", help="TOML config (keys of SynthConfig)")
    synth.set_defaults(handler=_data_synth, takes_overrides=True)
    text = "pack the JPEG crop stores into crops.pack/ for random access (training reads it)"
    pack = data_commands.add_parser(
        "pack", help=text, description=text + ". Extra --key value options override the "
        "config (its out and crop_format are used), e.g. --out runs/mead",
        config="asccl.data.config:DataConfig",
    )  # fmt: skip
    pack.add_argument("--config", help="TOML config, e.g. configs/data/mead.toml")
    pack.set_defaults(handler=_data_pack, takes_overrides=True)
