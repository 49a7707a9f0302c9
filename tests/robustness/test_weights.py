"""Robustness corpus of weights and checkpoint files: every command that takes one refuses a
bad file with one stderr line naming it, and changes nothing already written.

For each kind of file (an asccl metric ``.safetensors``, the authors' metric ``.pth``,
insightface's ``backbone.pth``, syncnet_python's ``syncnet_v2.model``, pytorch-fid's
Inception ``.pth``) the corpus is built at test time: a missing path, a folder, an empty
file, a truncated one, random bytes, another network's weights, the right keys with one
wrong shape, a NaN tensor, a malformed safetensors header, pickled code, and for metrics
bad configs in the header. Each is run through every command that takes that kind:
``asccl metric info``, ``asccl metric convert``, ``ASCCLLoss(checkpoint=...)``,
``asccl evaluate --arcface-weights/--syncnet-weights/--inception-weights`` and
``asccl train-metric --arcface-weights``.

Full-size files (wrong shape, NaN) are zeros in float16: the right keys and shapes at half
the bytes, built from models on the ``meta`` device (no initialisation).
"""

from __future__ import annotations

import io
import json
import random
import re
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from asccl.io import CheckpointError, read_safetensors_metadata, safetensors_bytes
from tests.robustness.conftest import one_line_error, snapshot

#: A key of each kind to corrupt (the error must name it).
TARGET = {
    "metric": "backbone.layer2.0.conv1.weight",
    "authors": "resnet50.layer2.0.conv1.weight",
    "arcface": "layer2.0.conv1.weight",
    "syncnet": "netcnnlip.4.weight",
    "inception": "Mixed_6b.branch7x7_2.conv.weight",
}
SUFFIX = {
    "metric": ".safetensors",
    "authors": ".pth",
    "arcface": ".pth",
    "syncnet": ".model",
    "inception": ".pth",
}
#: What the error line must say for each case (a regular expression).
EXPECT = {
    "missing": "no such (checkpoint )?file",
    "folder": "is a folder",
    "empty": r"empty file \(0 bytes\)",
    "truncated": "truncated",
    "truncated_legacy": "truncated",
    "random": "not a weights file|not a readable safetensors file",
    "other_network": r"keys do not match|neither resnet50\.\* nor mlp\.\*",
    "wrong_shapes": "wrong shape",
    "nan": "NaN values",
    "bad_header": "not a readable safetensors file",
    "pickled": "pickled Python objects",
    "no_asccl_header": "without an asccl metric header",
    "bad_config_type": r"bad config in its header: image_size = \"224\" is not an integer",
    "bad_config_key": r"bad config in its header: unknown keys \['colour'\]",
    "bad_config_range": r"bad config in its header: temperature = .* is not finite",
    "bad_config_json": "the config in its header is not valid JSON",
}
COMMON = ["missing", "folder", "empty", "truncated", "random", "other_network"]
COMMON += ["wrong_shapes", "nan", "bad_header"]
HEADER = ["no_asccl_header", "bad_config_type", "bad_config_key", "bad_config_range"]
HEADER += ["bad_config_json"]
CASES = {
    "metric": [*COMMON, *HEADER],
    "authors": [*COMMON, "pickled"],
    "arcface": [*COMMON, "pickled"],
    "syncnet": [*COMMON, "pickled", "truncated_legacy"],
    "inception": [*COMMON, "pickled"],
}
COMMANDS = {
    "metric": ["info", "convert", "loss"],
    "authors": ["convert", "loss"],
    "arcface": ["evaluate", "train-metric"],
    "syncnet": ["evaluate"],
    "inception": ["evaluate"],
}


# ------------------------------------------------------------------------------- the corpus


