"""The experiment's results read what each model trained on: its crop format's stores, its
emotions only; a file already in results/ made at another size is refused, never kept.

Generators here are random-weight ones saved in their checkpoint format (what the results
step loads): no training runs, so each case takes a second or two."""

from __future__ import annotations

import csv
import dataclasses
import json
import shutil
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from tests.spfem.test_experiment import make_setup, write_other_sentence

from asccl.data.clip_index import read_clip_index, write_clip_index
from asccl.data.crop_store import crop_path, open_clip_crops, write_clip_crops
from asccl.data.errors import DataError
from asccl.data.video import iter_frames
from asccl.spfem.experiment import ExperimentConfig, run_experiment, train_configs
from asccl.spfem.generators import build_generator
from asccl.spfem.generators.checkpoint import save_generator
from asccl.spfem.results import generate_results, results_settings
from asccl.spfem.results import test_clips as select_test_clips  # pytest collects test_*

CLIP = "B02/neutral/level_1/001"  # the test speaker's neutral clip (the source)


@pytest.fixture(scope="module")
def setup(tmp_path_factory, small_metric) -> ExperimentConfig:
    """The experiment tests' stage 1 (jpeg stores, 32 px), and beside every jpeg store an
    npy store of the same clip with its frames inverted (``255 - x``), so that a source
    shows which store it was cut from."""
    config = make_setup(tmp_path_factory.mktemp("results"), small_metric)
    for path in sorted((config.data / "crops").rglob("*.npz")):
        clip_id = str(path.relative_to(config.data / "crops"))[: -len(".npz")]
        crops = open_clip_crops(path).read_all()
        inverted = dataclasses.replace(crops, frames=255 - crops.frames)
        write_clip_crops(inverted, crop_path(config.data, clip_id, "npy"), format="npy")
    return dataclasses.replace(config, evaluate=False)


def random_checkpoints(config: ExperimentConfig, model: str, root: Path) -> dict[str, Path]:
    """``{variant: generator file}``: random-weight generators at the model's training size."""
    train = train_configs(config, model)["baseline"]
    torch.manual_seed(0)
    return {v: save_generator(build_generator(model, train.model_config()),
                              root / f"{model}_{v}.safetensors")
            for v in ("baseline", "asccl")}  # fmt: skip


def with_model(config: ExperimentConfig, model: str, out: Path, **changes) -> ExperimentConfig:
    """``config`` for ``model`` alone, its training config changed by ``changes``."""
    train = dataclasses.replace(getattr(config, model), **changes)
    return dataclasses.replace(config, models=(model,), out=out, **{model: train})


def video(path: Path) -> np.ndarray:
    return np.stack(list(iter_frames(path))).astype(np.float64)


def test_sources_come_from_the_crop_format_the_model_trained_on(setup, tmp_path):
    """``crop_format = "npy"``: training reads the npy stores, so must the results (the
    jpeg store of the same clip was read first whatever the format). H.264 of the 4x4-block
    noise frames round-trips to a mean error of ~7.5 grey levels (measured); the other
    store's frames are ``255 - x``, off by ``|255 - 2x|``, ~127 on average over noise that
    spreads over 0..255: 40 parts them."""
    for fmt, other in (("npy", "jpeg"), ("jpeg", "npy")):
        config = with_model(setup, "ganmut", tmp_path / fmt, crop_format=fmt)
        generate_results(config, "ganmut", random_checkpoints(config, "ganmut", tmp_path))
        source = video(config.out / "results/sources/angry/B02_001.mp4")
        error = {store: np.abs(source - open_clip_crops(crop_path(setup.data, CLIP, store))
                               .read_all().frames).mean() for store in (fmt, other)}  # fmt: skip
        assert error[fmt] < 40 < error[other], (fmt, error)


def test_a_model_trained_on_some_emotions_gets_results_for_those_only(setup, tmp_path, capsys):
    config = with_model(setup, "icface", tmp_path, emotions=("angry",))
    root = generate_results(config, "icface", random_checkpoints(config, "icface", tmp_path))
    written = sorted(str(p.relative_to(root)) for p in root.rglob("*.mp4"))
    assert written == sorted(
        f"{folder}/angry/B02_001.mp4"
        for folder in ("sources", "references/inter_id", "references/cross_id",
                       "icface/inter_id", "icface/cross_id",
                       "icface_asccl/inter_id", "icface_asccl/cross_id")
    )  # fmt: skip
    printed = capsys.readouterr().out
    assert "icface: trained on angry only: no results for happy (1 test clip(s) left out)" in (
        printed
    )


