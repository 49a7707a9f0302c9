"""``train_metric`` end to end on a tiny stage-1 output (train on W901, validate on W903):
it learns, it logs, a resumed run ends bit for bit as an uninterrupted one (also with other
workers), a resume with other maths is refused in one line, two DDP processes equal one, a
broken checkpoint falls back to the previous one, and the CLI's errors are one line. (The
SIGKILL-and-resume test of the training core is tests/training/test_loop.py.)"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from asccl.cli import main
from asccl.config import ConfigError
from asccl.metric import ASCCLMetric, MetricConfig, load_metric
from asccl.training.checkpoints import load_checkpoint
from asccl.training.config import TrainConfig
from asccl.training.dataset import split_by_speaker, to_model_input
from asccl.training.history import read_log
from asccl.training.progress import Progress
from asccl.training.sampling import EpochSampler
from asccl.training.train_metric import train_metric

SMALL = MetricConfig(backbone="iresnet18", image_size=64, num_anchors=(8, 4, 4, 2))
SETTINGS = {
    "init": "random", "val_speakers": ["W903"], "batch_size": 4, "lr": 1e-3, "seed": 0,
    "workers": 0, "max_steps": 4, "checkpoint_every": 2, "val_every": 0,
    "val_batches": 1, "log_every": 1, "device": "cpu",
}  # fmt: skip
#: the shared run below: validation every 3 steps, BatchNorm on its running statistics
RUN = {"max_steps": 4, "checkpoint_every": 2, "val_every": 3, "batchnorm": "frozen"}


def config(data: Path, out: Path, **changes) -> TrainConfig:
    return TrainConfig(data=data, out=out, metric=SMALL, **{**SETTINGS, **changes})


def write_toml(path: Path, data: Path, **changes) -> Path:
    """The same settings as :func:`config`, as a TOML file for ``asccl train-metric``."""
    settings = {**SETTINGS, "data": str(data), **changes}
    lines = [f"{key} = {json.dumps(value)}" for key, value in settings.items()]
    lines += ["", "[metric]", 'backbone = "iresnet18"', "image_size = 64",
              "num_anchors = [8, 4, 4, 2]"]  # fmt: skip
    path.write_text("\n".join(lines) + "\n")
    return path


def run_cli(args: list[str], log: Path, env: dict[str, str] | None = None) -> str:
    """Run a command to completion; its output (stdout + stderr) goes to ``log``."""
    with log.open("w") as handle:
        result = subprocess.run(args, stdout=handle, stderr=subprocess.STDOUT, env=env,
                                cwd=log.parent, timeout=300)  # fmt: skip
    text = log.read_text()
    assert result.returncode == 0, f"{' '.join(args)} failed:\n{text[-4000:]}"
    return text


def assert_same_tensors(a: Path, b: Path) -> None:
    first, second = load_file(str(a)), load_file(str(b))
    assert first.keys() == second.keys()
    for key, value in first.items():
        assert torch.equal(value, second[key]), key


def log_rows(out: Path, *columns: str) -> list[tuple]:
    """``(step, split, *columns)`` of every row of ``out/log.csv``."""
    return [(r["step"], r["split"], *(r[c] for c in columns)) for r in read_log(out / "log.csv")]


LOSS_COLUMNS = ("loss", "positive_cosine", "negative_cosine", "gap")


@pytest.fixture(scope="module")
def run(stage1_64, tmp_path_factory) -> Path:
    """One in-process run of 4 steps (checkpoints at 2 and 4, validation at 0, 3 and 4)."""
    out = tmp_path_factory.mktemp("run")
    train_metric(config(stage1_64, out, **RUN))
    return out


def test_one_training_step_lowers_the_loss_of_its_batch(stage1_64, tmp_path):
    final = train_metric(config(stage1_64, tmp_path, max_steps=1, batchnorm="frozen"))
    # Step 1's batch and regions, drawn as the trainer draws them: the epoch's first
    # shuffled items, regions from the generator seeded with seed + 1, weights after
    # torch.manual_seed(seed).
    train_set, _ = split_by_speaker(stage1_64, ["W903"])
    items = list(EpochSampler(len(train_set), seed=0))[:4]
    pairs = [train_set[i] for i in items]
    neutral, emotional = (torch.stack([pair[side] for pair in pairs]) for side in (0, 1))
    x, y = (to_model_input(b, size=64, flip_channels=False, channels_last=False)
            for b in (neutral, emotional))  # fmt: skip
    torch.manual_seed(0)
    before = ASCCLMetric(SMALL).eval()  # frozen BatchNorm: eval mode is the training forward
    after = load_metric(final).eval()
    regions = before.sample_regions(4, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        loss_before = before(x, y, regions=regions).loss.item()
        loss_after = after(x, y, regions=regions).loss.item()
    [step_1] = [r for r in read_log(tmp_path / "log.csv") if r["split"] == "train"]
    # the trainer's own batch: log.csv keeps 6 significant digits (off by <= 5e-6 relative)
    # of the same float32 forward (same batch, regions and kernels; ~1e-7 relative)
    assert step_1["loss"] == pytest.approx(loss_before, rel=5e-6 + 1e-6)
    # an Adam step moves every weight by ~lr towards lower loss: measured 0.58x on CPU
    assert loss_after < 0.9 * loss_before


def test_the_log_has_train_and_validation_rows_and_curves(run):
    assert [r[:2] for r in log_rows(run)] == [
        (0, "val"), (1, "train"), (2, "train"), (3, "train"), (3, "val"), (4, "train"),
        (4, "val"),
    ]  # fmt: skip
    for row in read_log(run / "log.csv"):
        assert math.isfinite(row["loss"]) and row["loss"] > 0
        stages = [row[f"{side}_cosine_{i}"] for side in ("positive", "negative")
                  for i in range(1, 5)]  # fmt: skip
        assert all(-1 <= c <= 1 for c in stages)
        assert row["gap"] == pytest.approx(row["positive_cosine"] - row["negative_cosine"],
                                           abs=1e-5)  # fmt: skip
        if row["split"] == "train":
            assert row["pairs_per_s"] > 0 and row["lr"] == 1e-3
        else:
            assert row["pairs_per_s"] is None and row["lr"] is None
    curves = (run / "curves.png").read_bytes()
    assert curves.startswith(b"\x89PNG\r\n\x1a\n") and len(curves) > 10_000
    saved = json.loads((run / "config.json").read_text())
    assert saved["max_steps"] == 4 and saved["metric"]["num_anchors"] == [8, 4, 4, 2]
    assert sorted(os.listdir(run / "checkpoints")) == ["step_00000002", "step_00000004"]


def test_a_broken_newest_checkpoint_resumes_from_the_one_before(run, stage1_64, tmp_path, caplog):
    out = Path(shutil.copytree(run, tmp_path / "run"))
    newest, older = (out / "checkpoints" / f"step_0000000{n}" for n in (4, 2))
    metric_file = newest / "metric.safetensors"
    metric_file.write_bytes(metric_file.read_bytes()[:1000])
    (out / "metric.safetensors").unlink()
    with caplog.at_level(logging.INFO, logger="asccl.training"):
        final = train_metric(config(stage1_64, out, **RUN))
    warnings = [m for m in caplog.messages if m.startswith(f"skipping checkpoint {newest}: ")]
    assert len(warnings) == 1 and "it does not load" in warnings[0]
    assert f"resuming from {older} (step 2)" in caplog.messages
    assert_same_tensors(final, run / "metric.safetensors")  # steps 3 and 4 again, exactly
    assert log_rows(out, *LOSS_COLUMNS) == log_rows(run, *LOSS_COLUMNS)  # no step twice
    assert load_file(str(newest / "metric.safetensors"))  # rewritten whole


def test_running_a_finished_run_again_changes_nothing(run, stage1_64, tmp_path, caplog):
    out = Path(shutil.copytree(run, tmp_path / "run"))
    rows = (out / "log.csv").read_text()
    with caplog.at_level(logging.INFO, logger="asccl.training"):
        final = train_metric(config(stage1_64, out, **RUN))
    assert f"resuming from {out / 'checkpoints' / 'step_00000004'} (step 4)" in caplog.messages
    assert not any(" validation: loss" in m for m in caplog.messages)
    assert (out / "log.csv").read_text() == rows  # the final validation is not logged twice
    assert_same_tensors(final, run / "metric.safetensors")


@pytest.mark.parametrize(
    ("change", "named"),
    [({"batch_size": 2}, ["batch_size 4 -> 2"]), ({"lr": 2e-3}, ["lr 0.001 -> 0.002"]),
     ({"precision": "float64"}, ['precision "float32" -> "float64"']),
     ({"seed": 1, "batchnorm": "train"}, ['batchnorm "frozen" -> "train"', "seed 0 -> 1"])],
)  # fmt: skip
def test_a_resume_with_other_maths_is_refused_naming_the_keys(
    run, stage1_64, tmp_path, change, named
):
    out = Path(shutil.copytree(run, tmp_path / "run"))
    before = {p: p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}
    newest = out / "checkpoints" / "step_00000004"
    with pytest.raises(ConfigError, match=f"^{re.escape(str(newest))}: cannot resume") as err:
        train_metric(config(stage1_64, out, **{**RUN, **change}))
    line = str(err.value)
    assert "\n" not in line and line.endswith("use --resume false to train from scratch, "
                                              "or another --out")  # fmt: skip
    assert all(key in line for key in named), line
    assert "workers" not in line and "max_steps" not in line
    assert {p: p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()} == before


def test_a_resume_with_other_workers_and_cadences_ends_bit_for_bit(run, stage1_64, tmp_path):
    """Workers, checkpoint cadence and more epochs move neither the data order nor the
    maths: resumed from step 2 with 2 DataLoader workers, the run ends as the uninterrupted
    one, and logs the same rows. (``threads`` may change too, but other CPU kernels round
    float32 sums in another order: the same maths, not the same bits.)"""
    out = Path(shutil.copytree(run, tmp_path / "run"))
    shutil.rmtree(out / "checkpoints" / "step_00000004")
    (out / "metric.safetensors").unlink()
    harmless = {"workers": 2, "checkpoint_every": 1, "keep_checkpoints": 1, "epochs": 3}
    final = train_metric(config(stage1_64, out, **{**RUN, **harmless}))
    assert_same_tensors(final, run / "metric.safetensors")
    assert log_rows(out, *LOSS_COLUMNS) == log_rows(run, *LOSS_COLUMNS)
    assert sorted(os.listdir(out / "checkpoints")) == ["step_00000004"]


@pytest.mark.slow
def test_compile_true_puts_the_training_forward_under_dynamo(stage1_64, tmp_path, monkeypatch):
    """``compile = true`` compiles the code the metric runs (``compile_backbone``), and a
    compiled step trains the same weights. Dynamo's ``eager`` backend stands in for inductor
    (minutes of C++ compilation on CPU): graph capture alone, the same kernels, so the
    weights after the step equal the uncompiled run's exactly."""
    from torch._dynamo.utils import counters

    calls = []
    original = ASCCLMetric.compile_backbone

    def eager_backend(self, **options):
        calls.append(options)
        return original(self, backend="eager")

    monkeypatch.setattr(ASCCLMetric, "compile_backbone", eager_backend)
    changes = {"max_steps": 1, "batchnorm": "frozen"}
    plain = train_metric(config(stage1_64, tmp_path / "plain", **changes))
    assert calls == []
    torch._dynamo.reset()
    counters.clear()
    try:
        compiled = train_metric(config(stage1_64, tmp_path / "compiled", compile=True, **changes))
        assert calls == [{}] and counters["stats"]["unique_graphs"] >= 1
    finally:
        torch._dynamo.reset()
    assert_same_tensors(compiled, plain)


