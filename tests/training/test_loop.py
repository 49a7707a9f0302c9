"""The training core (``TrainingRun``) on a toy trainer: a run SIGKILLed at any moment and
resumed ends bit for bit as an uninterrupted one; a resume with other maths (batch size,
lr) is refused in one line naming the keys, one with other workers or cadences resumes
exactly; a run folder whose checkpoints all fail to load is refused, not started over;
resumable epoch sampling; the AMP rule; the log and its curves."""

from __future__ import annotations

import dataclasses
import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from torch.utils.data import Dataset

from asccl.config import ConfigError
from asccl.io import CheckpointError, load_state_dict_strict, save_safetensors
from asccl.training.amp import AMP
from asccl.training.history import TrainingLog, draw_curves, read_log
from asccl.training.loop import TrainingRun, check_resumable
from asccl.training.progress import Progress
from asccl.training.resume import run_settings
from asccl.training.sampling import EpochBatches, EpochSampler

ROOT = Path(__file__).resolve().parents[2]
MODEL = "toy.safetensors"


@dataclass(frozen=True)
class ToyConfig:
    """A trainer's config as the core reads it, plus the toy's own settings."""

    out: Path
    steps: int = 12
    batch_size: int = 4
    lr: float = 0.05
    seed: int = 0
    workers: int = 0
    threads: int = 0
    device: str = "cpu"
    resume: bool = True
    keep_checkpoints: int = 2
    checkpoint_every: int = 2
    log_every: int = 1
    tensorboard: bool = False
    pause: float = 0.0  #: seconds of sleep per step (so that a kill lands mid-run)


RESUMABLE = {"out", "steps", "workers", "threads", "device", "resume", "keep_checkpoints",
             "checkpoint_every", "log_every", "tensorboard", "pause"}  # fmt: skip


class Points(Dataset):
    """10 fixed (x, y) items: x (3,), y = x . (1, -2, 0.5) + 0.3."""

    def __init__(self) -> None:
        self.x = torch.linspace(-1, 1, 30).reshape(10, 3)
        self.y = self.x @ torch.tensor([1.0, -2.0, 0.5]) + 0.3

    def __len__(self) -> int:
        return 10

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.x[i], self.y[i]


def toy_train(config: ToyConfig) -> Path:
    """A trainer on the core, top to bottom. Every random source a real trainer has: the
    init and a mask from the global RNG, noise from a named generator, the epoch shuffle;
    10 items in batches of 4 make 2 batches an epoch, so steps cross epochs."""
    run = TrainingRun(config, run_settings(config, RESUMABLE), desc="toy", outputs=["extra_*"])
    batch = run.local_batch(config.batch_size)
    model = torch.nn.Linear(3, 1)
    saved = run.saved_weights(MODEL)
    if saved is not None:
        load_state_dict_strict(model, saved, run.checkpoint.path / MODEL)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    scaler = AMP("off", run.device).grad_scaler()
    noise = torch.Generator().manual_seed(config.seed + 1)

    def write(path: Path) -> Path:
        return save_safetensors({k: v.detach() for k, v in model.state_dict().items()}, path, {})

    run.track(models={MODEL: write}, optimizers={"model": optimizer},
              scalers={"model": scaler}, generators={"noise": noise})  # fmt: skip
    batches = run.batches(Points(), batch)
    run.begin(config.steps)
    while not run.done:
        x, y = next(batches)
        x = x + 0.1 * torch.randn(x.shape, generator=noise)
        keep = (torch.rand(x.shape[0]) > 0.2).float()
        loss = (((model(x).squeeze(-1) - y) ** 2) * keep).mean()
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        optimizer.zero_grad(set_to_none=True)
        run.step_done()
        if run.due(config.log_every):
            run.log({"loss": loss.item(), "every_3rd": loss.item() if run.step % 3 == 0 else None})
        if run.done or run.due(config.checkpoint_every):
            run.save_checkpoint()
        time.sleep(config.pause)
    return run.finish({"loss": lambda c: c in ("loss", "every_3rd")})


def same_run(a: Path, b: Path) -> None:
    """Bit-identical final weights and identical logs."""
    first, second = load_file(str(a / MODEL)), load_file(str(b / MODEL))
    assert first.keys() == second.keys()
    assert all(torch.equal(first[k], second[k]) for k in first)
    assert (a / "log.csv").read_text() == (b / "log.csv").read_text()


@pytest.fixture(scope="module")
def straight(tmp_path_factory) -> Path:
    """An uninterrupted 12-step run (read only)."""
    out = tmp_path_factory.mktemp("straight")
    toy_train(ToyConfig(out))
    return out


_SCRIPT = """
import sys
from pathlib import Path
from tests.training.test_loop import ToyConfig, toy_train
toy_train(ToyConfig(Path(sys.argv[1]), steps=40, checkpoint_every=1, pause=0.03))
"""