def test_a_source_made_at_another_size_is_refused_not_kept(setup, tmp_path):
    """sources/ is shared by every model of a results folder: one written at 32 px must not
    stand as the source of a 64 px model's results (it was kept, so 64 px results were
    scored against 32 px sources)."""
    small = with_model(setup, "ganmut", tmp_path)
    generate_results(small, "ganmut", random_checkpoints(small, "ganmut", tmp_path))
    source = small.out / "results/sources/angry/B02_001.mp4"
    before = source.read_bytes()
    large = with_model(setup, "icface", tmp_path, image_size=64)
    with pytest.raises(DataError) as err:
        generate_results(large, "icface", random_checkpoints(large, "icface", tmp_path))
    line = str(err.value)
    assert "\n" not in line and str(source) in line
    assert "32x32 px, 6 frames; this run writes 64x64 px, 6 frames" in line
    assert source.read_bytes() == before
    # the same settings again: everything is kept as it is
    generate_results(small, "ganmut", random_checkpoints(small, "ganmut", tmp_path))
    assert source.read_bytes() == before


def test_a_result_of_another_length_is_refused_not_kept(setup, tmp_path):
    config = with_model(setup, "ganmut", tmp_path)
    checkpoints = random_checkpoints(config, "ganmut", tmp_path)
    root = generate_results(config, "ganmut", checkpoints)
    result = root / "ganmut/single/happy/B02_001.mp4"
    with av.open(str(result)) as container:
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    from asccl.data.video import write_video

    write_video(result, np.stack(frames[:-1]), fps=25.0)  # one frame short
    with pytest.raises(DataError, match=r"32x32 px, 5 frames; this run writes 32x32 px, 6"):
        generate_results(config, "ganmut", checkpoints)


@pytest.mark.slow
def test_the_comparison_pairs_the_variants_of_a_model_trained_on_one_emotion(setup, tmp_path):
    """End to end (train, results, evaluate, compare; ~15 s): the evaluation scores the
    emotion trained on, and the comparison's row pairs the baseline with +ASCCL there."""
    config = dataclasses.replace(with_model(setup, "ganmut", tmp_path, emotions=("angry",)),
                                 evaluate=True)  # fmt: skip
    paths = run_experiment(config)
    with open(paths["eval_scores"], newline="") as handle:
        scores = [r for r in csv.DictReader(handle) if r["metric"] == "csim"]
    assert {(r["method"], r["emotion"]) for r in scores} == {
        (m, e) for m in ("ganmut", "ganmut_asccl") for e in ("angry", "average")}  # fmt: skip
    value = {(r["method"], r["emotion"]): float(r["value"]) for r in scores}
    with open(paths["comparison_csv"], newline="") as handle:
        [row] = list(csv.DictReader(handle))
    assert (row["model"], row["setting"], row["metric"]) == ("ganmut", "single", "CSIM↑")
    # the CSV rounds to 4 decimals
    assert float(row["baseline"]) == pytest.approx(value["ganmut", "average"], abs=5e-5)
    assert float(row["+ASCCL"]) == pytest.approx(value["ganmut_asccl", "average"], abs=5e-5)


# ------------------------------------------------------- frames where stage 1 found no face
# make_setup's stage 1: A01's neutral clip has no face in frame 1 (of 6), B02's has one in
# every frame; pairs.csv lists A01 angry, A01 happy, B02 angry, B02 happy in that order.


def rewrite_store(data: Path, clip_id: str, no_face=(), grey: int | None = None) -> None:
    """Rewrite ``clip_id``'s stores (each format there) with frames ``no_face`` marked
    without a face and, given ``grey``, every pixel that grey level."""
    for fmt in ("jpeg", "npy"):
        path = crop_path(data, clip_id, fmt)
        if path.exists():
            crops = open_clip_crops(path).read_all()
            valid = crops.valid.copy()
            valid[list(no_face)] = False
            frames = crops.frames if grey is None else np.full_like(crops.frames, grey)
            write_clip_crops(dataclasses.replace(crops, frames=frames, valid=valid), path, fmt)


def data_copy(setup: ExperimentConfig, root: Path) -> Path:
    return Path(shutil.copytree(setup.data, root / "data"))


def test_a_test_clip_with_a_frame_without_a_face_is_left_out_and_named_once(
    setup, tmp_path, capsys
):
    """Both speakers tested, one clip per emotion: A01's clips come first but their source
    has a no-face (black) frame, so B02's take their place; A01 is named once (the
    experiment's own test_clips call; generate_results' is quiet) and recorded in the
    results' settings stamp."""
    config = dataclasses.replace(with_model(setup, "ganmut", tmp_path / "out"),
                                 test_speakers=("A01", "B02"), max_clips_per_emotion=1)  # fmt: skip
    test, _ = select_test_clips(config)
    assert [(c.name, c.pair.emotion) for c in test] == [("B02_001", "angry"),
                                                        ("B02_001", "happy")]  # fmt: skip
    root = generate_results(config, "ganmut", random_checkpoints(config, "ganmut", tmp_path))
    assert sorted(p.stem for p in root.rglob("*.mp4")) == ["B02_001"] * 6  # 2 sources, 4 results
    printed = capsys.readouterr().out
    assert printed.count("A01_001") == 1
    assert "test clip A01_001 (angry, happy) left out: 1 of its 6 frames have no face" in printed
    assert "B02_001" not in printed and "no results for" not in printed
    settings = results_settings(config, {"ganmut": 32}, {"ganmut": "jpeg"})
    assert json.loads(settings["left_out_no_face"]) == {"A01_001": 1}
    # B02 alone: nothing is left out, and the stamp is what it was before this rule
    alone = dataclasses.replace(config, test_speakers=("B02",))
    assert "left_out_no_face" not in results_settings(alone, {"ganmut": 32}, {"ganmut": "jpeg"})