def test_a_float64_run_trains_and_resumes_in_float64(stage1_64, tmp_path):
    """Weights, optimiser state and inputs in float64; a resumed run reads its checkpoint's
    float64 weights as saved (``load_metric`` would round them to float32) and ends bit for
    bit as the uninterrupted run."""
    changes = {"max_steps": 2, "checkpoint_every": 1, "batchnorm": "frozen",
               "precision": "float64"}  # fmt: skip
    straight = train_metric(config(stage1_64, tmp_path / "straight", **changes))
    weights = load_file(str(straight))
    assert {v.dtype for v in weights.values()} == {torch.float64, torch.int64}
    step_1 = load_checkpoint(tmp_path / "straight" / "checkpoints" / "step_00000001")
    moments = [v for v in step_1.optimizer_states["metric"]["state"][0].values() if v.ndim > 0]
    assert moments and all(v.dtype == torch.float64 for v in moments)
    resumed = Path(shutil.copytree(tmp_path / "straight", tmp_path / "resumed"))
    shutil.rmtree(resumed / "checkpoints" / "step_00000002")
    (resumed / "metric.safetensors").unlink()
    assert_same_tensors(train_metric(config(stage1_64, resumed, **changes)), straight)


@pytest.mark.slow
def test_a_resume_at_an_epoch_end_with_grad_accum_is_exact(stage1_64, tmp_path):
    """98 training pairs, batch 36 in 2 micro-batches of 18: an epoch is 2 steps and leaves
    a 5th micro-batch over. Its gradient must not leak into the next epoch's first step (a
    run resumed from the epoch-end checkpoint never computed it)."""
    changes = {"batch_size": 36, "grad_accum": 2, "max_steps": 3, "checkpoint_every": 100,
               "batchnorm": "frozen"}  # fmt: skip
    straight = train_metric(config(stage1_64, tmp_path / "straight", **changes))
    resumed = Path(shutil.copytree(tmp_path / "straight", tmp_path / "resumed"))
    epoch_end = load_checkpoint(resumed / "checkpoints" / "step_00000002")
    assert epoch_end.progress == Progress(step=2, epoch=1, batch_in_epoch=0)
    shutil.rmtree(resumed / "checkpoints" / "step_00000003")
    assert_same_tensors(train_metric(config(stage1_64, resumed, **changes)), straight)


