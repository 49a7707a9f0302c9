"""asccl experiment: train both variants, write results in the evaluate layout, compare."""

from __future__ import annotations

import csv
import dataclasses
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from tests.robustness.conftest import snapshot
from tests.spfem.test_data import FRAMES, write_stage1

from asccl.config import ConfigError, load_config
from asccl.data.clip_index import write_clip_index
from asccl.data.clips import Clip
from asccl.data.crop_store import crop_path, write_clip_crops
from asccl.data.crops import ClipCrops
from asccl.data.errors import DataError
from asccl.evaluation.results import scan_results
from asccl.evaluation.runner import EvalConfig
from asccl.metric import build_iresnet, save_metric
from asccl.spfem.config import SPFEMTrainConfig
from asccl.spfem.experiment import ExperimentConfig, run_experiment
from asccl.training.history import read_log

AUDIO = Path(__file__).resolve().parents[2] / "demo_data/MEAD/W903/audio/happy/level_1/001.m4a"
EMOTIONS = ("angry", "happy")

#: the tiny training run both generators get here, each under its own model and section
TINY_RUN = """steps = 2
batch_size = 4
image_size = 32
workers = 0
device = "cpu"
sample_every = 0
checkpoint_every = 2
log_every = 1
"""

GANMUT_TOML = f"""
model = "ganmut"
{TINY_RUN}[ganmut]
g_channels = 8
g_res_blocks = 1
d_channels = 8
d_layers = 3
num_random = 1
"""

ICFACE_TOML = f"""
model = "icface"
{TINY_RUN}[icface]
conv_dim = 8
res_blocks = 1
d_conv_dim = 8
d_layers = 3
"""

EVAL_TOML = """
distribution_metric = "fad"
metrics = ["csim"]
arcface_backbone = "iresnet18"
grid_clips = 2
framing = "center"  # the stand-in crops are noise: no face to track
"""


@pytest.fixture(scope="module")
def setup(tmp_path_factory, small_metric) -> ExperimentConfig:
    return make_setup(tmp_path_factory.mktemp("experiment"), small_metric)


def write_other_sentence(data: Path, sentence: str = "002", size: int = 32) -> list[Clip]:
    """Per speaker and emotion, an emotional clip of another ``sentence`` in the crop store
    (not in ``pairs.csv``): what inter-ID references are drawn from. Its frames are flat
    grey ``100 + 10 * k`` (``k``: its index in speaker-major order), unlike the noise of
    sentence 001."""
    clips = []
    for k, (speaker, emotion) in enumerate((s, e) for s in ("A01", "B02") for e in EMOTIONS):
        clip_id = f"{speaker}/{emotion}/level_3/{sentence}"
        frames = np.full((FRAMES + 2, size, size, 3), 100 + 10 * k, np.uint8)
        landmarks = np.full((FRAMES + 2, 68, 2), size / 2, np.float32)
        crops = ClipCrops(frames=frames, landmarks=landmarks, source_landmarks=landmarks,
                          boxes=np.zeros((FRAMES + 2, 4), np.float32),
                          valid=np.ones(FRAMES + 2, bool), fps=25.0,
                          frame_size=(size, size))  # fmt: skip
        write_clip_crops(crops, crop_path(data, clip_id, "jpeg"))
        clips.append(Clip("mead", speaker, emotion, 3, sentence, clip_id, audio=AUDIO, fps=25.0,
                          num_frames=FRAMES + 2))  # fmt: skip
    return clips


