"""train_spfem: the loop, the ASCCL term, an end-to-end resume (also with other workers),
resumes with other maths refused, weight 0 == baseline. (The SIGKILL-and-resume test of
the training core they share is tests/training/test_loop.py.)"""

from __future__ import annotations

import csv
import dataclasses
from pathlib import Path

import cv2
import pytest
import torch
from safetensors.torch import load_file
from tests.robustness.conftest import snapshot
from tests.spfem.test_data import write_stage1

from asccl.cli import main
from asccl.config import ConfigError, load_config
from asccl.io import CheckpointError
from asccl.metric import save_metric
from asccl.spfem.config import SPFEMTrainConfig
from asccl.spfem.generators.checkpoint import load_generator, save_generator
from asccl.spfem.generators.ganmut import GANmut, GANmutConfig
from asccl.spfem.supervision import ASCCLSupervision
from asccl.spfem.train import train_spfem

TINY = GANmutConfig(image_size=32, g_channels=8, g_res_blocks=1, d_channels=8, d_layers=3,
                    num_random=1)  # fmt: skip


@pytest.fixture(scope="module")
def stage1(tmp_path_factory) -> Path:
    return write_stage1(tmp_path_factory.mktemp("spfem_train_stage1"))


@pytest.fixture(scope="module")
def metric_file(tmp_path_factory, small_metric) -> Path:
    return save_metric(small_metric, tmp_path_factory.mktemp("metric") / "m.safetensors")


def tiny_config(stage1: Path, out: Path, **changes) -> SPFEMTrainConfig:
    settings = dict(model="ganmut", data=stage1, out=out, steps=4, batch_size=4, n_critic=2,
                    image_size=32, workers=0, device="cpu", sample_every=2,
                    checkpoint_every=2, log_every=1, ganmut=TINY)  # fmt: skip
    settings.update(changes)
    return SPFEMTrainConfig(**settings)


def weights(path: Path) -> dict[str, torch.Tensor]:
    return load_file(str(path))


def assert_same_weights(a: Path, b: Path) -> None:
    wa, wb = weights(a), weights(b)
    assert wa.keys() == wb.keys()
    different = [k for k in wa if not torch.equal(wa[k], wb[k])]
    assert not different, f"{len(different)} tensors differ, e.g. {different[:3]}"