@pytest.mark.slow
def test_two_ddp_processes_train_as_one_with_the_same_global_batch(stage1_64, tmp_path):
    """``torchrun --nproc_per_node 2`` on CPU (gloo), 2 images per process, against one
    process with the whole batch of 4, both on one thread per process, in float64
    (``precision = "float64"``): 3 Adam steps of lr 1e-4 must agree to 1e-8 per weight.

    BatchNorm is ``frozen``: in train mode each process would normalise with the
    statistics of its own 2 images (one process: of all 4), which changes the loss; only
    frozen (or SyncBatchNorm, CUDA only here) BN makes the runs comparable.

    The tolerance, from arithmetic. The runs compute the same sums in another order (the
    batch split, the all-reduce), so their gradients differ by rounding only: a float64
    sum of n terms is off by at most n * u * sum|terms| (u = 2**-53 = 1.1e-16); the
    longest reductions here run over n = 4 * 32 * 32 = 4096 positions and the gradients
    are at most G = 0.4 (the largest at step 1, measured), so |dg| <= 4096 * u * G = 2e-13
    (measured: 2e-15). Adam's step lr * m / (sqrt(v) + eps) has slope at most 1 / eps in
    the gradient, so a step differs by at most lr * |dg| / eps = 1e-4 * 2e-13 / 1e-8 =
    2e-9; steps 2 and 3 add the earlier differences fed back through the gradients: 1e-8
    in all (measured worst weight: 6e-15). In float32 (u = 6e-8) the same slope turns the
    rounding on near-zero gradients into a visible share of a whole step (~lr), which is
    why this comparison is made in float64.

    A real mismatch is far above it: with ``batchnorm = "train"`` (per-process statistics)
    97 % of the weights differ by > 1e-6 (measured); a wrong split or unshared regions
    change the gradients by O(|g|), hence the steps by O(lr); even gradients summed
    instead of averaged (a scale Adam nearly ignores) move weights by lr * eps / (2 |g|),
    up to 2e-5 here (measured at step 1).
    """
    lr, steps, tolerance = 1e-4, 3, 1e-8
    changes = {"max_steps": steps, "checkpoint_every": 100, "lr": lr, "batchnorm": "frozen",
               "precision": "float64"}  # fmt: skip
    toml = write_toml(tmp_path / "train.toml", stage1_64, **changes)
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone",
                "--nproc_per_node", "2", "-m", "asccl", "train-metric"]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # 2 processes on 2 cores
    run_cli([*torchrun, "--config", str(toml), "--out", str(tmp_path / "ddp")],
            tmp_path / "ddp.log", env=env)  # fmt: skip
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the same CPU kernels as each DDP process
    try:
        one = train_metric(config(stage1_64, tmp_path / "one", **changes))
    finally:
        torch.set_num_threads(threads)
    ddp, single = load_file(str(tmp_path / "ddp" / "metric.safetensors")), load_file(str(one))
    torch.manual_seed(0)
    initial = ASCCLMetric(SMALL).state_dict()
    assert ddp.keys() == single.keys()
    moved = []
    for key, value in single.items():
        assert ddp[key].dtype == value.dtype
        assert value.dtype == (torch.float64 if initial[key].is_floating_point() else torch.int64)
        torch.testing.assert_close(ddp[key], value, atol=tolerance, rtol=0,
                                   msg=lambda m, key=key: f"{key}: {m}")  # fmt: skip
        if value.is_floating_point():
            moved.append((value - initial[key]).abs().flatten())
    assert torch.cat(moved).mean() > lr / 2  # the runs trained (Adam: ~lr per weight and step)