def make_setup(root: Path, metric: torch.nn.Module) -> ExperimentConfig:
    """Under ``root``: a tiny stage 1 (speakers A01, B02; B02 held out, a face in every
    frame of its clips, which results need; pairs of sentence 001, emotional clips of 002
    for inter-ID references), the two models' configs (2 steps
    at 32 px), a CSIM-only evaluation config with random ArcFace weights, ``metric`` saved;
    the experiment's config (``out = root / "out"``)."""
    data = write_stage1(root / "data", emotions=EMOTIONS, no_face={"A01": (1,)})
    clips = [
        Clip("mead", speaker, emotion, 1 if emotion == "neutral" else 3, "001",
             f"{speaker}/{emotion}/level_{1 if emotion == 'neutral' else 3}/001",
             audio=AUDIO, fps=25.0, num_frames=FRAMES)
        for speaker in ("A01", "B02")
        for emotion in ("neutral", *EMOTIONS)
    ]  # fmt: skip
    clips += write_other_sentence(data)
    write_clip_index(clips, data / "clips.csv")
    (root / "ganmut.toml").write_text(GANMUT_TOML)
    (root / "icface.toml").write_text(ICFACE_TOML)
    (root / "eval.toml").write_text(EVAL_TOML)
    arcface = root / "backbone.pth"
    torch.manual_seed(0)
    torch.save(build_iresnet("iresnet18").state_dict(), arcface)
    return ExperimentConfig(
        data=data,
        metric=save_metric(metric, root / "metric.safetensors"),
        out=root / "out",
        models=("ganmut", "icface"),
        ganmut=load_config(SPFEMTrainConfig, root / "ganmut.toml"),
        icface=load_config(SPFEMTrainConfig, root / "icface.toml"),
        test_speakers=("B02",),
        eval=load_config(EvalConfig, root / "eval.toml", ["--arcface-weights", str(arcface)]),
    )


def train_changed(config: ExperimentConfig, **changes) -> ExperimentConfig:
    """``config`` without evaluation, both models' training changed by ``changes``."""
    models = {m: dataclasses.replace(getattr(config, m), **changes) for m in config.models}
    return dataclasses.replace(config, evaluate=False, **models)


@pytest.fixture(scope="module")
def outputs(setup) -> dict[str, Path]:
    return run_experiment(setup)


def test_results_follow_the_evaluate_layout_frame_aligned_with_sources(setup, outputs):
    index = scan_results(outputs["results"])
    assert index.methods == ["ganmut", "ganmut_asccl", "icface", "icface_asccl"]
    assert sorted(index.settings) == ["cross_id", "inter_id", "single"]
    assert {c.method for c in index.select(setting="single")} == {"ganmut", "ganmut_asccl"}
    assert {c.method for c in index.select(setting="cross_id")} == {"icface", "icface_asccl"}
    assert sorted(index.emotions) == sorted(EMOTIONS)
    assert {c.name for c in index.clips} == {"B02_001"}  # the held-out speaker only
    assert [p for p in index.problems if "no method has emotion(s)" not in p] == []
    for clip in index.clips:
        assert clip.source is not None
        if clip.setting != "single":  # ICface: the reference that drove it, frame-aligned
            assert clip.reference is not None
            with av.open(str(clip.reference)) as reference:
                assert reference.streams.video[0].frames == FRAMES
        with av.open(str(clip.path)) as result, av.open(str(clip.source)) as source:
            assert result.streams.video[0].frames == source.streams.video[0].frames == FRAMES
            assert result.streams.video[0].width == 32  # the generator's size
            assert not result.streams.audio  # silent: LSE reads the source's speech
            assert len(source.streams.audio) == 1  # the neutral clip's audio, copied


