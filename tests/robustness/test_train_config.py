"""Robustness corpus of ``asccl train-metric``'s settings: every nonsense number or path
(from the command line or a TOML file) is refused before anything is read or written, in
one line naming the key, and an existing run in ``--out`` is left exactly as it was.

The existing run is a metric checkpoint, ``config.json`` and ``log.csv`` written by the
project's own writers (the failures happen before a run would read them).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from asccl.config import save_config
from asccl.metric import ASCCLMetric, MetricConfig, save_metric
from asccl.training.config import TrainConfig
from tests.robustness.conftest import one_line_error, one_line_error_subprocess, snapshot

SMALL = ["--metric.backbone", "iresnet18", "--metric.image_size", "64",
         "--metric.num_anchors", "[8, 4, 4, 2]"]  # fmt: skip


@pytest.fixture(scope="module")
def existing(tmp_path_factory) -> Path:
    """An earlier run's ``out`` folder (read only)."""
    out = tmp_path_factory.mktemp("train_config") / "run"
    metric = MetricConfig(backbone="iresnet18", image_size=64, num_anchors=(8, 4, 4, 2))
    save_metric(ASCCLMetric(metric), out / "metric.safetensors")
    save_config(TrainConfig(out=out, metric=metric, init="random"), out / "config.json")
    (out / "log.csv").write_text("step,epoch,split,loss\n0,0,val,2.5\n")
    return out


def refused(existing: Path, tmp_path: Path, capsys, options: list[str], *names: str) -> str:
    """``asccl train-metric`` on ``existing`` with ``options``: one line naming ``names``,
    the run unchanged; the line is returned."""
    before = snapshot(existing)
    argv = ["train-metric", "--init", "random", "--data", tmp_path / "data", "--out", existing,
            "--device", "cpu", *SMALL, *options]  # fmt: skip
    line = one_line_error(argv, capsys, *names)
    assert snapshot(existing) == before
    return line


BAD_NUMBERS = [
    (["--batch-size", "0"], "batch_size must be an integer >= 1, got 0"),
    (["--batch-size", "-4"], "batch_size must be an integer >= 1, got -4"),
    (["--batch-size", "2.5"], "batch_size must be int, got 2.5"),
    (["--batch-size", "true"], "batch_size must be int, got True"),
    (["--batch-size", "many"], "batch_size must be int, got 'many'"),
    (["--grad-accum", "0"], "grad_accum must be an integer >= 1, got 0"),
    (["--batch-size", "6", "--grad-accum", "4"], "batch_size must be divisible by grad_accum (4)"),
    (["--epochs", "0"], "epochs must be an integer >= 1, got 0"),
    (["--epochs", "-1"], "epochs must be an integer >= 1, got -1"),
    (["--max-steps", "0"], "max_steps must be an integer >= 1 (or unset: all epochs), got 0"),
    (["--lr", "0"], "lr must be a finite number > 0, got 0.0"),
    (["--lr", "-1e-4"], "lr must be a finite number > 0, got -0.0001"),
    (["--lr", "nan"], "lr must be a finite number > 0, got nan"),
    (["--lr", "inf"], "lr must be a finite number > 0, got inf"),
    (["--lr", "fast"], "lr must be float, got 'fast'"),
    (["--seed", "-1"], "seed must be in [0, 2**63), got -1"),
    (["--workers", "-1"], "workers must be an integer >= 0, got -1"),
    (["--checkpoint-every", "-1"], "checkpoint_every must be an integer >= 0, got -1"),
    (["--keep-checkpoints", "-2"], "keep_checkpoints must be an integer >= 0, got -2"),
    (["--val-every", "-1"], "val_every must be an integer >= 0, got -1"),
    (["--val-batches", "-1"], "val_batches must be an integer >= 0, got -1"),
    (["--log-every", "0"], "log_every must be an integer >= 1, got 0"),
    (["--device", "banana"], 'device must be "auto", "cpu", "mps", "cuda" or "cuda:N"'),
    (["--precision", "float16"], "precision must be one of ['float32', 'float64']"),
    (["--precision", "float64", "--amp", "bf16"], 'precision "float64" cannot be combined'),
    (["--val-speakers", '["W903", 7]'], "val_speakers[1] must be str, got 7"),
    (["--val-speakers", "[]"], "val_speakers is empty: name at least one held-out speaker"),
    (["--emotions", "[1]"], "emotions[0] must be str, got 1"),
    (["--metric.image-size", "0"], "metric: image_size must be a multiple of 16, got 0"),
    (["--metric.image-size", "100"], "metric: image_size must be a multiple of 16, got 100"),
    (["--metric.image-size", "32"], "metric: image_size 32 is too small for num_anchors"),
    (["--metric.num-anchors", "[8, 4, 4]"], "metric: num_anchors must have 4 items"),
    (["--metric.temperature", "0"], "metric: temperature must be a finite number > 0, got 0.0"),
    (["--metric.temperature", "nan"], "metric: temperature must be a finite number > 0, got nan"),
    (["--metric.loss-scale", "-1"], "metric: loss_scale must be a finite number > 0, got -1.0"),
    (["--metric.adaptive-threshold", "inf"], "metric: adaptive_threshold must be a finite"),
    (["--metric.head-reduction", "0"], "metric: head_reduction must be an integer >= 1, got 0"),
    (["--metric.num-random-negatives", "0"], "metric: num_random_negatives must be an integer"),
]