def test_an_emotion_whose_every_test_clip_is_left_out_has_no_results(setup, tmp_path, capsys):
    """Without B02's happy pair, happy's only test clip is A01's (no face in frame 1)."""
    from asccl.data.pair_files import read_pairs_table, write_pairs_table

    data = data_copy(setup, tmp_path)
    pairs = read_pairs_table(data / "pairs.csv")
    write_pairs_table([p for p in pairs if (p.speaker, p.emotion) != ("B02", "happy")],
                      data / "pairs.csv")  # fmt: skip
    config = dataclasses.replace(with_model(setup, "ganmut", tmp_path / "out"), data=data,
                                 test_speakers=("A01", "B02"))  # fmt: skip
    test, _ = select_test_clips(config)
    assert [(c.name, c.pair.emotion) for c in test] == [("B02_001", "angry")]
    printed = capsys.readouterr().out
    assert "happy: every test clip has frames without a face: no results for it" in printed
    # nothing left at all: one line naming the stores
    with pytest.raises(DataError) as err:
        select_test_clips(dataclasses.replace(config, test_speakers=("A01",)))
    line = str(err.value)
    assert "\n" not in line and str(data / "crops") in line
    assert "every test clip has frames without a face" in line
    assert "A01/neutral/level_1/001: 1 of 6 frames" in line


def with_sentence_003(setup: ExperimentConfig, root: Path) -> ExperimentConfig:
    """``setup`` on a copy of its data with emotional clips of a third sentence (003, flat
    grey 200, unlike 002's 100..130), for icface."""
    data = data_copy(setup, root)
    clips = read_clip_index(data / "clips.csv") + write_other_sentence(data, "003")
    write_clip_index(clips, data / "clips.csv")
    for clip in clips:
        if clip.sentence == "003":
            rewrite_store(data, clip.clip_id, grey=200)
    return dataclasses.replace(with_model(setup, "icface", root / "out"), data=data)


def reference_grey(root: Path, setting: str, emotion: str) -> float:
    return float(video(root / "references" / setting / emotion / "B02_001.mp4").mean())


def test_a_reference_without_a_face_in_a_frame_it_drives_is_passed_over(setup, tmp_path):
    """Sentence 002 comes first (test_references_are_never_the_target_nor_its_sentence);
    with a no-face frame among the 6 it drives, 003 (grey 200) drives instead; one past
    them (frame 7 of 8) does not matter. Flat greys round-trip through JPEG and H.264 to
    within 1 level (that test), so 3 levels tell 200 from 100..130."""
    config = with_sentence_003(setup, tmp_path)
    rewrite_store(config.data, "B02/angry/level_3/002", no_face=(0,))  # inter-ID, angry
    rewrite_store(config.data, "A01/angry/level_3/002", no_face=(5,))  # cross-ID, angry
    rewrite_store(config.data, "B02/happy/level_3/002", no_face=(7,))  # not driving
    root = generate_results(config, "icface", random_checkpoints(config, "icface", tmp_path))
    expected = {("inter_id", "angry"): 200, ("cross_id", "angry"): 200,
                ("inter_id", "happy"): 130, ("cross_id", "happy"): 110}  # fmt: skip
    for (setting, emotion), grey in expected.items():
        assert abs(reference_grey(root, setting, emotion) - grey) <= 3, (setting, emotion)


def test_a_clip_whose_every_reference_lacks_a_face_gets_no_result_in_that_setting(
    setup, tmp_path, capsys
):
    config = with_sentence_003(setup, tmp_path)
    for sentence in ("002", "003"):
        rewrite_store(config.data, f"B02/angry/level_3/{sentence}", no_face=(2,))
    root = generate_results(config, "icface", random_checkpoints(config, "icface", tmp_path))
    printed = capsys.readouterr().out
    assert ("B02_001 angry: no inter_id reference (each of its 2 has frames without a face "
            "among the 6 it would drive); skipped") in printed  # fmt: skip
    written = {str(p.relative_to(root)) for p in root.rglob("*.mp4")}
    assert not any("inter_id/angry" in p for p in written)
    for folder in ("references", "icface", "icface_asccl"):  # the other settings keep it
        assert {f"{folder}/cross_id/angry/B02_001.mp4", f"{folder}/inter_id/happy/B02_001.mp4",
                f"{folder}/cross_id/happy/B02_001.mp4"} <= written  # fmt: skip