def test_references_are_never_the_target_nor_its_sentence(setup, outputs):
    """Inter-ID: the same speaker's other sentence in the target emotion (NED's protocol);
    cross-ID: another speaker. Chosen by :func:`choose_reference` and checked in the
    written reference videos: sentence 002 is flat grey 100 + 10 k (k = 0..3 for A01
    angry, A01 happy, B02 angry, B02 happy), the target (001) is 4x4-block noise whose
    pixels spread over 0..255, so a reference frame within 3 grey levels of its flat value
    (JPEG + H.264 of a flat frame round-trip to within 1; the noise's per-frame standard
    deviation is ~70) can only come from 002."""
    from asccl.spfem.results import choose_reference, reference_clips, test_clips

    test, _ = test_clips(setup)
    candidates = reference_clips(setup, "jpeg")
    assert {c.sentence for c in candidates} == {"001", "002"}
    for clip in test:
        inter = choose_reference(clip, candidates, "inter_id", setup, "jpeg")
        cross = choose_reference(clip, candidates, "cross_id", setup, "jpeg")
        assert inter.clip_id != clip.emotional.clip_id and inter.sentence != "001"
        assert (inter.speaker, inter.emotion) == ("B02", clip.pair.emotion)
        assert cross.speaker == "A01" and cross.emotion == clip.pair.emotion
        assert cross.sentence == "002"  # another sentence first
    grey = {("B02", "angry"): 120, ("B02", "happy"): 130, ("A01", "angry"): 100,
            ("A01", "happy"): 110}  # fmt: skip
    for setting, speaker in (("inter_id", "B02"), ("cross_id", "A01")):
        for emotion in EMOTIONS:
            path = outputs["results"] / "references" / setting / emotion / "B02_001.mp4"
            with av.open(str(path)) as video:
                frames = np.stack([f.to_ndarray(format="rgb24") for f in video.decode(video=0)])
            assert len(frames) == FRAMES  # frame i drives source frame i
            assert np.abs(frames.astype(int) - grey[speaker, emotion]).max() <= 3, path
    # with no other sentence of the speaker there is no inter-ID reference, never the target
    alone = [c for c in candidates if c.sentence == "001"]
    assert all(choose_reference(clip, alone, "inter_id", setup, "jpeg") is None for clip in test)


def test_both_variants_train_with_the_same_budget_and_only_one_uses_asccl(setup, outputs):
    base = read_log(setup.out / "train" / "ganmut" / "log.csv")
    ours = read_log(setup.out / "train" / "ganmut_asccl" / "log.csv")
    assert [r["step"] for r in base] == [r["step"] for r in ours]
    assert all(r.get("asccl") in (None, "") for r in base)
    assert all(float(r["asccl"]) > 0 for r in ours)


