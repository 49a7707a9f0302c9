"""Robustness corpus of ``asccl evaluate``, ``asccl spfem train`` and ``asccl experiment``:
broken results folders, bad config numbers, resumes with other settings.

A results folder that cannot be evaluated at all (missing, no method, a missing level) and a
bad setting are refused with one stderr line naming the folder, level or key, leaving the
output folder as it was. A broken clip among good ones (truncated, not a video, no frames, an
empty frame folder, an unreadable source) does not stop the run: it is listed in the report
with its reason and never scored, so every score equals the score without it.
"""

from __future__ import annotations

import csv
import dataclasses
import math
import shutil
from pathlib import Path

import av
import pytest

from asccl.cli import main
from tests.evaluation.random_weights import save_random_arcface
from tests.evaluation.test_results import write_tiny_results
from tests.one_thread import one_thread  # noqa: F401 (autouse: single-threaded torch)
from tests.robustness.conftest import one_line_error, snapshot
from tests.spfem.test_data import write_stage1
from tests.spfem.test_experiment import GANMUT_TOML, make_setup

AUDIO = Path(__file__).resolve().parents[2] / "demo_data/MEAD/W903/audio/happy/level_1/001.m4a"
NAMES = ("A_001", "A_002", "A_003")


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory) -> tuple[Path, Path, list[str]]:
    """A tiny results folder (2 methods x 2 emotions x 3 clips of 6 frames at 32 px),
    evaluated once (CSIM, random ArcFace): ``(results, out, argv)``; read only."""
    root = tmp_path_factory.mktemp("eval_corpus")
    arcface = save_random_arcface(root / "backbone.pth")
    results = write_tiny_results(root / "results", names=NAMES)
    out = root / "out"
    argv = ["evaluate", "--results", str(results), "--out", str(out), "--metrics", '["csim"]',
            "--distribution-metric", "fad", "--arcface-weights", str(arcface),
            "--arcface-backbone", "iresnet18", "--grid-clips", "0",
            "--framing", "none"]  # fmt: skip  # tiny random frames: no face to track
    assert main(argv) == 0
    return results, out, argv


def _with(argv: list[str], **changes: str) -> list[str]:
    """``argv`` with ``--key value`` replaced or added."""
    argv = list(argv)
    for key, value in changes.items():
        flag = f"--{key.replace('_', '-')}"
        if flag in argv:
            argv[argv.index(flag) + 1] = value
        else:
            argv += [flag, value]
    return argv


# ------------------------------------------------ evaluate: refused, output folder unchanged


@pytest.mark.parametrize(
    "case",
    ["missing folder", "no method folder", "setting level missing", "method without settings",
     "setting without emotions", "unknown method"],
)  # fmt: skip
def test_evaluate_refuses_a_results_folder_it_cannot_read(case, evaluated, tmp_path, capsys):
    results, out, argv = evaluated
    bad = tmp_path / "results"
    extra: dict[str, str] = {}
    if case == "missing folder":
        named = [str(bad)]
    elif case == "no method folder":
        shutil.copytree(results / "sources", bad / "sources")
        named = [str(bad), "no method folders"]
    elif case == "setting level missing":  # <method>/<emotion>/<clip>
        shutil.copytree(results / "sources", bad / "sources")
        shutil.copytree(results / "baseline" / "inter_id", bad / "baseline")
        named = [str(bad / "baseline" / "happy"), "unknown setting 'happy'"]
    elif case == "method without settings":
        (bad / "baseline").mkdir(parents=True)
        named = [str(bad / "baseline"), "no setting folder"]
    elif case == "setting without emotions":
        (bad / "baseline" / "inter_id").mkdir(parents=True)
        named = [str(bad / "baseline" / "inter_id"), "no emotion folder"]
    else:
        shutil.copytree(results, bad)
        extra = {"methods": '["baseline", "ours"]'}
        named = [str(bad), "'ours'"]
    before = snapshot(out)
    one_line_error(_with(argv, results=str(bad), **extra), capsys, *named)
    assert snapshot(out) == before


@pytest.mark.parametrize(
    ("key", "value"),
    [("batch_size", "0"), ("batch_size", "-1"), ("max_frames_per_clip", "-1"),
     ("frame_folder_fps", "0"), ("frame_folder_fps", "nan"), ("lse_vshift", "0"),
     ("lse_min_frames", "-1"), ("grid_clips", "-2"), ("metrics", '["psnr"]'), ("metrics", "[]"),
     ("arcface_backbone", "resnet9"), ("device", "gpu"), ("distribution_metric", "kid")],
)  # fmt: skip
def test_evaluate_refuses_bad_numbers_naming_the_key(key, value, evaluated, capsys):
    _, out, argv = evaluated
    before = snapshot(out)
    one_line_error(_with(argv, **{key: value}), capsys, key)
    assert snapshot(out) == before


