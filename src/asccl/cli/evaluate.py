"""``asccl evaluate``: the evaluation of a results folder (stage 4)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence


def _evaluate(args: argparse.Namespace, overrides: Sequence[str]) -> int:
    from asccl.config import load_config
    from asccl.evaluation.config import EvalConfig
    from asccl.evaluation.runner import run_evaluation

    config = load_config(EvalConfig, args.config, overrides)
    outputs = run_evaluation(config)
    import json
    import os

    if os.environ.get("RANK", "0") != "0":  # torchrun: process 0 reports
        return 0

    summary = json.loads(outputs["summary"].read_text())
    print(outputs["report"].read_text(), end="")
    for name, path in outputs.items():
        print(f"{name}: {path}")
    if not summary["comparable"]:
        print(f"asccl: error: nothing comparable in {config.results}: no metric has a value of "
              "every method over the same clips of any emotion (report.txt says why)",
              file=sys.stderr)  # fmt: skip
    skipped = summary["skipped"]
    reasons = ", ".join(f"{reason}: {n}" for reason, n in skipped.items())
    print(f"skipped clips: {len(summary['failures'])}" + (f" ({reasons})" if reasons else ""))
    return 0 if summary["comparable"] else 1


def add_evaluate(commands: argparse._SubParsersAction) -> None:
    """``asccl evaluate``."""
    evaluate = commands.add_parser(
        "evaluate",
        help="FID/FAD, CSIM, LSE-D/LSE-C of a results folder -> tables, plots",
        description="Evaluate a results folder (<method>/<setting>/<emotion>/<clip>). Extra "
        "--key value options override the config, e.g. --results runs/dsm --arcface-weights "
        "backbone.pth --syncnet-weights syncnet_v2.model --max-frames-per-clip 64.",
        config="asccl.evaluation.config:EvalConfig",
    )
    evaluate.add_argument("--config", help="TOML config, e.g. configs/eval/demo.toml")
    evaluate.set_defaults(handler=_evaluate, takes_overrides=True)