def test_comparison_reports_both_variants_and_the_better_one(setup, outputs):
    with open(outputs["comparison_csv"], newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [(r["model"], r["setting"], r["metric"]) for r in rows] == [
        ("ganmut", "single", "CSIM↑"),
        ("icface", "inter_id", "CSIM↑"),
        ("icface", "cross_id", "CSIM↑"),
    ]
    for row in rows:
        base, ours = float(row["baseline"]), float(row["+ASCCL"])
        assert -1 <= base <= 1 and -1 <= ours <= 1
        assert float(row["difference"]) == pytest.approx(ours - base, abs=1e-3)
        if abs(ours - base) > 1e-3:  # clearly apart (the CSV rounds to 4 decimals)
            assert row["better"] == ("+ASCCL" if ours > base else "baseline")
        else:
            assert row["better"] in ("tie", "+ASCCL" if ours >= base else "baseline")
    assert "ganmut_asccl" in outputs["eval_table_single_md"].read_text()
    assert "icface_asccl" in outputs["eval_table_cross_id_md"].read_text()
    for setting in ("single", "inter_id", "cross_id"):
        assert outputs[f"eval_grid_{setting}"].is_file()


def test_a_rerun_keeps_results_and_a_new_checkpoint_remakes_them(setup, outputs):
    result = outputs["results"] / "ganmut" / "single" / "angry" / "B02_001.mp4"
    ours = outputs["results"] / "ganmut_asccl" / "single" / "angry" / "B02_001.mp4"
    before = result.stat().st_mtime_ns, ours.stat().st_mtime_ns
    run_experiment(dataclasses.replace(setup, evaluate=False))
    assert (result.stat().st_mtime_ns, ours.stat().st_mtime_ns) == before
    # three steps instead of two: only the changed runs' results are made again
    run_experiment(train_changed(setup, steps=3))
    assert result.stat().st_mtime_ns != before[0] and ours.stat().st_mtime_ns != before[1]


def test_a_rerun_with_other_training_maths_is_refused_before_writing(setup, outputs, capsys):
    before = snapshot(setup.out)
    with pytest.raises(ConfigError, match="cannot resume") as err:
        run_experiment(train_changed(setup, g_lr=3e-4))
    line = str(err.value)
    assert "\n" not in line and "g_lr 0.0001 -> 0.0003" in line and "--resume false" in line
    assert str(setup.out / "train" / "ganmut") in line
    assert snapshot(setup.out) == before


def test_a_rerun_with_another_clip_selection_makes_the_results_again(setup, outputs, capsys):
    result = outputs["results"] / "ganmut" / "single" / "angry" / "B02_001.mp4"
    source = outputs["results"] / "sources" / "angry" / "B02_001.mp4"
    before = result.stat().st_mtime_ns, source.stat().st_mtime_ns
    capsys.readouterr()
    # the same 3 training steps as the rerun above: the trained generators are reused
    run_experiment(dataclasses.replace(train_changed(setup, steps=3), max_clips_per_emotion=1))
    printed = capsys.readouterr().out
    assert "max_clips_per_emotion 0 -> 1" in printed and "removing its" in printed
    assert result.stat().st_mtime_ns != before[0] and source.stat().st_mtime_ns != before[1]
    assert "ganmut results: 4 written, 0 kept" in printed  # 2 clips x 2 variants


def test_an_unknown_test_speaker_is_a_clear_error(setup, tmp_path):
    config = dataclasses.replace(setup, test_speakers=("Z99",), out=tmp_path)
    with pytest.raises(DataError, match=r"pairs\.csv.*Z99"):
        run_experiment(config)


def test_config_is_checked():
    with pytest.raises(ConfigError, match="asccl_weight"):
        ExperimentConfig(asccl_weight=0)
    with pytest.raises(ConfigError, match="unknown"):
        ExperimentConfig(models=("stargan",))
    assert ExperimentConfig(models="ganmut", test_speakers="W903").test_speakers == ("W903",)


@pytest.mark.parametrize(
    ("key", "value"),
    [("asccl_weight", "-1"), ("asccl_weight", "nan"), ("asccl_weight", "inf"),
     ("generation_batch_size", "0"), ("max_clips_per_emotion", "-1"), ("seed", "-3"),
     ("models", "[]"), ("models", '["ganmut", "ganmut"]'), ("test_speakers", "[]"),
     ("device", "tpu"), ("evaluate", "1"), ("ganmut.steps", "0"), ("icface.g_lr", "nan"),
     ("ganmut.model", "icface"), ("eval.batch_size", "0"), ("eval.metrics", '["lpips"]')],
)  # fmt: skip
def test_config_refuses_nonsense_naming_the_key(key, value):
    with pytest.raises(ConfigError) as err:
        load_config(ExperimentConfig, None, [f"--{key}", value])
    assert "\n" not in str(err.value)
    assert all(part in str(err.value) for part in key.split(".")), str(err.value)


def test_config_nests_the_runs_and_evaluation_configs(tmp_path):
    """A model's training config and the evaluation's: a table, a file, or a file with keys
    on top; ``--ganmut.steps`` style overrides reach them; each run gets the experiment's
    data, seed, held-out speakers, output folder, metric and ASCCL weight."""
    from asccl.spfem.experiment import eval_config, train_configs

    (tmp_path / "ganmut.toml").write_text(GANMUT_TOML)
    (tmp_path / "icface.toml").write_text(ICFACE_TOML)
    (tmp_path / "eval.toml").write_text(EVAL_TOML)
    toml = tmp_path / "experiment.toml"
    toml.write_text(f"""
seed = 3
metric = "m.safetensors"
test_speakers = ["B02"]
ganmut = "{tmp_path / "ganmut.toml"}"
eval = "{tmp_path / "eval.toml"}"
[icface]
include = "{tmp_path / "icface.toml"}"
steps = 5
icface.d_layers = 2
""")
    config = load_config(ExperimentConfig, toml, ["--ganmut.g-lr", "3e-4", "--icface.steps", "7"])
    assert config.ganmut == dataclasses.replace(
        load_config(SPFEMTrainConfig, tmp_path / "ganmut.toml"), g_lr=3e-4)  # fmt: skip
    assert config.icface.steps == 7 and config.icface.icface.d_layers == 2  # file, then keys
    assert config.icface.batch_size == 4 and config.icface.icface.conv_dim == 8  # the file's
    assert config.eval == load_config(EvalConfig, tmp_path / "eval.toml")
    runs = train_configs(config, "icface")
    assert runs["baseline"] == dataclasses.replace(
        config.icface, data=config.data, out=config.out / "train" / "icface", seed=3,
        exclude_speakers=("B02",), asccl_weight=0.0, asccl_checkpoint=Path("m.safetensors"),
    )  # fmt: skip
    assert runs["asccl"] == dataclasses.replace(
        runs["baseline"], out=config.out / "train" / "icface_asccl", asccl_weight=1.0)  # fmt: skip
    evaluation = eval_config(config, tmp_path / "results")
    assert evaluation == dataclasses.replace(
        config.eval, results=tmp_path / "results", out=config.out / "eval",
        methods=("ganmut", "ganmut_asccl", "icface", "icface_asccl"),
    )  # fmt: skip
    # a file given on the command line replaces the table; keys still go on top of it
    again = load_config(ExperimentConfig, toml, ["--icface.steps", "9", "--icface",
                                                 str(tmp_path / "icface.toml")])  # fmt: skip
    assert again.icface.steps == 9 and again.icface.icface.d_layers == 3
    (tmp_path / "ganmut.toml").write_text('model = "ganmut"\nsteps = 0\n')
    with pytest.raises(ConfigError, match=r"ganmut \(from .*ganmut\.toml\): steps must be"):
        load_config(ExperimentConfig, toml)


def test_models_must_share_the_image_size_and_crop_format_of_the_sources(setup):
    """One sources/ folder serves every model of a results folder: models of other sizes
    (or crop formats) would score one model against the other's sources."""
    for key, value in (("image_size", 64), ("crop_format", "npy")):
        icface = dataclasses.replace(setup.icface, **{key: value})
        with pytest.raises(ConfigError) as err:
            dataclasses.replace(setup, icface=icface)
        line = str(err.value)
        assert "\n" not in line
        assert f"ganmut.{key} = {getattr(setup.ganmut, key)!r} and icface.{key} = {value!r}" in line
        # a model left out of the experiment does not count
        dataclasses.replace(setup, icface=icface, models=("ganmut",))


def test_a_metric_trained_on_a_test_speaker_is_refused_before_writing(setup, small_metric,
                                                                      tmp_path):  # fmt: skip
    metric = save_metric(small_metric, tmp_path / "seen.safetensors",
                         speakers={"train": ["A01", "B02"], "validation": []})  # fmt: skip
    config = dataclasses.replace(setup, metric=metric, out=tmp_path / "out", models=("ganmut",),
                                 evaluate=False)  # fmt: skip
    with pytest.raises(ConfigError) as err:
        run_experiment(config)
    line = str(err.value)
    assert "\n" not in line and str(metric) in line
    assert "trained on test speaker(s) B02 (its training speakers: A01, B02)" in line
    assert not config.out.exists()


def test_a_metric_validated_on_the_test_speakers_passes_and_an_old_one_warns(
    setup, small_metric, tmp_path, capsys
):
    from asccl.spfem.experiment import check_metric_speakers

    held_out = save_metric(small_metric, tmp_path / "held_out.safetensors",
                           speakers={"train": ["A01"], "validation": ["B02"]})  # fmt: skip
    capsys.readouterr()
    check_metric_speakers(dataclasses.replace(setup, metric=held_out))
    assert capsys.readouterr().out == ""
    check_metric_speakers(setup)  # saved without the record, as before it existed
    [line] = capsys.readouterr().out.splitlines()
    assert line.startswith(f"warning: {setup.metric} records no training speakers")
    assert "could not check that the test speakers (B02)" in line