@pytest.mark.slow
def test_sigkill_at_any_moment_then_resume_ends_bit_for_bit(tmp_path):
    """Killed (SIGKILL: no clean-up) while checkpointing every step, so the kill may land
    mid-write; the resumed run ends with the uninterrupted run's weights and log."""
    whole = tmp_path / "whole"
    toy_train(ToyConfig(whole, steps=40, checkpoint_every=1))
    out = tmp_path / "killed"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-c", _SCRIPT, str(out)], env=env, cwd=ROOT)
    deadline = time.monotonic() + 120
    while not (out / "checkpoints" / "step_00000010").exists():
        assert proc.poll() is None and time.monotonic() < deadline, "no checkpoint in time"
        time.sleep(0.005)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL and not (out / MODEL).exists()  # mid-run
    toy_train(ToyConfig(out, steps=40, checkpoint_every=1))
    same_run(whole, out)
    assert [int(r["step"]) for r in read_log(out / "log.csv")] == list(range(1, 41))


def test_stopping_and_resuming_with_other_workers_and_cadences_is_exact(straight, tmp_path):
    out = tmp_path / "run"
    toy_train(ToyConfig(out, steps=5, checkpoint_every=0))  # stops after step 5: mid-epoch
    assert load_file(str(out / "checkpoints" / "step_00000005" / "rng.safetensors")).keys() == {
        "torch_cpu", "noise", "loader"}  # fmt: skip
    toy_train(ToyConfig(out, workers=2, checkpoint_every=5, keep_checkpoints=1, threads=1,
                        log_every=1))  # fmt: skip
    same_run(straight, out)
    assert sorted(os.listdir(out / "checkpoints")) == ["step_00000012"]


@pytest.mark.parametrize(
    ("change", "named"),
    [({"batch_size": 2}, ["batch_size 4 -> 2"]), ({"lr": 0.1}, ["lr 0.05 -> 0.1"]),
     ({"seed": 3, "lr": 0.1}, ["lr 0.05 -> 0.1; seed 0 -> 3"])],
)  # fmt: skip
def test_a_resume_with_other_maths_is_refused_naming_the_keys(straight, tmp_path, change, named):
    out = Path(tmp_path / "run")
    toy_train(ToyConfig(out, steps=4))
    before = {p: p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}
    config = ToyConfig(out, **change)
    newest = out / "checkpoints" / "step_00000004"
    expected = (f"{newest}: cannot resume, this run's settings differ: {named[0]}; use "
                "--resume false to train from scratch, or another --out")  # fmt: skip
    for attempt in (check_resumable, None):
        with pytest.raises(ConfigError, match=f"^{re.escape(expected)}$"):
            if attempt is None:
                toy_train(config)
            else:
                attempt(config, run_settings(config, RESUMABLE), config.steps)
    assert {p: p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()} == before
    # a checkpoint past this run's steps is not taken as its result either
    with pytest.raises(ConfigError, match=r"step_00000004: cannot resume, it is past this "
                                          r"run's steps = 3; use --resume false"):  # fmt: skip
        toy_train(ToyConfig(out, steps=3))
    assert {p: p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()} == before


def test_resume_false_starts_over_and_clears_the_earlier_run(straight, tmp_path):
    out = Path(tmp_path / "run")
    toy_train(ToyConfig(out, steps=6, batch_size=2, checkpoint_every=1, keep_checkpoints=0))
    (out / "extra_1.txt").write_text("an output of the earlier run\n")
    (out / "notes.txt").write_text("not the run's\n")
    toy_train(ToyConfig(out, resume=False))
    same_run(straight, out)
    assert sorted(os.listdir(out / "checkpoints")) == ["step_00000010", "step_00000012"]
    assert not (out / "extra_1.txt").exists() and (out / "notes.txt").exists()


def test_when_no_checkpoint_loads_the_run_is_refused_then_resume_false_starts_over(
    straight, tmp_path
):
    """Every checkpoint damaged: the core refuses (``TrainingRun`` and ``check_resumable``)
    in one line naming the newest checkpoint's damaged file, instead of taking the folder
    for a fresh start (which deleted the earlier run's outputs); ``resume = false`` then
    starts over as asked."""
    out = Path(tmp_path / "run")
    toy_train(ToyConfig(out, steps=4))  # checkpoints at steps 2 and 4, final toy + log
    for folder in (out / "checkpoints").iterdir():
        model = folder / MODEL
        model.write_bytes(model.read_bytes()[:20])
    before = {p: p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}
    newest = out / "checkpoints" / "step_00000004" / MODEL
    config = ToyConfig(out, steps=6)
    for attempt in (check_resumable, None):
        with pytest.raises(CheckpointError) as err:
            if attempt is None:
                toy_train(config)
            else:
                attempt(config, run_settings(config, RESUMABLE), config.steps)
        line = str(err.value)
        assert "\n" not in line and line.startswith(f"{newest}: truncated safetensors file")
        assert "none of the 2 checkpoints" in line and "use --resume false" in line
    assert {p: p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()} == before
    toy_train(ToyConfig(out, resume=False))
    same_run(straight, out)