def test_a_run_writes_its_outputs_and_loads_back(stage1, tmp_path):
    final = train_spfem(tiny_config(stage1, tmp_path / "run"))
    assert final == tmp_path / "run" / "generator.safetensors" and final.is_file()
    with (tmp_path / "run" / "log.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert [int(r["step"]) for r in rows] == [1, 2, 3, 4]
    for column in ("d_adv", "d_gp", "d_cls", "g_adv", "g_cls", "g_cycle", "g_identity",
                   "asccl", "asccl_weight", "g_total", "total"):  # fmt: skip
        assert column in rows[0]
    assert all(r["asccl"] == "" and float(r["asccl_weight"]) == 0 for r in rows)
    samples = sorted((tmp_path / "run" / "samples").glob("*.png"))
    assert [p.name for p in samples] == [f"step_0000000{i}.png" for i in (0, 2, 4)]
    grid = cv2.imread(str(samples[-1]))
    # labelled sheet: 44 px header + rows, 88 px label margin + columns; 32 px frames shown
    # 3x (96 px tiles); 2 emotions: source | 2 outputs | target
    assert grid.shape == (44 + 2 * 96, 88 + (1 + 2 + 1) * 96, 3)
    assert (tmp_path / "run" / "curves.png").is_file()
    steps = sorted(p.name for p in (tmp_path / "run" / "checkpoints").iterdir())
    assert steps == ["step_00000002", "step_00000004"]

    model = load_generator(final)
    assert isinstance(model, GANmut) and model.config == TINY and not model.training
    again_file = save_generator(model, tmp_path / "again.safetensors")
    assert again_file.read_bytes() == final.read_bytes()  # the same weights, the same bytes
    again = load_generator(tmp_path / "run")  # a run folder: its final file
    batch = {"source": torch.zeros(2, 3, 32, 32), "target_emotion": torch.tensor([1, 2])}
    assert torch.equal(model.translate(batch), again.translate(batch))
    with pytest.raises(CheckpointError, match="no such checkpoint file"):
        load_generator(tmp_path / "nothing")


def test_stopping_and_resuming_equals_an_uninterrupted_run(stage1, tmp_path):
    # 6 batches per epoch, 2 per step: steps 1-4 cross an epoch boundary
    whole = train_spfem(tiny_config(stage1, tmp_path / "whole"))
    train_spfem(tiny_config(stage1, tmp_path / "parts", steps=3, checkpoint_every=0))
    resumed = train_spfem(tiny_config(stage1, tmp_path / "parts"))
    assert_same_weights(whole, resumed)
    with (tmp_path / "parts" / "log.csv").open() as handle:
        assert [int(r["step"]) for r in csv.DictReader(handle)] == [1, 2, 3, 4]
    # resume = false starts over (and so ends the same too)
    again = train_spfem(tiny_config(stage1, tmp_path / "parts", resume=False))
    assert_same_weights(whole, again)


def test_a_resume_with_other_maths_is_refused_naming_the_keys(stage1, tmp_path):
    out = tmp_path / "run"
    train_spfem(tiny_config(stage1, out, steps=2))
    before = snapshot(out)
    for change, keys in (
        ({"batch_size": 2}, ["batch_size 4 -> 2"]),
        ({"g_lr": 2e-4, "seed": 1}, ["g_lr", "seed 0 -> 1"]),
        ({"ganmut": dataclasses.replace(TINY, g_channels=4)}, ["ganmut.g_channels 8 -> 4"]),
    ):
        with pytest.raises(ConfigError, match="cannot resume") as err:
            train_spfem(tiny_config(stage1, out, steps=4, **change))
        line = str(err.value)
        assert "\n" not in line and "--resume false" in line and "step_00000002" in line
        assert all(key in line for key in keys), line
        assert "workers" not in line and "log_every" not in line
    assert snapshot(out) == before  # refused before anything was written
    # a checkpoint past this run's steps is not silently taken as its result
    with pytest.raises(ConfigError, match="past this run's steps = 1"):
        train_spfem(tiny_config(stage1, out, steps=1))
    assert snapshot(out) == before


def test_a_resume_on_other_crops_under_the_same_pairs_is_refused(tmp_path):
    """The crop stores' size is part of what a run records (as train-metric's): the same
    clips and pairs.csv re-cropped at another size are other data, refused before any
    write (they were resumed silently)."""
    data, out = write_stage1(tmp_path / "data"), tmp_path / "run"
    train_spfem(tiny_config(data, out, steps=2))
    pairs = (data / "pairs.csv").read_bytes()
    write_stage1(data, size=16)  # the same clips, pairs and seed, 16 px crops
    assert (data / "pairs.csv").read_bytes() == pairs
    before = snapshot(out)
    with pytest.raises(ConfigError, match="cannot resume") as err:
        train_spfem(tiny_config(data, out, steps=4))
    assert "data_crops.size 32 -> 16 (other data: the crop size)" in str(err.value)
    assert snapshot(out) == before


def test_a_resume_may_change_what_moves_neither_data_nor_maths(stage1, tmp_path):
    whole = train_spfem(tiny_config(stage1, tmp_path / "whole"))
    train_spfem(tiny_config(stage1, tmp_path / "parts", steps=2))
    resumed = train_spfem(tiny_config(stage1, tmp_path / "parts", log_every=3, sample_every=0,
                                      threads=1, keep_checkpoints=1, workers=2))  # fmt: skip
    assert_same_weights(whole, resumed)


def test_resume_false_starts_over_and_removes_the_earlier_run(stage1, tmp_path):
    out = tmp_path / "run"
    train_spfem(tiny_config(stage1, out, steps=4))
    short = train_spfem(tiny_config(stage1, out, steps=2, batch_size=2, resume=False))
    steps = sorted(p.name for p in (out / "checkpoints").iterdir())
    assert steps == ["step_00000002"]  # not step 4 of the earlier run
    assert sorted(p.name for p in (out / "samples").iterdir()) == [
        "step_00000000.png", "step_00000002.png"]  # fmt: skip
    reference = train_spfem(tiny_config(stage1, tmp_path / "fresh", steps=2, batch_size=2))
    assert_same_weights(reference, short)


@pytest.mark.parametrize(
    ("key", "value"),
    [("steps", "0"), ("batch_size", "0"), ("batch_size", "-4"), ("n_critic", "0"),
     ("g_lr", "0"), ("d_lr", "-1e-4"), ("g_lr", "nan"), ("d_lr", "inf"), ("betas", "[0.5, 1.0]"),
     ("image_size", "8"), ("image_size", "4096"), ("asccl_weight", "-1"),
     ("asccl_weight", "nan"), ("asccl_every", "0"), ("workers", "-1"), ("threads", "-2"),
     ("seed", "-1"), ("device", "gpu"), ("sample_rows", "0"), ("log_every", "-1")],
)  # fmt: skip
def test_config_refuses_nonsense_naming_the_key(key, value):
    with pytest.raises(ConfigError, match=key) as err:
        load_config(SPFEMTrainConfig, None, [f"--{key}", value])
    assert "\n" not in str(err.value)


def test_config_refuses_an_image_size_the_model_cannot_take():
    with pytest.raises(ConfigError, match="ganmut: image_size 36 must be a multiple"):
        load_config(SPFEMTrainConfig, None, ["--image-size", "36"])


@pytest.mark.parametrize(
    ("method", "term", "nth_call", "step"),
    # n_critic = 2: discriminator_losses' calls 1-2 are step 1, 5-6 step 3
    [("generator_losses", "g_cycle", 3, 3), ("discriminator_losses", "d_adv", 5, 3)],
)
def test_a_loss_that_is_not_finite_stops_the_run_keeping_the_checkpoint_before(
    stage1, tmp_path, monkeypatch, method, term, nth_call, step
):
    original, calls = getattr(GANmut, method), []

    def poisoned(self, batch):  # the nth call's `term` becomes NaN, as from a diverged net
        out = original(self, batch)
        calls.append(1)
        if len(calls) == nth_call:
            terms = out[0] if isinstance(out, tuple) else out
            terms[term] = terms[term] * float("nan")
        return out

    monkeypatch.setattr(GANmut, method, poisoned)
    out = tmp_path / "run"
    expected = rf"step {step}: a loss is not finite \(.*{term}=nan"
    with pytest.raises(ConfigError, match=expected) as err:
        train_spfem(tiny_config(stage1, out))
    assert "\n" not in str(err.value) and "g_total" not in str(err.value)
    # checkpoint_every = 2: step 2's stays the newest, step 3 wrote nothing, no final model
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["step_00000002"]
    assert not (out / "generator.safetensors").exists()
    assert sorted(p.name for p in (out / "samples").glob("*.png"))[-1] == "step_00000002.png"
    saved = weights(out / "checkpoints" / "step_00000002" / "generator.safetensors")
    assert all(torch.isfinite(t).all() for t in saved.values())


def test_weight_zero_is_exactly_the_baseline(stage1, tmp_path, metric_file):
    base = train_spfem(tiny_config(stage1, tmp_path / "base", steps=2))
    zero = train_spfem(tiny_config(stage1, tmp_path / "zero", steps=2, asccl_weight=0.0,
                                   asccl_checkpoint=metric_file))  # fmt: skip
    assert_same_weights(base, zero)


@pytest.mark.slow
def test_asccl_weight_changes_training_and_is_logged(stage1, tmp_path, metric_file):
    base = train_spfem(tiny_config(stage1, tmp_path / "base", steps=2, n_critic=1))
    config = tiny_config(
        stage1,
        tmp_path / "asccl",
        steps=2,
        n_critic=1,
        asccl_weight=5.0,
        asccl_checkpoint=metric_file,
    )
    with_asccl = train_spfem(config)
    wb, wa = weights(base), weights(with_asccl)
    assert any(not torch.equal(wb[k], wa[k]) for k in wb if k.startswith("generator."))
    with (tmp_path / "asccl" / "log.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert all(float(r["asccl"]) > 0 and float(r["asccl_weight"]) == 5.0 for r in rows)
    for r in rows:  # total = generator terms + weight * asccl
        assert float(r["total"]) == pytest.approx(
            float(r["g_total"]) + 5.0 * float(r["asccl"]), rel=1e-4
        )


@pytest.mark.slow
def test_a_run_with_asccl_resumes_exactly(stage1, tmp_path, metric_file):
    """Building the metric draws from the global RNG: it happens before the checkpoint's
    RNG states are put back, so a resumed +ASCCL run still ends bit for bit."""
    asccl = {"asccl_weight": 2.0, "asccl_checkpoint": metric_file, "asccl_every": 1,
             "n_critic": 1, "sample_every": 0}  # fmt: skip
    whole = train_spfem(tiny_config(stage1, tmp_path / "whole", steps=2, **asccl))
    train_spfem(tiny_config(stage1, tmp_path / "parts", steps=1, **asccl))
    resumed = train_spfem(tiny_config(stage1, tmp_path / "parts", steps=2, **asccl))
    assert_same_weights(whole, resumed)


def test_asccl_gradient_reaches_the_generator_never_the_metric(small_metric):
    torch.manual_seed(0)
    model = GANmut(TINY)
    asccl = ASCCLSupervision(metric=small_metric, adapter=model.adapter, weight=1.0)
    source = torch.rand(2, 3, 32, 32) * 2 - 1
    batch = {"image": source, "source": source, "target": source.flip(0),
             "emotion": torch.zeros(2, dtype=torch.int64),
             "target_emotion": torch.tensor([1, 4])}  # fmt: skip
    _, outputs = model.generator_losses(batch)
    extra, logs = asccl(batch, outputs, step=0, generator=torch.Generator().manual_seed(0))
    assert extra.item() > 0 and logs["asccl"] > 0
    extra.backward()
    grads = [p.grad for p in model.generator.parameters()]
    assert all(g is not None for g in grads) and sum(g.abs().sum() for g in grads) > 0
    assert all(p.grad is None for p in model.discriminator_parameters())
    metric = list(asccl.loss.metric.parameters())  # held outside the module tree
    assert metric and all(p.grad is None and not p.requires_grad for p in metric)
    assert list(asccl.parameters()) == []  # nothing of the metric reaches an optimiser


def test_the_cli_entry_point_reads_a_config_and_overrides(stage1, tmp_path, capsys):
    toml = tmp_path / "c.toml"
    toml.write_text(f'data = "{stage1}"\nout = "{tmp_path / "cli"}"\nsteps = 1\nbatch_size = 4\n'
                    'image_size = 32\nworkers = 0\ndevice = "cpu"\n'
                    '[ganmut]\ng_channels = 8\ng_res_blocks = 1\nd_channels = 8\n'
                    'd_layers = 3\n')  # fmt: skip
    args = ["spfem", "train", "--config", str(toml), "--model", "ganmut",
            "--exclude-speakers", '["B02"]', "--asccl-weight", "0"]  # fmt: skip
    assert main(args) == 0
    assert load_generator(tmp_path / "cli" / "generator.safetensors").config.image_size == 32
    config = load_config(SPFEMTrainConfig, toml, ["--exclude-speakers", '["B02"]'])
    assert config.exclude_speakers == ("B02",)
    assert SPFEMTrainConfig(exclude_speakers="B02").exclude_speakers == ("B02",)  # from Python
    assert main(["spfem", "train", "--config", str(toml), "--asccl-weight", "1"]) == 2
    assert "needs asccl_checkpoint" in capsys.readouterr().err