@pytest.mark.parametrize(("options", "message"), BAD_NUMBERS, ids=lambda v: " ".join(v)
                         if isinstance(v, list) else None)  # fmt: skip
def test_a_bad_number_is_one_line_naming_its_key(existing, tmp_path, capsys, options, message):
    line = refused(existing, tmp_path, capsys, options, message)
    assert line.startswith("asccl: error: command line: ")


def test_a_cuda_device_the_machine_lacks_is_one_line(existing, tmp_path, capsys):
    refused(existing, tmp_path, capsys, ["--device", "cuda:99"],
            "asccl: error: device 'cuda:99': this machine has ")  # fmt: skip


def test_epochs_0_writes_no_metric(tmp_path, capsys):
    """Refused before anything exists: no "untrained metric" as if trained."""
    out = tmp_path / "new"
    argv = ["train-metric", "--init", "random", "--data", tmp_path / "data", "--out", out,
            "--epochs", "0"]  # fmt: skip
    one_line_error(argv, capsys, "epochs must be an integer >= 1, got 0")
    assert not out.exists()


def test_bad_numbers_in_a_config_file_name_the_file_and_key(existing, tmp_path, capsys):
    toml = tmp_path / "train.toml"
    for setting, message in [
        ("grad_accum = -1", "grad_accum must be an integer >= 1, got -1"),
        ("data = 5", "data must be a path (a string), got 5"),
        ("[metric]\nimage_size = 24", "metric: image_size must be a multiple of 16, got 24"),
    ]:
        toml.write_text(f'init = "random"\nout = "{existing}"\n{setting}\n')
        before = snapshot(existing)
        one_line_error(["train-metric", "--config", toml], capsys, f"{toml}: {message}")
        assert snapshot(existing) == before


@pytest.mark.parametrize("key", ["data", "out", "arcface-weights"])
def test_an_empty_path_is_refused(existing, tmp_path, capsys, key):
    refused(existing, tmp_path, capsys, [f"--{key}="],
            f"{key.replace('-', '_')} must be a path, got an empty string")  # fmt: skip


def test_a_number_as_a_path_is_that_folder(existing, tmp_path, capsys, monkeypatch):
    """``--out 5`` is the folder ``5`` (it was the int 5, and a TypeError deep inside)."""
    monkeypatch.chdir(tmp_path)
    line = one_line_error(["train-metric", "--init", "random", "--data", "7", "--out", "5"],
                          capsys, "7: ")  # fmt: skip
    assert line.startswith("asccl: error: 7: ")  # the data folder, by the name typed
    assert not (tmp_path / "5").exists()


@pytest.mark.parametrize("key", ["data", "out", "arcface-weights"])
def test_a_path_that_is_not_utf8_is_one_ascii_line(existing, tmp_path, capsys, key):
    undecodable = os.fsdecode(b"caf\xe9")  # what Python makes of Latin-1 bytes in argv
    name = key.replace("-", "_")
    options = [f"--{key}", tmp_path / undecodable]
    line = refused(existing, tmp_path, capsys, options, f"{name}: the path ", "\\udce9' is not")
    line.encode("ascii")


@pytest.mark.slow
def test_non_utf8_bytes_in_argv_are_one_line_from_the_real_process(existing, tmp_path):
    before = snapshot(existing)
    latin1 = os.fsdecode(os.fsencode(tmp_path) + b"/caf\xe9")  # passed on as the raw bytes
    line = one_line_error_subprocess(
        ["train-metric", "--init", "random", "--data", latin1, "--out", existing],
        tmp_path, "data: the path ", "caf\\udce9' is not valid UTF-8",
    )  # fmt: skip
    assert line.isascii()
    assert snapshot(existing) == before
