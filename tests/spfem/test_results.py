"""The experiment's results read what each model trained on: its crop format's stores, its
emotions only; a file already in results/ made at another size is refused, never kept.

Generators here are random-weight ones saved in their checkpoint format (what the results
step loads): no training runs, so each case takes a second or two."""

from __future__ import annotations

import csv
import dataclasses
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from tests.spfem.test_experiment import make_setup

from asccl.data.crop_store import crop_path, open_clip_crops, write_clip_crops
from asccl.data.errors import DataError
from asccl.data.video import iter_frames
from asccl.spfem.experiment import ExperimentConfig, run_experiment, train_configs
from asccl.spfem.generators import build_generator
from asccl.spfem.generators.checkpoint import save_generator
from asccl.spfem.results import generate_results

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