# --------------------------------------------- evaluate: broken clips listed, never scored


def _scores(path: Path) -> dict[tuple[str, str, str], float]:
    with open(path, newline="") as handle:
        return {(r["method"], r["emotion"], r["metric"]): float(r["value"])
                for r in csv.DictReader(handle)}  # fmt: skip


def _zero_frame_mp4(path: Path) -> None:
    """An MP4 with a video stream header and no frame at all."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=25)
        stream.width = stream.height = 32
        stream.pix_fmt = "yuv420p"
        container.start_encoding()


@pytest.mark.slow
def test_broken_clips_are_listed_with_their_reason_and_never_scored(evaluated, tmp_path, capsys):
    results, _, argv = evaluated
    bad, out = tmp_path / "results", tmp_path / "out"
    shutil.copytree(results, bad)
    happy, sad = bad / "baseline" / "inter_id" / "happy", bad / "baseline" / "inter_id" / "sad"
    truncated = happy / "A_001.mp4"
    truncated.write_bytes(truncated.read_bytes()[: truncated.stat().st_size // 3])
    (happy / "A_002.mp4").unlink()
    (happy / "A_002").mkdir()  # an empty frame folder
    (happy / "notes.txt").write_text("not a clip")
    text = sad / "A_001.mp4"
    text.write_text("this is not a video")
    _zero_frame_mp4(sad / "A_002.mp4")
    audio_only = bad / "asccl" / "inter_id" / "sad" / "A_002.mp4"
    shutil.copyfile(AUDIO, audio_only)  # an .m4a is an MP4 holding no video stream
    source = bad / "sources" / "sad" / "A_003.mp4"  # both methods' sad/A_003 lose their source
    source.write_bytes(source.read_bytes()[:200])
    broken = {
        truncated: "",
        happy / "A_002": "no frames",
        text: "",
        sad / "A_002.mp4": "",
        audio_only: "no video stream",
        source: "",
        sad / "A_003.mp4": "CSIM not scored: its source",
        bad / "asccl" / "inter_id" / "sad" / "A_003.mp4": "CSIM not scored: its source",
    }

    capsys.readouterr()
    assert main(_with(argv, results=str(bad), out=str(out))) == 0
    printed = capsys.readouterr().out
    assert f"clips skipped (unreadable or unscored): {len(broken)}" in printed
    lines = printed.splitlines()
    for path, reason in broken.items():
        listed = [line for line in lines if line.strip().startswith(f"{path}: ")]
        assert len(listed) == 1, (path, printed)
        assert reason in listed[0], listed[0]
    assert f"{happy / 'notes.txt'}: not a video" in printed
    with_broken = _scores(out / "scores.csv")

    # the same folder without the broken clips (and the results of the broken source)
    for path in broken:
        shutil.rmtree(path) if path.is_dir() else path.unlink()
    (happy / "notes.txt").unlink()
    assert main(_with(argv, results=str(bad), out=str(tmp_path / "clean"))) == 0
    without = _scores(tmp_path / "clean" / "scores.csv")
    assert set(without) <= set(with_broken)
    for key, value in with_broken.items():  # equal where scored, NaN where nothing is left
        assert value == without[key] if key in without else math.isnan(value), key
    assert math.isnan(with_broken[("baseline", "sad", "csim")])  # all three sad clips broken


# ---------------------------------------------------------------------- asccl spfem train

# the tiny GANmut run of the experiment tests, on its own data and output folder
TRAIN_TOML = 'data = "{data}"\nout = "{out}"\n' + GANMUT_TOML


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[Path, Path]:
    """A finished 2-step tiny GANmut run: ``(config file, out)``; read only."""
    root = tmp_path_factory.mktemp("spfem_corpus")
    data, out = write_stage1(root / "data"), root / "run"
    config = root / "ganmut.toml"
    config.write_text(TRAIN_TOML.format(data=data, out=out))
    assert main(["spfem", "train", "--config", str(config)]) == 0
    return config, out


@pytest.mark.parametrize(
    ("key", "value"),
    [("steps", "0"), ("steps", "-3"), ("batch_size", "0"), ("n_critic", "0"), ("g_lr", "0"),
     ("d_lr", "-0.1"), ("g_lr", "nan"), ("d_lr", "inf"), ("betas", "[0.5, 1.5]"),
     ("betas", "[0.5]"), ("image_size", "4"), ("image_size", "36"), ("asccl_weight", "-1"),
     ("asccl_weight", "inf"), ("asccl_every", "0"), ("asccl_warmup", "-1"), ("workers", "-1"),
     ("keep_checkpoints", "-1"), ("seed", "-1"), ("device", "gpu"), ("model", "stargan")],
)  # fmt: skip
def test_spfem_train_refuses_bad_numbers_naming_the_key(key, value, trained, capsys):
    config, out = trained
    before = snapshot(out)
    one_line_error(["spfem", "train", "--config", config, f"--{key}", value], capsys, key)
    assert snapshot(out) == before


@pytest.mark.parametrize(
    ("change", "named"),
    [(["--batch-size", "2"], ["batch_size 4 -> 2"]), (["--g-lr", "3e-4"], ["g_lr"]),
     (["--seed", "7"], ["seed 0 -> 7"]), (["--ganmut.g-channels", "4"], ["ganmut.g_channels"]),
     (["--n-critic", "2"], ["n_critic 1 -> 2"]), (["--steps", "1"], ["past this run's steps"])],
)  # fmt: skip
def test_spfem_train_refuses_to_resume_with_other_maths(change, named, trained, capsys):
    config, out = trained
    before = snapshot(out)
    one_line_error(["spfem", "train", "--config", config, "--steps", "3", *change], capsys,
                   "step_00000002", "--resume false", *named)  # fmt: skip
    assert snapshot(out) == before


def test_spfem_train_refuses_a_data_folder_without_pairs(trained, tmp_path, capsys):
    config, out = trained
    before = snapshot(out)
    one_line_error(["spfem", "train", "--config", config, "--data", tmp_path], capsys,
                   str(tmp_path))  # fmt: skip
    assert snapshot(out) == before


# --------------------------------------------------------------------- asccl experiment


@pytest.fixture(scope="module")
def experiment(tmp_path_factory, small_metric) -> tuple[list[str], Path]:
    """``asccl experiment`` argv for a tiny GANmut-only experiment without evaluation, and
    its ``out``, holding an earlier run's files (not run: every case is refused first)."""
    config = make_setup(tmp_path_factory.mktemp("experiment_corpus"), small_metric)
    config = dataclasses.replace(config, models=("ganmut",), evaluate=False)
    config.out.mkdir()
    (config.out / "config.json").write_text('{"earlier": "run"}\n')
    (config.out / "comparison.md").write_text("| an earlier table |\n")
    argv = ["experiment", "--data", str(config.data), "--metric", str(config.metric),
            "--out", str(config.out), "--models", '["ganmut"]', "--evaluate", "false",
            "--ganmut", str(config.out.parent / "ganmut.toml"),
            "--test-speakers", '["B02"]']  # fmt: skip
    return argv, config.out


