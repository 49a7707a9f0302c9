"""Modules that load their public names on first use (PEP 562), so that importing a
package (or a config module) does not import torch: ``asccl``, ``asccl.metric``,
``asccl.spfem``, ``asccl.data.synth`` and ``asccl.spfem.experiment`` use it::

    __getattr__, __dir__ = lazy_names(__name__, {"ASCCLLoss": "asccl.losses"})
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping
from typing import Any


def lazy_names(
    module: str, names: Mapping[str, str]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """``(__getattr__, __dir__)`` for ``module``: each of ``names`` (name -> the module
    defining it) is imported from its module on first use; ``dir()`` lists them too."""

    def __getattr__(name: str) -> Any:
        if name in names:
            return getattr(importlib.import_module(names[name]), name)
        raise AttributeError(f"module {module!r} has no attribute {name!r}")

    def __dir__() -> list[str]:
        return sorted({*vars(sys.modules[module]), *names})

    return __getattr__, __dir__
