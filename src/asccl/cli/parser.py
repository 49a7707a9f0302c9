"""The ``asccl`` parser: the top level here, each command's sub-parser beside its handler."""

from __future__ import annotations

import argparse

from asccl._version import __version__
from asccl.cli.data import add_data
from asccl.cli.evaluate import add_evaluate
from asccl.cli.metric import add_metric, add_train_metric
from asccl.cli.pipeline import add_demo, add_groundtruth
from asccl.cli.spfem import add_experiment, add_face3d, add_spfem
from asccl.cli.study import add_study
from asccl.cli.weights import add_weights


class _CommandParser(argparse.ArgumentParser):
    """A command's parser; ``config="module:Class"``: its ``--help`` ends with the keys of
    that config class (type, default, description), imported only when help is shown."""

    def __init__(self, *args, config: str | None = None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.config = config

    def format_help(self) -> str:
        text = super().format_help()
        if self.config is None:
            return text
        import importlib

        from asccl.config_keys import describe_keys

        module, name = self.config.split(":")
        keys = describe_keys(getattr(importlib.import_module(module), name))
        return (
            f"{text}\nconfig keys: set in the --config file as key = value (a.b as b in its "
            "[a] table),\nor on the command line as --key value, --a.b value (dashes or "
            f"underscores):\n{keys}\n"
        )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="asccl",
        description="ASCCL: spatial coherent correlation metric and loss for SPFEM.",
    )
    parser.add_argument("--version", action="version", version=f"asccl {__version__}")
    commands = parser.add_subparsers(
        dest="command", required=True, metavar="COMMAND", parser_class=_CommandParser
    )
    # each adds its command(s) to `commands`, in the order asccl --help lists them
    add_demo(commands)
    add_data(commands)
    add_train_metric(commands)
    add_evaluate(commands)
    add_spfem(commands)
    add_experiment(commands)
    add_groundtruth(commands)
    add_study(commands)
    add_face3d(commands)
    add_metric(commands)
    add_weights(commands)
    return parser