@pytest.mark.parametrize(
    ("change", "named"),
    [(["--asccl-weight", "0"], ["asccl_weight"]), (["--asccl-weight", "nan"], ["asccl_weight"]),
     (["--generation-batch-size", "0"], ["generation_batch_size"]),
     (["--max-clips-per-emotion", "-1"], ["max_clips_per_emotion"]), (["--seed", "-1"], ["seed"]),
     (["--models", "[]"], ["models"]), (["--test-speakers", "[]"], ["test_speakers"]),
     (["--device", "tpu"], ["device"]), (["--ganmut.steps", "0"], ["ganmut", "steps"]),
     (["--ganmut.g-lr", "-1"], ["ganmut", "g_lr"]),
     (["--ganmut.image-size", "36"], ["ganmut", "image_size"]),
     (["--ganmut", "missing.toml"], ["missing.toml", "no such config file"]),
     (["--eval.batch-size", "0"], ["eval", "batch_size"]),
     (["--test-speakers", '["Z99"]'], ["pairs.csv", "Z99"]),
     (["--metric", ""], ["metric"])],
)  # fmt: skip
def test_experiment_refuses_bad_settings_before_writing(change, named, experiment, capsys):
    argv, out = experiment
    before = snapshot(out)
    one_line_error([*argv, *change], capsys, *named)
    assert snapshot(out) == before


@pytest.mark.parametrize("damage", ["clips.csv lists no clip", "no pairs.csv"])
def test_experiment_refuses_a_damaged_data_folder(damage, experiment, tmp_path, capsys):
    argv, out = experiment
    data = Path(argv[argv.index("--data") + 1])
    copy = tmp_path / "data"
    shutil.copytree(data, copy)
    if damage == "no pairs.csv":
        (copy / "pairs.csv").unlink()
        named = [str(copy / "pairs.csv"), "missing"]
    else:
        header = (copy / "clips.csv").read_text().splitlines()[0]
        (copy / "clips.csv").write_text(header + "\n")
        named = [str(copy / "clips.csv"), "asccl data prepare"]
    before = snapshot(out)
    one_line_error(_with(argv, data=str(copy)), capsys, *named)
    assert snapshot(out) == before
