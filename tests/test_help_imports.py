"""Every ``asccl <command> --help`` answers without importing torch (about 2 s saved each):
config classes and the constants their checks need live in torch-free modules, and the
packages ``asccl.metric``, ``asccl.spfem`` (and ``asccl.spfem.experiment``'s re-exports)
load their torch modules on first access."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

#: every command whose --help is checked; the config-driven ones build it from their config
COMMANDS = [
    [],
    ["train-metric"],
    ["spfem", "train"],
    ["experiment"],
    ["demo"],
    ["metric", "evaluate"],
    ["metric", "info"],
    ["groundtruth"],
    ["evaluate"],
    ["data", "index"],
    ["study", "create"],
    ["weights", "check"],
]

#: run in a fresh interpreter per command: what --help imported, and nothing before it
PROBE = """
import contextlib, io, json, sys
from asccl.cli import main
with contextlib.redirect_stdout(io.StringIO()) as out:
    try:
        main([*json.loads(sys.argv[1]), "--help"])
        code = None
    except SystemExit as done:
        code = done.code
print(json.dumps([code, "torch" in sys.modules, len(out.getvalue())]))
"""


@pytest.mark.parametrize("argv", COMMANDS, ids=lambda argv: " ".join(argv) or "asccl")
def test_help_imports_no_torch(argv):
    done = subprocess.run([sys.executable, "-c", PROBE, json.dumps(argv)],
                          capture_output=True, text=True, check=True)  # fmt: skip
    code, torch_loaded, length = json.loads(done.stdout.strip().splitlines()[-1])
    assert code == 0 and length > 0, f"--help exited {code} after {length} characters"
    assert not torch_loaded, f"asccl {' '.join(argv)} --help imported torch"


def test_lazy_names_still_import():
    """The names the packages give on access are the torch modules' own objects."""
    import asccl.metric as metric
    import asccl.spfem as spfem
    import asccl.spfem.experiment as experiment
    from asccl.metric.checkpoint import load_metric
    from asccl.metric.model import ASCCLMetric
    from asccl.spfem.results import generate_results
    from asccl.spfem.supervision import ASCCLSupervision

    assert metric.ASCCLMetric is ASCCLMetric and metric.load_metric is load_metric
    assert spfem.ASCCLSupervision is ASCCLSupervision
    assert experiment.generate_results is generate_results
    for module in (metric, spfem, experiment):
        assert set(module.__all__) <= set(dir(module))
        with pytest.raises(AttributeError, match="no attribute 'nope'"):
            module.nope  # noqa: B018


def test_torch_free_constants_match_their_modules():
    """The names a config checks against are those the torch modules register."""
    from asccl.evaluation import framing
    from asccl.evaluation.config import FID_PREPROCESS
    from asccl.metric import iresnet, sampler
    from asccl.metric.config import IRESNET_LAYERS, anchor_window
    from asccl.spfem.action_units import LAYOUTS
    from asccl.spfem.config import ICFACE_PARAMS, MODELS
    from asccl.spfem.generators import GENERATORS

    assert sorted(MODELS) == sorted(GENERATORS)
    assert sorted(ICFACE_PARAMS) == sorted(LAYOUTS)
    assert iresnet.IRESNET_LAYERS is IRESNET_LAYERS and sampler.anchor_window is anchor_window
    assert framing.FID_PREPROCESS is FID_PREPROCESS
