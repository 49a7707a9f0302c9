"""The NED stage-1 example runs and trains."""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "ned_stage1_minimal.py"


def test_the_ned_stage1_example_runs(capsys):
    spec = importlib.util.spec_from_file_location("ned_stage1_minimal", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    history = module.main(steps=2)
    assert len(history) == 2
    assert all(math.isfinite(row["asccl"]) and row["asccl"] > 0 for row in history)
    assert "asccl=" in capsys.readouterr().out
