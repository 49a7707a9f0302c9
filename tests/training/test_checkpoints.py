"""Training checkpoints: an exact round trip of every state a run needs (named optimisers,
scalers, generators, the run settings), pruning, atomic folder writes, broken checkpoints
skipped in favour of the previous one, none loading refused in one line naming the newest's
damaged file, and older formats refused in one line."""

from __future__ import annotations

import json
import logging
import os
import re

import pytest
import safetensors.torch
import torch

from asccl.config import ConfigError
from asccl.io import CheckpointError, load_state_dict_strict
from asccl.metric import ASCCLMetric, MetricConfig, save_metric
from asccl.training.checkpoints import latest_checkpoint, load_checkpoint, save_checkpoint
from asccl.training.progress import Progress

SMALL = MetricConfig(backbone="iresnet18", image_size=64, num_anchors=(8, 4, 4, 2))
FILES = ["metric.safetensors", "optimizer_metric.safetensors", "rng.safetensors", "state.json"]
SETTINGS = {"lr": "0.001", "metric.backbone": '"iresnet18"'}


def save(out, metric, optimizer, generator, progress, scaler=None, keep=3):
    """A checkpoint of a metric trainer's states, as ``TrainingRun`` saves them."""
    return save_checkpoint(
        out, progress, models={"metric.safetensors": lambda path: save_metric(metric, path)},
        optimizers={"metric": optimizer}, scalers={"metric": scaler} if scaler else {},
        generators={"regions": generator}, settings=SETTINGS, keep=keep,
    )  # fmt: skip


