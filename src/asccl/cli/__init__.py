"""The ``asccl`` command line: the only package that parses arguments.

Each sub-command takes ``--config FILE.toml`` and ``--key value`` overrides of its typed
config, then calls a plain function.

One module per pipeline stage holds its sub-commands' parsers and handlers (a handler
imports its stage's modules when it runs: ``asccl --help`` loads no torch);
:mod:`asccl.cli.parser` puts them together.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from asccl.cli.parser import build_parser

__all__ = ["build_parser", "main"]


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``asccl`` command."""
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)  # --help ends here: torch is not imported

    from asccl.config import ConfigError
    from asccl.data.errors import DataError
    from asccl.io import CheckpointError
    from asccl.optional import missing_dependency
    from asccl.spfem.face3d.errors import Face3DModelError
    from asccl.weights import MissingWeightsError

    if extra and not getattr(args, "takes_overrides", False):
        parser.error(f"unrecognised arguments: {' '.join(extra)}")
    try:
        return args.handler(args, extra)
    except (ConfigError, CheckpointError, MissingWeightsError, DataError, Face3DModelError) as exc:
        _close_progress_bars()  # else the error line is glued to a half-drawn bar
        print(f"asccl: error: {exc}", file=sys.stderr)
        return 2
    except ImportError as exc:  # an optional package not installed: which, and how to get it
        missing = missing_dependency(exc)
        if missing is None:
            raise
        _close_progress_bars()
        print(f"asccl: error: {missing}", file=sys.stderr)
        return 2


def _close_progress_bars() -> None:
    """Close the tqdm bars an exception left open, so that what follows starts a line."""
    tqdm = sys.modules.get("tqdm")
    for bar in list(getattr(getattr(tqdm, "tqdm", None), "_instances", ())):
        bar.close()