def test_epoch_batches_resume_mid_epoch_and_end_epochs_on_whole_steps():
    """11 items, batches of 2 in groups of 2 (grad accumulation): an epoch is 4 batches
    (the 5th whole batch would split a step); started at any position, the batches are
    the rest of the uninterrupted sequence, and epochs are counted as they end."""
    data = torch.arange(11)

    def draw(progress: Progress, n: int) -> list[list[int]]:
        batches = EpochBatches(data, progress, batch=2, seed=5, rank=0, world=1, workers=0,
                               generator=torch.Generator(), group=2)  # fmt: skip
        drawn = []
        for _ in range(n):
            drawn.append(next(batches).tolist())
            if progress.batch_in_epoch % 2 == 0:  # a step ends: as TrainingRun.step_done
                batches.epoch_ended()
        batches.close()
        return drawn

    progress = Progress()
    whole = draw(progress, 12)
    assert progress == Progress(step=0, epoch=3, batch_in_epoch=0) and len(whole) == 12
    epoch_0 = EpochSampler(11, seed=5)
    assert [i for b in whole[:4] for i in b] == list(epoch_0)[:8]
    for start in range(1, 12):
        epoch, position = divmod(start, 4)
        resumed = draw(Progress(epoch=epoch, batch_in_epoch=position), 12 - start)
        assert resumed == whole[start:], start


def test_epoch_sampler_gives_each_process_its_share():
    shares = [list(EpochSampler(10, seed=1, rank=r, world=3)) for r in range(3)]
    assert all(len(s) == 4 for s in shares)  # padded to equal length
    assert {i for share in shares for i in share} == set(range(10))
    assert EpochSampler(10, seed=1).n == 10 and list(EpochSampler(10, seed=1)) != list(range(10))


def test_the_amp_rule_scales_gradients_iff_fp16():
    cpu = torch.device("cpu")
    assert [AMP(m, cpu, warn=False).grad_scaler().is_enabled() for m in ("off", "bf16", "fp16")
            ] == [False, False, True]  # fmt: skip
    with AMP("bf16", cpu).autocast():
        assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype == torch.bfloat16
    with AMP("off", cpu).autocast():
        assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype == torch.float32


def test_the_log_grows_columns_drops_rows_past_a_resume_and_marks_sparse_series(tmp_path):
    log = TrainingLog(tmp_path, None)
    log.write({"step": 0, "split": "val", "loss": 2.0})
    for step in range(1, 9):
        log.write({"step": step, "split": "train", "loss": 1 / step,
                   "asccl": 0.5 if step % 4 == 0 else None})  # fmt: skip
    rows = read_log(tmp_path / "log.csv")
    assert list(rows[0]) == ["step", "split", "loss", "asccl"] and len(rows) == 9
    assert [r["asccl"] for r in rows if r["asccl"] is not None] == [0.5, 0.5]
    TrainingLog(tmp_path, resumed_step=4)  # a resume from step 4
    assert [r["step"] for r in read_log(tmp_path / "log.csv")] == [0, 1, 2, 3, 4]

    figure = draw_curves(rows, {"losses": lambda c: c in ("loss", "asccl")})
    lines = {line.get_label(): line for line in figure.axes[0].get_lines()}
    assert sorted(lines) == ["asccl (train)", "loss (train)", "loss (val)"]  # every series
    assert len(lines["asccl (train)"].get_xdata()) == 2  # through its points, not NaN gaps
    markers = {label: line.get_marker() for label, line in lines.items()}
    assert markers == {"asccl (train)": "o", "loss (val)": "o", "loss (train)": "None"}


@pytest.mark.parametrize("cut", range(1, 16))  # up to the "\r" before the "\n"
def test_a_torn_last_row_is_dropped_on_resume(tmp_path, cut):
    log = TrainingLog(tmp_path, None)
    for step in (100, 110, 120):
        log.write({"step": step, "split": "train", "loss": 0.25})
    whole = (tmp_path / "log.csv").read_bytes()
    assert whole.endswith(b"\n120,train,0.25\r\n")  # 14 characters and csv's line end
    # a power loss after `cut` characters of the last row: "1", "12", "120", "120,",...
    (tmp_path / "log.csv").write_bytes(whole[: len(whole) - 16 + cut])
    TrainingLog(tmp_path, resumed_step=120)
    assert [r["step"] for r in read_log(tmp_path / "log.csv")] == [100, 110]


def test_the_config_json_and_checkpoint_hold_the_full_config(straight):
    import json

    saved = json.loads((straight / "checkpoints" / "step_00000012" / "state.json").read_text())
    assert saved["config"] == json.loads(json.dumps(dataclasses.asdict(ToyConfig(straight)),
                                                    default=str))  # fmt: skip
    assert saved["settings"]["lr"] == "0.05" and "workers" not in saved["settings"]
    assert saved["settings"]["processes"] == "1"
    assert json.loads((straight / "config.json").read_text())["steps"] == 12
    assert (straight / "curves.png").read_bytes().startswith(b"\x89PNG")
