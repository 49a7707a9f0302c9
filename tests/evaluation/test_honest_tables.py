"""Issue #15 points 3, 4 and 6, #19's tables: the real set is a choice named in the
caption, averages over the common set, no winner below the displayed precision, a non-zero
exit when nothing is comparable, a missing layout level named, and ``torchrun`` giving the
tables of one process."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from tests.evaluation.random_weights import save_random_arcface
from tests.evaluation.test_results import tiny_frames, write_tiny_results
from tests.evaluation.test_runner import MEAD, TinyFeatures
from tests.one_thread import one_thread  # noqa: F401 (autouse: single-threaded torch)
from tests.robustness.conftest import one_line_error

from asccl.cli import main
from asccl.data.errors import DataError
from asccl.data.video import write_video
from asccl.evaluation import runner
from asccl.evaluation.frechet import frechet_distance
from asccl.evaluation.kid import KID
from asccl.evaluation.results import make_demo_results
from asccl.evaluation.runner import EvalConfig, run_evaluation
from asccl.evaluation.syncnet import SyncNet


@pytest.fixture(scope="module")
def arcface(tmp_path_factory) -> Path:
    return save_random_arcface(tmp_path_factory.mktemp("weights") / "backbone.pth")


def _csim_argv(results: Path, out: Path, arcface: Path, metrics: str = '["csim"]') -> list[str]:
    return ["evaluate", "--results", str(results), "--out", str(out), "--metrics", metrics,
            "--distribution-metric", "fad", "--arcface-weights", str(arcface), "--framing",
            "center", "--arcface-backbone", "iresnet18", "--grid-clips", "0"]  # fmt: skip


# ------------------------------------------------------------------------- 3. the real set


def _mirror(results: Path, folder: str, seed: int) -> None:
    """``<folder>/inter_id/<emotion>/<name>.mp4`` beside every source, other frames each."""
    for k, source in enumerate(sorted((results / "sources").rglob("*.mp4"))):
        path = results / folder / "inter_id" / source.parent.name / source.name
        path.parent.mkdir(parents=True, exist_ok=True)
        write_video(path, tiny_frames(6, seed=seed + k), fps=25.0)


@pytest.fixture(scope="module")
def real_sets(tmp_path_factory) -> Path:
    results = write_tiny_results(tmp_path_factory.mktemp("real_sets") / "results")
    _mirror(results, "references", 100)
    _mirror(results, "ground_truth", 200)
    return results


def test_fid_against_each_real_set_as_an_independent_pooling_gives(real_sets, tmp_path,
                                                                   monkeypatch):  # fmt: skip
    """FID with a 4-d stand-in extractor: per emotion the Frechet distance between the
    pooled frames of the real set chosen and of the method's results, recomputed here from
    each clip's features with ``np.cov``. The runner sums sufficient statistics instead
    (another order of the same float64 sums over 12 frames of values ~1): they agree to
    ~1e-14; 1e-9 leaves room, while another real set moves FID by ~1e-4 to 5e-3 here."""
    model = runner.Extractors.model
    monkeypatch.setattr(runner.Extractors, "model", lambda self, kind: TinyFeatures()
                        if kind == "inception" else model(self, kind))  # fmt: skip
    base = EvalConfig(results=real_sets, distribution_metric="fid", metrics=("fid", "kid"),
                      grid_clips=0, out=tmp_path / "sources")  # fmt: skip
    extractors = runner.Extractors(base)

    def pooled(clips: list[Path]) -> np.ndarray:
        return np.concatenate([extractors.compute("inception", p, None)["features"]
                               for p in clips]).astype(np.float64)  # fmt: skip

    found = {}
    for real_set in ("sources", "references", "ground_truth"):
        config = replace(base, real_set=real_set, out=tmp_path / real_set)
        outputs = run_evaluation(config)
        with open(outputs["scores"]) as handle:
            scores = {(r["method"], r["emotion"], r["metric"]): float(r["value"])
                      for r in csv.DictReader(handle)}  # fmt: skip
        folder = {"sources": "sources"}.get(real_set, f"{real_set}/inter_id")
        for emotion in ("happy", "sad"):
            real = pooled(sorted((real_sets / folder / emotion).iterdir()))
            for method in ("baseline", "asccl"):
                clips = sorted((real_sets / method / "inter_id" / emotion).iterdir())
                fake = pooled(clips)
                expected = frechet_distance(real.mean(0), np.cov(real, rowvar=False),
                                            fake.mean(0), np.cov(fake, rowvar=False))  # fmt: skip
                assert scores[method, emotion, "fid"] == pytest.approx(expected, rel=1e-9,
                                                                       abs=1e-9)  # fmt: skip
                found[real_set, method, emotion] = expected
                kid = KID(torch.nn.Identity())  # KID of the pooled sets, one update each
                kid.update(torch.from_numpy(real), real=True)
                kid.update(torch.from_numpy(fake), real=False)
                # the same kernel sums over the same canonically ordered rows: to rounding
                expected_kid = float(kid.compute()[0])
                assert scores[method, emotion, "kid"] == pytest.approx(expected_kid, rel=1e-9,
                                                                       abs=1e-12)  # fmt: skip
        md = outputs["table_inter_id_md"].read_text()
        assert md.splitlines()[0].startswith("**Setting inter_id. FID↓ ")
        assert "KID↓ unbiased KID" in md.splitlines()[0]
        assert "| Emotion | asccl FID↓ | asccl KID↓ |" in md  # methods by name
        assert f"real set: {real_set.replace('_', ' ')}" in md.splitlines()[0]
    for method, emotion in (("baseline", "happy"), ("asccl", "sad")):
        values = [found[s, method, emotion] for s in ("sources", "references", "ground_truth")]
        # measured: the closest two differ by 4.8e-4, 5e5 times the tolerance above
        assert min(abs(a - b) for a in values for b in values if a is not b) > 1e-5


def test_a_missing_ground_truth_folder_is_one_line(tmp_path, arcface, capsys):
    results = write_tiny_results(tmp_path / "results", emotions=("happy",), names=("A_001",))
    argv = _csim_argv(results, tmp_path / "out", arcface, metrics='["fad"]')
    argv += ["--real-set", "ground_truth"]
    line = one_line_error(argv, capsys, str(results / "ground_truth"), 'real_set = "ground_truth"')
    assert str(results / "ground_truth" / "inter_id" / "happy" / "A_001.mp4") in line
    with pytest.raises(DataError, match="real_set"):  # and from Python
        run_evaluation(
            EvalConfig(
                results=results,
                out=tmp_path / "o",
                metrics=("fad",),
                distribution_metric="fad",
                real_set="ground_truth",
                arcface_weights=arcface,
                arcface_backbone="iresnet18",
            )
        )


# -------------------------------------------------------------- 4. averages, exit, skipped


def test_nothing_comparable_exits_non_zero_with_one_line(tmp_path, arcface, capsys):
    """baseline has only happy, asccl only sad: no emotion has both, no average."""
    results = write_tiny_results(tmp_path / "results", names=("A_001",))
    for method, gone in (("baseline", "sad"), ("asccl", "happy")):
        for clip in (results / method / "inter_id" / gone).iterdir():
            clip.unlink()
        (results / method / "inter_id" / gone).rmdir()
    line = one_line_error(_csim_argv(results, tmp_path / "out", arcface), capsys,
                          "nothing comparable", str(results))  # fmt: skip
    assert "report.txt" in line
    md = (tmp_path / "out" / "tables" / "inter_id.md").read_text()  # the outputs are written
    assert "no emotion has a CSIM↑ of every method over the same clips" in md
    assert "**0." not in md and "**-0." not in md  # nothing marked


def test_skipped_clips_counted_by_reason_on_the_last_line(tmp_path, arcface, capsys):
    results = write_tiny_results(tmp_path / "results", names=("A_001", "A_002"))
    (results / "asccl" / "inter_id" / "sad" / "A_002.mp4").write_bytes(b"not a video")
    source = results / "sources" / "happy" / "A_001.mp4"
    source.write_bytes(source.read_bytes()[:100])  # both methods' happy/A_001 lose CSIM
    capsys.readouterr()
    assert main(_csim_argv(results, tmp_path / "out", arcface)) == 0
    last = capsys.readouterr().out.splitlines()[-1]
    # the source itself and asccl's sad/A_002 are unreadable; 2 results lost their source
    assert last == ("skipped clips: 4 (CSIM not scored: source unreadable: 2, "
                    "unreadable clip: 2)")  # fmt: skip
    md = (tmp_path / "out" / "tables" / "inter_id.md").read_text()
    assert "over the 1 clip(s) every method scored (scored: asccl 1 of 2, baseline 2 of 2" in md
    assert "over the 1 clip(s) every method scored (scored: asccl 1 of 2, baseline 1 of 2" in md


# ------------------------------------------------------------------ #19: the missing level


def test_a_missing_setting_level_is_named_with_an_example(tmp_path, arcface, capsys):
    results = write_tiny_results(tmp_path / "results", methods=("baseline",), names=("A_001",))
    (results / "baseline" / "inter_id").rename(results / "flat")
    for emotion_dir in (results / "flat").iterdir():
        emotion_dir.rename(results / "baseline" / emotion_dir.name)
    example = results / "baseline" / "inter_id" / "happy" / "<clip>.mp4"
    one_line_error(_csim_argv(results, tmp_path / "out", arcface), capsys,
                   "the setting level is missing", str(example))  # fmt: skip


def test_a_missing_emotion_level_is_named_with_an_example(tmp_path, arcface, capsys):
    results = write_tiny_results(tmp_path / "results", methods=("baseline",),
                                 emotions=("happy",), names=("A_001",))  # fmt: skip
    clip = results / "baseline" / "inter_id" / "happy" / "A_001.mp4"
    clip.rename(results / "baseline" / "inter_id" / "A_001.mp4")
    (results / "baseline" / "inter_id" / "happy").rmdir()
    example = results / "baseline" / "inter_id" / "happy" / "A_001.mp4"
    one_line_error(_csim_argv(results, tmp_path / "out", arcface), capsys,
                   "the emotion level is missing", str(example))  # fmt: skip


# ----------------------------------------------------------------- 6. torchrun = one process


@pytest.mark.slow
def test_two_processes_write_the_tables_of_one(tmp_path, arcface):
    """``torchrun --nproc_per_node 2`` (gloo, CPU) against one process on the demo stand-in
    (2 emotions x 2 sentences, 2 methods, FAD + CSIM + LSE with random weights): every
    table (Markdown, CSV, LaTeX) byte for byte, ``scores.csv`` to 1e-9. The processes split
    the clips by (emotion, name) and sum the metrics' float64 states: the same sums in
    another order, ~1e-16 relative, far below the tables' 3 decimals and the 1e-9 here.
    FAD (512-d from 32 frames) cannot be computed in either run: both sync its statistics
    and give the same footnoted "-" (finite Frechet values under a sync: test_frechet)."""
    results = make_demo_results(MEAD, tmp_path / "results", emotions=("happy", "sad"),
                                sentences=("001", "002"), frame_folder_frames=8)  # fmt: skip
    syncnet = tmp_path / "syncnet_v2.model"
    torch.manual_seed(0)
    torch.save(SyncNet().state_dict(), syncnet)
    flags = ["--results", str(results), "--distribution-metric", "fad", "--metrics",
             '["fad", "csim", "lse"]', "--arcface-weights", str(arcface), "--arcface-backbone",
             "iresnet18", "--syncnet-weights", str(syncnet), "--max-frames-per-clip", "8",
             "--frame-folder-fps", "30", "--grid-clips", "0", "--framing", "center"]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # 2 processes on 2 cores
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone",
                "--nproc_per_node", "2", "-m", "asccl", "evaluate"]  # fmt: skip
    done = subprocess.run([*torchrun, *flags, "--out", str(tmp_path / "two")], env=env,
                          cwd=tmp_path, capture_output=True, text=True, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert main(["evaluate", *flags, "--out", str(tmp_path / "one")]) == 0  # one thread
    tables = sorted(p.name for p in (tmp_path / "one" / "tables").iterdir())
    assert tables == ["inter_id.csv", "inter_id.md", "inter_id.tex"]
    for table in tables:
        a = (tmp_path / "one" / "tables" / table).read_bytes()
        assert (tmp_path / "two" / "tables" / table).read_bytes() == a, table
    rows = {}
    for name in ("one", "two"):
        with open(tmp_path / name / "scores.csv") as handle:
            rows[name] = [(r["setting"], r["method"], r["emotion"], r["metric"], float(r["value"]))
                          for r in csv.DictReader(handle)]  # fmt: skip
    assert [r[:4] for r in rows["one"]] == [r[:4] for r in rows["two"]]
    finite = {r[3] for r in rows["one"] if np.isfinite(r[4])}
    assert {"csim", "lse_d", "lse_c"} <= finite  # scored, not only "-" (FAD: singular here)
    for a, b in zip(rows["one"], rows["two"], strict=True):
        assert b[4] == pytest.approx(a[4], rel=1e-9, abs=1e-9, nan_ok=True), a[:4]


def test_frames_without_a_face_are_listed_per_clip_and_never_scored(tmp_path, arcface, capsys):
    """Noise clips under ``framing = "track"``: no face anywhere, so every clip is listed
    with its frames without a face, no CSIM is scored and nothing is comparable."""
    results = write_tiny_results(tmp_path / "results", emotions=("happy",), names=("A_001",))
    argv = _csim_argv(results, tmp_path / "out", arcface)
    one_line_error([*argv, "--framing", "track"], capsys, "nothing comparable")
    report = (tmp_path / "out" / "report.txt").read_text()
    for clip in (results / "baseline" / "inter_id" / "happy" / "A_001.mp4",
                 results / "sources" / "happy" / "A_001.mp4"):  # fmt: skip
        line = f"{clip}: 6 frame(s) of 6 without a face (arcface, track framing), not scored"
        assert line in report
    summary = (tmp_path / "out" / "summary.json").read_text()
    assert '"no face found": 2' in summary
