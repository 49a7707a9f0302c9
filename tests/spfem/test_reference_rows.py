"""The ground-truth tables' reference rows (``ExperimentConfig.reference_rows``): ``source``
(the unedited input scored as a result) and ``truth`` (the ground truth itself), scored by
the evaluation's own code beside the methods, never ranked, never in ``comparison.*``.

The results folder is tiny (3 PNG frames of 48 px per clip, lossless) and the face tracker
is a test double that knows every frame's landmarks (tests/evaluation/known_faces.py), so
each clip's tracked landmarks are exactly the ones set here: the landmark errors are hand
computable (as in tests/evaluation/test_ground_truth_runner.py).
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from tests.evaluation.known_faces import KnownFaces, random_face, save_frames

from asccl.config import ConfigError, load_config
from asccl.evaluation import features as features_module
from asccl.evaluation.config import EvalConfig
from asccl.evaluation.framing import make_tracker
from asccl.evaluation.ground_truth_features import PSNR_CAP
from asccl.spfem.experiment import ExperimentConfig, run_experiment
from asccl.spfem.reference_rows import (
    GT_METRICS,
    label,
    score_references,
    write_references,
)

T, SIZE, IOD = 3, 48, 20.0  # frames, frame side, inter-ocular distance (points 36-45) in px
NAME = "W903_001"
#: mouth points' (48-67) vertical shift of each clip's landmarks from the truth's, per frame
MOUTH = {"source": (1.0, 2.0, 4.0), "ganmut": (0.5, 1.0, 3.0), "ganmut_asccl": (0.5, 0.5, 0.5)}
BROWS = 2.0  # the source's brows (17-26) sit 2 px lower than the truth's: its expression


def _shift(name: str) -> np.ndarray:
    shift = np.zeros((T, 68, 2))
    shift[:, 48:68, 1] = np.array(MOUTH[name])[:, None]
    if name == "source":
        shift[:, 17:27, 1] = BROWS
    return shift


@pytest.fixture
def results(setup) -> Path:
    return setup["root"]


@pytest.fixture
def setup(tmp_path, monkeypatch) -> dict:
    """``root``: ``results/`` with sources, ground truth (+ landmarks), the two GANmut
    variants and ``noop`` (a method whose outputs are its inputs, byte for byte); ``known``
    (the tracker's double, in use) and ``frames`` (each clip's)."""
    rng = np.random.default_rng(0)
    truth = rng.integers(0, 256, (T, SIZE, SIZE, 3), dtype=np.uint8)
    marks = np.stack([random_face(rng, IOD) for _ in range(T)])
    known = KnownFaces(margin=(-4, -8, 4, 4))
    known_frames = {"truth": truth}
    for t in range(T):
        known.add(truth[t], marks[t])
    for name in MOUTH:
        frames = rng.integers(0, 256, (T, SIZE, SIZE, 3), dtype=np.uint8)
        for t in range(T):
            known.add(frames[t], marks[t] + _shift(name)[t])
        known_frames[name] = frames
    root = tmp_path / "results"
    save_frames(root / "sources" / "happy" / NAME, known_frames["source"])
    save_frames(root / "ground_truth" / "single" / "happy" / NAME, truth)
    np.save(root / "ground_truth" / "single" / "happy" / f"{NAME}.landmarks.npy", marks)
    for method in ("ganmut", "ganmut_asccl"):
        save_frames(root / method / "single" / "happy" / NAME, known_frames[method])
    save_frames(root / "noop" / "single" / "happy" / NAME, known_frames["source"])
    tracker = make_tracker(known, detect_every=1)
    monkeypatch.setattr(features_module.Extractors, "tracker", lambda self: tracker)
    return {"root": root, "known": known, "frames": known_frames}


def _eval(results: Path, out: Path, methods: tuple[str, ...]) -> EvalConfig:
    return EvalConfig(results=results, out=out, metrics=("ground_truth",), framing="none",
                      grid_clips=0, methods=methods)  # fmt: skip


def test_truth_row_is_the_tracker_floor_and_beats_the_source(results, tmp_path):
    scores, _ = score_references(_eval(results, tmp_path / "eval", ("ganmut",)), ("source",
                                 "truth"))  # fmt: skip
    table = scores["single"].scores
    for row in ("happy", "average"):
        truth, source = table["truth"][row], table["source"][row]
        # the tracker double returns the exact landmarks: its own error (the floor) is 0
        assert truth["lme_mouth"] == truth["lme_face"] == 0.0
        # identical PNG frames: infinite PSNR, stored as the cap; SSIM of equal frames 1
        assert truth["psnr"] == PSNR_CAP and truth["ssim"] == pytest.approx(1.0, abs=1e-12)
        # the source moved 20 mouth and 10 brow points: mean over the 68 points and frames
        face = np.mean([(20 * d + 10 * BROWS) / 68 for d in MOUTH["source"]]) / IOD
        assert source["lme_face"] == pytest.approx(face, abs=1e-6)  # float32 points: ~1e-6 px
        assert truth["lme_face"] < source["lme_face"] and truth["ssim"] > source["ssim"]
    assert (scores["single"].capped["truth", "happy"]) == (T, T)  # every frame at the cap


def test_source_row_equals_a_method_that_returns_its_input(results, tmp_path):
    """Same procedure, same frames: a do-nothing method scores exactly the ``source`` row;
    its mouth error is the expression's own mouth movement (the truth keeps the source's
    speech, its mouth moved by the target expression only): mean shift / IOD."""
    scores, _ = score_references(_eval(results, tmp_path / "eval", ("ganmut", "noop")),
                                 ("source",))  # fmt: skip
    table = scores["single"].scores
    assert table["source"] == table["noop"]  # every row, every metric, bit for bit
    assert table["source"]["happy"]["lme_mouth"] == pytest.approx(
        np.mean(MOUTH["source"]) / IOD, abs=1e-6
    )


def test_reference_tables_label_the_rows_and_mark_no_winner(results, tmp_path):
    config = _eval(results, tmp_path / "eval", ("ganmut", "ganmut_asccl"))
    paths = write_references(config, ("source", "truth"))
    md = paths["references_single_md"].read_text()
    header, body = md.split("|---", 1)
    assert label("source") in header and label("truth") in header
    assert "**" not in body.split("\n\n")[0]  # no bold cell: the truth would win every column
    assert "never ranked" in md and "have a face" in md  # the footnote: what and which frames
    assert "*" not in paths["references_single_csv"].read_text()  # CSV's winner mark
    assert r"\textbf" not in paths["references_single_tex"].read_text()
    assert paths["references_plot_single"].is_file()
    with open(paths["references_scores"], newline="") as handle:
        kinds = {(r["method"], r["kind"]) for r in csv.DictReader(handle)}
    assert kinds == {("ganmut", "method"), ("ganmut_asccl", "method"), ("source", "reference"),
                     ("truth", "reference")}  # fmt: skip


def _experiment(results: Path, tmp_path: Path, monkeypatch, **keys) -> ExperimentConfig:
    """An experiment whose training and generation are replaced (each run's results are the
    fixture's, copied in): its evaluation, comparison and reference rows run for real."""
    import shutil

    import asccl.spfem.experiment as experiment
    import asccl.spfem.results as results_module
    import asccl.spfem.train as train_module

    metric = tmp_path / "metric.safetensors"
    metric.write_bytes(b"")
    weights = {"baseline": metric, "asccl": metric}

    def generate(config, model, checkpoints):
        if not (config.out / "results").is_dir():
            shutil.copytree(results, config.out / "results")
        return config.out / "results"

    monkeypatch.setattr(results_module, "test_clips", lambda config, quiet=False: ([0], []))
    monkeypatch.setattr(results_module, "model_clips", lambda test, train: test)
    monkeypatch.setattr(results_module, "check_results_settings", lambda config, s: None)
    monkeypatch.setattr(results_module, "results_settings", lambda config, a, b: {})
    monkeypatch.setattr(results_module, "generate_results", generate)
    monkeypatch.setattr(train_module, "check_resumable", lambda train: None)
    monkeypatch.setattr(experiment, "train_variants", lambda config, model: weights)
    monkeypatch.setattr(experiment, "check_metric_speakers", lambda config: None)
    return ExperimentConfig(out=tmp_path / "experiment", metric=metric, models=("ganmut",),
                            ground_truth=tmp_path, reference_rows=("source", "truth"),
                            eval=_eval(tmp_path / "unused", tmp_path / "unused", ()),
                            **keys)  # fmt: skip


def test_experiment_keeps_reference_rows_out_of_comparison_and_eval_tables(
    results, tmp_path, monkeypatch
):
    config = _experiment(results, tmp_path, monkeypatch)
    paths = run_experiment(config)
    with open(paths["eval_scores"], newline="") as handle:  # what seeds.py averages
        assert {r["method"] for r in csv.DictReader(handle)} == {"ganmut", "ganmut_asccl"}
    with open(paths["comparison_csv"], newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert rows and {r["model"] for r in rows} == {"ganmut"}
    for name in ("comparison_md", "eval_table_single_md"):  # their tables' header cells
        header = next(line for line in paths[name].read_text().splitlines() if line[:2] == "| ")
        assert "source" not in header and "truth" not in header and "reference" not in header
    header = paths["eval_table_single_csv"].read_text().splitlines()[0]
    n = len(GT_METRICS)  # one column per method and ground-truth metric
    assert header == "emotion" + ",ganmut" * n + ",ganmut_asccl" * n
    assert "**" in paths["eval_table_single_md"].read_text()  # the methods' own winners stay
    reference = paths["references_single_md"].read_text()
    assert label("truth") in reference and "ganmut_asccl" in reference
    # every clip has a face in every frame: the references share the methods' frames, so
    # the methods' values in the reference table are the evaluation's, exactly
    assert "source 0, truth 0); the methods' values here are eval/tables/single.md's" in reference
    with open(paths["eval_scores"], newline="") as a, open(paths["references_scores"]) as b:
        evaluation = {tuple(r[k] for k in ("method", "emotion", "metric")): float(r["value"])
                      for r in csv.DictReader(a)}  # fmt: skip
        methods = {tuple(r[k] for k in ("method", "emotion", "metric")): float(r["value"])
                   for r in csv.DictReader(b) if r["kind"] == "method"}  # fmt: skip
    assert methods == evaluation


def test_reference_rows_without_ground_truth_are_refused_naming_the_key(tmp_path, capsys):
    from asccl.cli import main

    out = tmp_path / "exp"
    args = ["experiment", "--config", "configs/experiments/demo.toml", "--out", str(out),
            "--reference-rows", '["source", "truth"]']  # fmt: skip
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("asccl: error:") and "reference_rows" in err and "ground_truth" in err
    assert "\n" not in err and not out.exists()  # nothing written


@pytest.mark.parametrize("value", [("sauce",), ("truth", "truth"), "", (1,)])
def test_reference_rows_take_only_source_and_truth_once(value):
    with pytest.raises(ConfigError, match="reference_rows"):
        ExperimentConfig(reference_rows=value)


def test_reference_rows_are_off_by_default_and_on_in_the_groundtruth_configs():
    from asccl.groundtruth import GroundTruthConfig

    assert ExperimentConfig().reference_rows == ()
    for name in ("groundtruth", "groundtruth_gpu"):
        config = load_config(GroundTruthConfig, f"configs/experiments/{name}.toml")
        assert config.experiment.reference_rows == ("source", "truth"), name


class _NoFace(KnownFaces):
    """The double that finds no face in ``blind`` frames (they are still known to it)."""

    def __init__(self, known: KnownFaces, blind: list[np.ndarray]) -> None:
        super().__init__()
        self.by_frame, self.margin = known.by_frame, known.margin
        self.blind = {f.tobytes() for f in blind}

    def face_box(self, frame, near=None):
        return None if frame.tobytes() in self.blind else super().face_box(frame, near)

    def detect(self, frame):
        return None if frame.tobytes() in self.blind else super().detect(frame)


def test_a_reference_without_a_face_narrows_every_column_and_says_so(setup, tmp_path, monkeypatch):
    """The choice for common frames: the references count as methods there, so every column
    of the reference table is over the same frames (the main evaluation keeps its own)."""
    from asccl.evaluation.runner import run_evaluation

    blind = _NoFace(setup["known"], [setup["frames"]["source"][1]])  # source frame 1: no face
    tracker = make_tracker(blind, detect_every=1)
    monkeypatch.setattr(features_module.Extractors, "tracker", lambda self: tracker)
    config = _eval(setup["root"], tmp_path / "eval", ("ganmut", "ganmut_asccl"))
    with open(run_evaluation(config)["scores"], newline="") as handle:
        main = {(r["method"], r["emotion"], r["metric"]): float(r["value"])
                for r in csv.DictReader(handle)}  # fmt: skip
    paths = write_references(config, ("source", "truth"))
    with open(paths["references_scores"], newline="") as handle:
        got = {(r["method"], r["emotion"], r["metric"]): float(r["value"])
               for r in csv.DictReader(handle)}  # fmt: skip
    # frames 0 and 2 only, for every column: mean mouth shift over them / IOD
    for name in ("source", "ganmut"):
        shift = np.mean([MOUTH[name][0], MOUTH[name][2]]) / IOD
        assert got[(name, "happy", "lme_mouth")] == pytest.approx(shift, abs=1e-6)
    main_mouth = main[("ganmut", "happy", "lme_mouth")]  # its own frames: all 3
    assert main_mouth == pytest.approx(np.mean(MOUTH["ganmut"]) / IOD, abs=1e-6)
    md = paths["references_single_md"].read_text()
    assert "(frames without one: source 1, truth 0); the methods' values here differ" in md


def test_seeds_average_the_reference_rows_apart_from_the_methods_comparison(
    results, tmp_path, monkeypatch
):
    config = _experiment(results, tmp_path, monkeypatch, seeds=(0, 1))
    paths = run_experiment(config)
    with open(paths["comparison_csv"], newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert rows and {r["model"] for r in rows} == {"ganmut"}
    header = paths["seeds_table_single_csv"].read_text().splitlines()[0]
    n = len(GT_METRICS)
    assert header == "emotion" + ",ganmut" * n + ",ganmut_asccl" * n  # no reference column
    spread = paths["seeds_references_spread_single"].read_text()
    # both seeds score the same clips: the truth's mean is its value, the spread 0
    assert "| 0.000 ± 0.000 | 0.000 ± 0.000 | 100.000 ± 0.000 | 1.000 ± 0.000 |" in spread
    table = paths["seeds_references_single_md"].read_text()
    assert label("source") in table and "never ranked" in table
    assert paths["seeds_references_plot_single"].is_file()
    assert "**" not in table.split("|---", 1)[1].split("\n\n")[0]  # no winner