@pytest.mark.parametrize(
    ("option", "toml_metric", "named", "valid"),
    [
        (["--bogus-key", "1"], "", "['bogus_key'] for TrainConfig", "'batch_size', "),
        (["--metric.bogus", "1"], "", "['bogus'] for MetricConfig", "'num_anchors', "),
        ([], "bogus = 1\n", "['bogus'] for MetricConfig", "'num_anchors', "),
    ],
)
def test_unknown_config_keys_are_one_line_errors(
    tmp_path, capsys, option, toml_metric, named, valid
):
    toml = tmp_path / "train.toml"
    toml.write_text(f'init = "random"\nbatch_size = 4\n\n[metric]\nimage_size = 64\n{toml_metric}')
    assert main(["train-metric", "--config", str(toml), *option]) == 2
    captured = capsys.readouterr()
    [line] = captured.err.splitlines()
    assert line.startswith("asccl: error: ") and f"unknown key(s) {named}; valid: [" in line
    assert valid in line and captured.out == ""


def test_missing_arcface_weights_fail_first_with_where_to_get_them(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("ASCCL_ARCFACE_WEIGHTS", raising=False)
    # no data either: the weights are checked before the (slow, on MEAD) data scan
    args = ["train-metric", "--data", str(tmp_path / "no-data"), "--out", str(tmp_path / "out"),
            "--init", "arcface", "--metric.backbone", "iresnet18"]  # fmt: skip
    assert main(args) == 2
    [line] = capsys.readouterr().err.splitlines()
    assert line.startswith("asccl: error: ")
    assert "backbone.pth" in line and "--arcface-weights" in line
    assert "ASCCL_ARCFACE_WEIGHTS" in line
    missing = tmp_path / "weights" / "backbone.pth"
    assert main([*args, "--arcface-weights", str(missing)]) == 2
    [line] = capsys.readouterr().err.splitlines()
    assert line.startswith(f"asccl: error: {missing}: no such file") and "backbone.pth" in line
    assert not (tmp_path / "out").exists()