def images(seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A fixed (x, y) batch: 2 images, (2, 3, 64, 64) in [-1, 1]."""
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(2, 3, 64, 64, generator=g) * 2 - 1
    return x, (x + 0.3 * torch.randn(x.shape, generator=g)).clamp(-1, 1)


def train_step(metric, optimizer, generator, seed: int) -> None:
    x, y = images(seed)
    metric(x, y, generator=generator).loss.backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)


def trained(steps: int = 2) -> tuple[ASCCLMetric, torch.optim.Adam, torch.Generator]:
    """A small metric after ``steps`` Adam steps: moments and step counts are populated and
    the region generator has moved on from its seed."""
    torch.manual_seed(0)
    metric = ASCCLMetric(SMALL).train()
    optimizer = torch.optim.Adam(metric.parameters(), lr=1e-3)
    generator = torch.Generator().manual_seed(1)
    for seed in range(steps):
        train_step(metric, optimizer, generator, seed)
    return metric, optimizer, generator


@pytest.fixture(scope="module")
def state():
    return trained()


def checkpoint_names(out) -> list[str]:
    return sorted(os.listdir(out / "checkpoints"))


def test_round_trip_restores_every_state(tmp_path):
    metric, optimizer, generator = trained()
    scaler = torch.amp.GradScaler("cpu", init_scale=1024.0)
    progress = Progress(step=7, epoch=1, batch_in_epoch=3)
    torch.manual_seed(123)
    cpu_rng = torch.get_rng_state()
    path = save(tmp_path, metric, optimizer, generator, progress, scaler)
    assert path == tmp_path / "checkpoints" / "step_00000007"
    assert checkpoint_names(tmp_path) == ["step_00000007"]  # and no temporary folder
    assert sorted(os.listdir(path)) == FILES

    loaded = load_checkpoint(path)
    assert loaded.path == path and loaded.progress == progress and loaded.settings == SETTINGS
    expected = metric.state_dict()
    weights = loaded.weights["metric.safetensors"]
    assert weights.keys() == expected.keys()
    for key, value in weights.items():
        assert value.dtype == expected[key].dtype and torch.equal(value, expected[key]), key

    original = optimizer.state_dict()
    restored_state = loaded.optimizer_states["metric"]
    assert restored_state["state"].keys() == original["state"].keys()
    for index, entries in original["state"].items():
        assert set(entries) == {"step", "exp_avg", "exp_avg_sq"}
        for name, value in entries.items():
            restored = restored_state["state"][index][name]
            assert restored.dtype == value.dtype and torch.equal(restored, value), (index, name)
    assert original["state"][0]["step"].item() == 2
    # param_groups go through JSON: betas come back as a list instead of a tuple
    plain = json.loads(json.dumps(original["param_groups"]))
    assert restored_state["param_groups"] == plain

    assert torch.equal(loaded.rng["torch_cpu"], cpu_rng)
    assert torch.equal(loaded.rng["regions"], generator.get_state())
    assert loaded.scaler_states == {"metric": scaler.state_dict()}

    # The proof that nothing is missing: a metric, optimiser, scaler and generator rebuilt
    # from the checkpoint take the next step exactly as the originals do.
    metric_2 = load_state_dict_strict(ASCCLMetric(SMALL).train(), weights, path)
    optimizer_2 = torch.optim.Adam(metric_2.parameters(), lr=0.5)  # overwritten by the load
    scaler_2 = torch.amp.GradScaler("cpu", init_scale=2.0)
    generator_2 = torch.Generator()
    torch.manual_seed(999)
    loaded.restore({"metric": optimizer_2}, {"metric": scaler_2}, {"regions": generator_2})
    assert scaler_2.get_scale() == 1024.0
    assert torch.equal(torch.get_rng_state(), cpu_rng)
    assert torch.equal(generator_2.get_state(), generator.get_state())
    train_step(metric, optimizer, generator, seed=5)
    train_step(metric_2, optimizer_2, generator_2, seed=5)
    assert optimizer_2.param_groups[0]["lr"] == 1e-3
    for (name, p), p_2 in zip(metric.named_parameters(), metric_2.parameters(), strict=True):
        assert torch.equal(p, p_2), name


def test_keep_prunes_the_oldest_checkpoints(state, tmp_path):
    metric, optimizer, generator = state
    for step in range(1, 6):
        save(tmp_path, metric, optimizer, generator, Progress(step), keep=2)
    assert checkpoint_names(tmp_path) == ["step_00000004", "step_00000005"]
    # steps sort numerically, not as text
    save(tmp_path, metric, optimizer, generator, Progress(100_000_000), keep=2)
    assert checkpoint_names(tmp_path) == ["step_00000005", "step_100000000"]
    save(tmp_path, metric, optimizer, generator, Progress(100_000_001), keep=0)
    assert len(checkpoint_names(tmp_path)) == 3  # keep=0: keep them all


def test_a_failed_write_leaves_no_folder_and_the_previous_checkpoint(state, tmp_path, monkeypatch):
    metric, optimizer, generator = state
    save(tmp_path, metric, optimizer, generator, Progress(2))
    real_save_file = safetensors.torch.save_file
    calls = []

    def fail_on_rng(tensors, filename, *args, **kwargs):  # the write dies half-way
        calls.append(os.path.basename(filename))
        if filename.endswith("rng.safetensors"):
            raise OSError("disk full")
        return real_save_file(tensors, filename, *args, **kwargs)

    monkeypatch.setattr(safetensors.torch, "save_file", fail_on_rng)
    with pytest.raises(OSError, match="disk full"):
        save(tmp_path, metric, optimizer, generator, Progress(4))
    assert "optimizer_metric.safetensors" in calls and "rng.safetensors" in calls
    assert checkpoint_names(tmp_path) == ["step_00000002"]  # no step_4, no temporary folder
    assert latest_checkpoint(tmp_path).progress.step == 2


def test_a_temporary_folder_left_by_a_killed_write_is_ignored_then_removed(state, tmp_path):
    metric, optimizer, generator = state
    save(tmp_path, metric, optimizer, generator, Progress(2))
    stale = tmp_path / "checkpoints" / ".step_00000004.k1ll3d"  # SIGKILL during a write
    stale.mkdir()
    (stale / "metric.safetensors").write_bytes(b"\0" * 100)
    assert latest_checkpoint(tmp_path).progress.step == 2
    save(tmp_path, metric, optimizer, generator, Progress(4))
    assert checkpoint_names(tmp_path) == ["step_00000002", "step_00000004"]


def test_saving_a_step_again_replaces_it(tmp_path):
    metric, optimizer, generator = trained(steps=1)
    save(tmp_path, metric, optimizer, generator, Progress(3, batch_in_epoch=3))
    train_step(metric, optimizer, generator, seed=9)
    save(tmp_path, metric, optimizer, generator, Progress(3, batch_in_epoch=9))
    loaded = latest_checkpoint(tmp_path)
    assert checkpoint_names(tmp_path) == ["step_00000003"]
    assert loaded.progress.batch_in_epoch == 9
    assert loaded.optimizer_states["metric"]["state"][0]["step"].item() == 2


def truncate_metric(folder) -> None:
    file = folder / "metric.safetensors"
    file.write_bytes(file.read_bytes()[: file.stat().st_size // 2])


def garbage_state(folder) -> None:
    (folder / "state.json").write_text('{"progress": {"step": 4, "ep')


def missing_optimizer(folder) -> None:
    (folder / "optimizer_metric.safetensors").unlink()


@pytest.mark.parametrize("damage", [truncate_metric, garbage_state, missing_optimizer])
def test_a_broken_newest_checkpoint_is_skipped_with_a_warning(state, tmp_path, caplog, damage):
    metric, optimizer, generator = state
    for step in (2, 4):
        save(tmp_path, metric, optimizer, generator, Progress(step))
    newest = tmp_path / "checkpoints" / "step_00000004"
    damage(newest)
    with caplog.at_level(logging.WARNING, logger="asccl.training.checkpoints"):
        loaded = latest_checkpoint(tmp_path)
    assert loaded.path == tmp_path / "checkpoints" / "step_00000002"
    assert loaded.progress.step == 2
    [record] = caplog.records
    assert record.levelno == logging.WARNING
    assert f"skipping checkpoint {newest}: it does not load" in record.getMessage()


def empty_rng(folder) -> None:
    (folder / "rng.safetensors").write_bytes(b"")


def state_not_a_dict(folder) -> None:
    (folder / "state.json").write_text("[1, 2]")


def state_without_progress(folder) -> None:
    state = json.loads((folder / "state.json").read_text())
    del state["progress"]
    (folder / "state.json").write_text(json.dumps(state))


#: each damage -> (the file the error names, what it says about it)
DAMAGES = {
    truncate_metric: ("metric.safetensors", "truncated safetensors file"),
    garbage_state: ("state.json", "not valid JSON"),
    missing_optimizer: ("optimizer_metric.safetensors", "no such checkpoint file"),
    empty_rng: ("rng.safetensors", r"empty file \(0 bytes\)"),
    state_not_a_dict: ("state.json", r"malformed checkpoint state \(not a JSON object\)"),
    state_without_progress: ("state.json", r"malformed checkpoint state \(missing key 'progress'"),
}


@pytest.mark.parametrize("damage", list(DAMAGES), ids=lambda f: f.__name__)
def test_when_no_checkpoint_loads_resuming_is_refused_naming_the_newest_file(
    state, tmp_path, caplog, damage
):
    """A run whose every checkpoint is damaged must not pass for a fresh one (which would
    delete them and its outputs): one line naming the newest checkpoint's damaged file,
    its problem, and ``--resume false``; no warnings before it; nothing changed."""
    metric, optimizer, generator = state
    for step in (2, 4):
        save(tmp_path, metric, optimizer, generator, Progress(step))
    for folder in (tmp_path / "checkpoints").iterdir():
        damage(folder)
    before = {p: p.read_bytes() for p in sorted(tmp_path.rglob("*")) if p.is_file()}
    name, problem = DAMAGES[damage]
    newest = tmp_path / "checkpoints" / "step_00000004" / name
    with caplog.at_level(logging.WARNING), pytest.raises(CheckpointError) as err:
        latest_checkpoint(tmp_path)
    line = str(err.value)
    assert "\n" not in line and line.startswith(f"{newest}: ")
    assert re.search(problem, line), line
    assert line.endswith(
        f"none of the 2 checkpoints in {tmp_path / 'checkpoints'} loads, so the run cannot "
        "resume: use --resume false to train from scratch, or another --out (a fresh run "
        "deletes them)"
    ), line
    assert caplog.records == []
    assert {p: p.read_bytes() for p in sorted(tmp_path.rglob("*")) if p.is_file()} == before


def test_a_single_damaged_checkpoint_is_refused_too(state, tmp_path):
    metric, optimizer, generator = state
    path = save(tmp_path, metric, optimizer, generator, Progress(2))
    (path / "metric.safetensors").write_bytes(b"garbage, not weights" * 10)
    with pytest.raises(CheckpointError, match=r"the only checkpoint in .* loads") as err:
        latest_checkpoint(tmp_path)
    assert str(err.value).startswith(f"{path / 'metric.safetensors'}: not a readable")


def test_no_checkpoint_is_none(tmp_path, caplog):
    assert latest_checkpoint(tmp_path / "nowhere") is None
    (tmp_path / "checkpoints" / "notes").mkdir(parents=True)  # not a step_<N> folder
    assert latest_checkpoint(tmp_path) is None
    assert caplog.records == []


def test_a_checkpoint_of_an_older_format_is_refused_in_one_line(state, tmp_path):
    """A whole checkpoint without run settings cannot be checked against this run: it is
    neither resumed nor skipped (a fresh run would delete it), but refused."""
    metric, optimizer, generator = state
    path = save(tmp_path, metric, optimizer, generator, Progress(2))
    old = json.loads((path / "state.json").read_text())
    del old["format"], old["settings"]
    (path / "state.json").write_text(json.dumps(old))
    with pytest.raises(ConfigError, match="written by an older asccl") as err:
        latest_checkpoint(tmp_path)
    assert str(err.value).startswith(f"{path}: cannot resume") and "--resume false" in str(
        err.value
    )