def _meta_model(kind: str) -> torch.nn.Module:
    with torch.device("meta"):
        if kind in ("metric", "authors"):
            from asccl.metric import ASCCLMetric

            return ASCCLMetric(backbone="iresnet18" if kind == "metric" else "iresnet50")
        if kind == "arcface":
            from asccl.metric.iresnet import build_iresnet

            return build_iresnet("iresnet18", with_head=True)
        if kind == "syncnet":
            from asccl.evaluation.syncnet import SyncNet

            return SyncNet()
        from asccl.evaluation.inception import FIDInceptionV3

        return FIDInceptionV3()


def _zeros(kind: str) -> dict[str, torch.Tensor]:
    """The kind's published key layout, every tensor zeros (floats in float16)."""
    state = {}
    for key, value in _meta_model(kind).state_dict().items():
        dtype = torch.float16 if value.is_floating_point() else value.dtype
        state[key] = torch.zeros(value.shape, dtype=dtype)
    if kind == "authors":  # the authors' names: resnet50.* and one mlp ModuleList
        mlp = {(s, layer): 3 * s + (layer // 2) * 2 for s in range(4) for layer in (0, 2)}
        renamed = {}
        for key, value in state.items():
            if key.startswith("backbone."):
                renamed["resnet50." + key.removeprefix("backbone.")] = value
            else:
                _, _, stage, layer, param = key.split(".")
                renamed[f"mlp.{mlp[int(stage), int(layer)]}.{param}"] = value
        state = renamed
    return state


def _metric_metadata(config: dict | str | None = None) -> dict[str, str]:
    from asccl.metric import MetricConfig

    if config is None:
        config = MetricConfig(backbone="iresnet18").to_dict()
    text = config if isinstance(config, str) else json.dumps(config)
    return {"format": "asccl-metric", "format_version": "1", "config": text}


def _serialise(kind: str, state: dict[str, torch.Tensor], **kwargs) -> bytes:
    if kind == "metric":
        return safetensors_bytes(state, kwargs.get("metadata", _metric_metadata()))
    buffer = io.BytesIO()
    torch.save(state, buffer, _use_new_zipfile_serialization=not kwargs.get("legacy", False))
    return buffer.getvalue()


class Payload:
    """Pickled code: building it would create ``marker``; weights_only loading must not."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def _build(kind: str, case: str, path: Path) -> Path:
    """Write ``case`` of ``kind`` at ``path`` (nothing for "missing")."""
    rng = random.Random(f"{kind}/{case}")
    target = TARGET[kind]
    if case == "missing":
        return path
    if case == "folder":
        path.mkdir()
        return path
    if case == "empty":
        path.write_bytes(b"")
    elif case in ("truncated", "truncated_legacy"):
        data = _serialise(kind, _zeros(kind), legacy=case == "truncated_legacy")
        path.write_bytes(data[: len(data) // 2])
    elif case == "random":
        path.write_bytes(rng.randbytes(4096))
    elif case == "other_network":
        other = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.BatchNorm2d(8))
        path.write_bytes(_serialise(kind, other.state_dict()))
    elif case in ("wrong_shapes", "nan"):
        state = _zeros(kind)
        if case == "nan":
            state[target].view(-1)[rng.randrange(state[target].numel())] = float("nan")
        else:
            shape = list(state[target].shape)
            state[target] = torch.zeros([shape[0] + 1, *shape[1:]], dtype=torch.float16)
        path.write_bytes(_serialise(kind, state))
    elif case == "bad_header":  # safetensors bytes (sniffed whatever the suffix), no JSON
        header = b"{not json" + b" " * 7
        path.write_bytes(len(header).to_bytes(8, "little") + header + bytes(64))
    elif case == "pickled":
        torch.save({"weight": torch.zeros(2), "x": Payload(path.with_suffix(".ran"))}, path)
    elif case == "no_asccl_header":  # header problems: the tensors are never read
        path.write_bytes(safetensors_bytes({"w": torch.zeros(2)}, {"format": "pt"}))
    elif case.startswith("bad_config"):
        config = json.loads(_metric_metadata()["config"])
        if case == "bad_config_type":  # a string where a number belongs: a TypeError before
            config["image_size"] = "224"
        elif case == "bad_config_key":
            config["colour"] = "blue"
        elif case == "bad_config_range":
            config["temperature"] = float("nan")
        if case == "bad_config_json":
            config = "{'backbone': 'iresnet18'"
        path.write_bytes(safetensors_bytes({"w": torch.zeros(2)}, _metric_metadata(config)))
    else:
        raise AssertionError(case)
    return path


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Callable[[str, str], Path]:
    """``corpus(kind, case)`` -> the bad file, written on first use, shared by commands."""
    root = tmp_path_factory.mktemp("weights_corpus")
    made: dict[tuple[str, str], Path] = {}

    def get(kind: str, case: str) -> Path:
        if (kind, case) not in made:
            folder = root / kind / case
            folder.mkdir(parents=True)
            made[kind, case] = _build(kind, case, folder / f"weights{SUFFIX[kind]}")
        return made[kind, case]

    return get


PARAMS = [
    pytest.param(kind, case, command, id=f"{kind}-{case}-{command}")
    for kind, commands in COMMANDS.items()
    for command in commands
    for case in CASES[kind]
]


# ------------------------------------------------------------------------------ the commands


@pytest.mark.parametrize(("kind", "case", "command"), PARAMS)
def test_bad_weights_file_is_one_line_naming_it(kind, case, command, corpus, tmp_path, capsys):
    file = corpus(kind, case)
    before = snapshot(file.parent)
    work = tmp_path / "work"  # what an earlier run left: must stay as it was
    (work / "out").mkdir(parents=True)
    (work / "out" / "report.txt").write_text("an earlier run's report\n")
    (work / "results").mkdir()
    (work / "converted.safetensors").write_bytes(b"an earlier conversion")
    done = snapshot(work)

    if command == "loss":
        from asccl.losses import ASCCLLoss

        with pytest.raises(CheckpointError) as info:
            ASCCLLoss(checkpoint=file)
        line = str(info.value)
        assert "\n" not in line and str(file) in line, line
    else:
        argv = {
            "info": ["metric", "info", file],
            "convert": ["metric", "convert", file, work / "converted.safetensors"],
            "train-metric": ["train-metric", "--data", work / "no-data", "--out", work / "out",
                             "--arcface-weights", file, "--metric.backbone", "iresnet18",
                             "--device", "cpu", "--workers", "0"],
        }.get(command)  # fmt: skip
        if command == "evaluate":
            metric = {"arcface": "csim", "syncnet": "lse", "inception": "fid"}[kind]
            argv = ["evaluate", "--results", work / "results", "--out", work / "out",
                    "--metrics", f'["{metric}"]', "--arcface-backbone", "iresnet18",
                    f"--{kind}-weights", file, "--device", "cpu"]  # fmt: skip
        line = one_line_error(argv, capsys, file)
    assert re.search(EXPECT[case], line), line
    if case in ("wrong_shapes", "nan"):
        assert TARGET[kind].split(".", 1)[1] in line, line  # the first bad key is named
    assert snapshot(file.parent) == before
    assert snapshot(work) == done
    assert not file.with_suffix(".ran").exists()  # the pickled payload never ran


def test_the_corpus_is_what_it_claims(corpus):
    """The full-size cases differ from a loadable file only where they should: without the
    corruption, the same bytes load (so the errors above are about the corruption)."""
    from asccl.evaluation.syncnet import load_syncnet

    state = _zeros("syncnet")
    good = corpus("syncnet", "nan").with_name("good.model")
    good.write_bytes(_serialise("syncnet", state))
    try:
        load_syncnet(good)
    finally:
        good.unlink()
    assert torch.load(corpus("syncnet", "wrong_shapes"), weights_only=True).keys() == state.keys()
    metadata = read_safetensors_metadata(corpus("metric", "bad_config_type"))
    assert json.loads(metadata["config"])["image_size"] == "224"
