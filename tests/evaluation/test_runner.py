"""The evaluation runner on a stand-in results folder from demo_data, random-weight models
saved in the published formats (insightface backbone.pth, syncnet_v2.model state dict)."""

import csv
import json
import os
import shutil
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from tests.evaluation.random_weights import save_random_evaluators
from tests.evaluation.test_results import tiny_frames, write_tiny_results
from tests.one_thread import one_thread  # noqa: F401 (autouse: single-threaded torch)

from asccl.cli import main
from asccl.config import ConfigError, load_config
from asccl.data.video import write_video
from asccl.evaluation import runner
from asccl.evaluation.results import make_demo_results
from asccl.evaluation.runner import EvalConfig, run_evaluation

MEAD = Path(__file__).resolve().parents[2] / "demo_data" / "MEAD"
EMOTIONS = ("happy", "sad")
SENTENCES = ("001", "002")


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> dict[str, Path]:
    return save_random_evaluators(tmp_path_factory.mktemp("weights"))


@pytest.fixture(scope="module")
def config(tmp_path_factory, weights) -> EvalConfig:
    root = tmp_path_factory.mktemp("eval")
    results = make_demo_results(MEAD, root / "results", emotions=EMOTIONS, sentences=SENTENCES,
                                frame_folder_frames=12)  # fmt: skip
    return EvalConfig(
        results=results,
        out=root / "out",
        distribution_metric="fad",
        metrics=("fad", "csim", "lse"),
        arcface_weights=weights["arcface"],
        arcface_backbone="iresnet18",
        syncnet_weights=weights["syncnet"],
        max_frames_per_clip=12,  # 30 fps -> 10 frames at 25 fps -> 5 SyncNet windows
        frame_folder_fps=30.0,
        batch_size=16,
        grid_clips=2,
        methods=("baseline", "asccl"),
    )


class Counter:
    """Counts feature computations (cache misses) by wrapping Extractors.compute."""

    def __init__(self, monkeypatch) -> None:
        self.calls: list[tuple[str, Path]] = []
        compute = runner.Extractors.compute

        def counted(extractors, kind, clip, audio_from):
            self.calls.append((kind, clip))
            return compute(extractors, kind, clip, audio_from)

        monkeypatch.setattr(runner.Extractors, "compute", counted)


@pytest.fixture(scope="module")
def first_run(config) -> dict[str, Path]:
    return run_evaluation(config)


def _md_rows(path: Path) -> list[list[str]]:
    lines = path.read_text().splitlines()
    return [[c.strip() for c in line.strip("|").split("|")] for line in lines if line[:1] == "|"]


def test_outputs_tables_and_plots(first_run, config):
    names = ["config", "scores", "summary", "report", "plot_inter_id", "grid_inter_id"]
    names += [f"table_inter_id_{ext}" for ext in ("md", "csv", "tex")]
    for name in names:
        assert first_run[name].is_file(), name
    rows = _md_rows(first_run["table_inter_id_md"])
    metrics = ["FAD↓", "LSE-D↓", "CSIM↑", "LSE-C↑"]
    assert rows[0] == ["Emotion"] + [f"{m} {k}" for m in ("baseline", "asccl") for k in metrics]
    assert [r[0] for r in rows[2:]] == ["Happy", "Sad", "Average"]
    for png in ("plot_inter_id", "grid_inter_id"):
        assert first_run[png].read_bytes()[:4] == b"\x89PNG"
    with open(first_run["scores"]) as handle:
        scores = {(r["method"], r["emotion"], r["metric"]): float(r["value"])
                  for r in csv.DictReader(handle)}  # fmt: skip
    for method in ("baseline", "asccl"):
        csim = [scores[(method, e, "csim")] for e in EMOTIONS]
        assert all(-1 <= c <= 1 for c in csim)
        assert scores[(method, "average", "csim")] == pytest.approx(sum(csim) / 2)
        assert scores[(method, "average", "lse_d")] > 0
    # the asccl stand-in holds the baseline's first 12 decoded frames as lossless PNGs: the
    # same pixels through the same code in the same batch shapes, so the same bits
    for emotion in EMOTIONS:
        assert scores[("asccl", emotion, "csim")] == scores[("baseline", emotion, "csim")]
    report = first_run["report"].read_text()
    assert "no fad" in report and "more frames than feature dimensions" in report  # 24 < 512


def _table_bytes(outputs: dict[str, Path]) -> dict[str, bytes]:
    names = [k for k in outputs if k.startswith("table_") or k == "scores"]
    return {k: outputs[k].read_bytes() for k in names}


def test_rerun_computes_nothing_new_and_gives_the_same_numbers(first_run, config, monkeypatch):
    counter = Counter(monkeypatch)
    before = _table_bytes(first_run)
    outputs = run_evaluation(config)
    assert counter.calls == []
    assert _table_bytes(outputs) == before  # every table and score, byte for byte
    summary = json.loads(outputs["summary"].read_text())
    assert summary["computed"] == summary["redone"] == 0 and summary["cached"] > 0


def test_adding_a_method_computes_only_its_clips(first_run, config, monkeypatch):
    shutil.copytree(config.results / "baseline", config.results / "other")
    counter = Counter(monkeypatch)
    outputs = run_evaluation(replace(config, methods=("baseline", "asccl", "other")))
    assert {clip.parts[-4] for _, clip in counter.calls} == {"other"}
    assert sorted(kind for kind, _ in counter.calls) == ["arcface"] * 4 + ["syncnet"] * 4
    assert "other LSE-D↓" in outputs["table_inter_id_md"].read_text()


def test_corrupt_video_and_missing_emotion_are_reported(tmp_path, weights, capsys):
    results = make_demo_results(MEAD, tmp_path / "results", emotions=EMOTIONS, sentences=("001",),
                                frame_folder_frames=2)  # fmt: skip
    shutil.rmtree(results / "asccl" / "inter_id" / "sad")  # a method missing an emotion
    good = results / "baseline" / "inter_id" / "happy" / "W901_001.mp4"
    corrupt = good.with_name("W901_002.mp4")
    corrupt.write_bytes(good.read_bytes()[: good.stat().st_size // 3])  # truncated file
    shutil.copyfile(MEAD / "W901/video/front/neutral/level_1/002.mp4",
                    results / "sources" / "happy" / "W901_002.mp4")  # fmt: skip
    args = ["evaluate", "--config", "configs/eval/demo.toml", "--results", str(results),
            "--out", str(tmp_path / "out"), "--metrics", '["csim"]',
            "--arcface-weights", str(weights["arcface"]), "--arcface-backbone", "iresnet18",
            "--max-frames-per-clip", "2"]  # fmt: skip
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "W901_002.mp4" in printed and "clips skipped (unreadable or unscored): 1" in printed
    assert "asccl/inter_id: missing emotion(s) ['sad']" in printed
    rows = _md_rows(tmp_path / "out" / "tables" / "inter_id.md")
    assert rows[0] == ["Emotion", "baseline CSIM↑", "asccl CSIM↑"]
    happy, sad, average = (next(r for r in rows if r[0] == e) for e in ("Happy", "Sad",
                                                                         "Average"))  # fmt: skip
    assert sad[2] == "- [2]" and sad[1] == sad[1].strip("*") != "-"  # no winner in that row
    # the Average is over the emotion both methods have (happy), footnoted as such
    assert average[1].split()[0].strip("*") == happy[1].split()[0].strip("*")
    assert average[1].endswith(" [3]") and average[2].endswith(" [3]")
    text = (tmp_path / "out" / "tables" / "inter_id.md").read_text()
    assert "[2] asccl has no sad results" in text and "[3] over happy only: sad lack" in text
    # happy: baseline lost W901_002 (truncated): both methods over the 1 clip they share
    assert happy[1].endswith(" [1]") and "[1] over the 1 clip(s) every method scored" in text
    assert printed.splitlines()[-1] == "skipped clips: 1 (unreadable clip: 1)"


def test_config_validation():
    with pytest.raises(ConfigError, match="unknown"):
        EvalConfig(metrics=("psnr",))
    with pytest.raises(ConfigError, match="distribution_metric"):
        EvalConfig(metrics=("fad",), distribution_metric="fid")
    assert EvalConfig(metrics=("lse", "distribution")).table_metrics == ["fid", "lse_d", "lse_c"]
    assert EvalConfig(metrics="csim", methods="baseline").methods == ("baseline",)


@pytest.mark.parametrize(
    ("key", "value"),
    [("batch_size", "0"), ("batch_size", "true"), ("max_frames_per_clip", "-1"),
     ("lse_min_frames", "-5"), ("lse_vshift", "0"), ("frame_folder_fps", "0"),
     ("frame_folder_fps", "nan"), ("frame_folder_fps", "inf"), ("grid_clips", "-1"),
     ("metrics", "[]"), ("arcface_backbone", "resnet9"), ("device", "gpu"),
     ("methods", '["a", "a"]')],
)  # fmt: skip
def test_config_refuses_nonsense_naming_the_key(key, value):
    with pytest.raises(ConfigError, match=key) as err:
        load_config(EvalConfig, None, [f"--{key}", value])
    assert "\n" not in str(err.value)


# ----------------------------------------------- the cache: same recipe reused, changes redone


@pytest.fixture
def tiny(tmp_path, weights) -> EvalConfig:
    """CSIM over tiny 32x32 clips: 2 methods x 2 emotions x 2 clips, 6 frames each."""
    return EvalConfig(results=write_tiny_results(tmp_path / "results"), out=tmp_path / "out",
                      distribution_metric="fad", metrics=("csim",),
                      arcface_weights=weights["arcface"], arcface_backbone="iresnet18",
                      grid_clips=0, framing="none")  # fmt: skip  # random blocks: no face


def _scores(outputs: dict[str, Path]) -> dict[tuple[str, str, str], float]:
    with open(outputs["scores"]) as handle:
        return {(r["method"], r["emotion"], r["metric"]): float(r["value"])
                for r in csv.DictReader(handle)}  # fmt: skip


@pytest.mark.slow
def test_a_changed_clip_redoes_its_entry_and_only_it(tiny, monkeypatch):
    first = run_evaluation(tiny)
    assert json.loads(first["summary"].read_text())["computed"] == 12  # 8 results + 4 sources
    before, old = _table_bytes(first), _scores(first)
    clip = tiny.results / "baseline" / "inter_id" / "happy" / "A_001.mp4"
    clip.unlink()
    write_video(clip, tiny_frames(6, seed=99), fps=25.0)  # another face: another embedding
    counter = Counter(monkeypatch)
    outputs = run_evaluation(tiny)
    assert counter.calls == [("arcface", clip)]
    summary = json.loads(outputs["summary"].read_text())
    assert (summary["computed"], summary["redone"], summary["cached"]) == (1, 1, 11)
    report = outputs["report"].read_text()
    assert "1 redone" in report and "clip (1)" in report
    new = _scores(outputs)
    assert new[("baseline", "happy", "csim")] != old[("baseline", "happy", "csim")]
    assert new[("asccl", "happy", "csim")] == old[("asccl", "happy", "csim")]
    assert new[("baseline", "sad", "csim")] == old[("baseline", "sad", "csim")]
    assert _table_bytes(outputs) != before
    counter.calls.clear()
    again = run_evaluation(tiny)  # and now the new entry is reused
    assert counter.calls == [] and _table_bytes(again) == _table_bytes(outputs)


@pytest.mark.slow
def test_a_changed_setting_or_weights_file_redoes_every_entry(tiny, weights, monkeypatch):
    before = _table_bytes(run_evaluation(tiny))
    counter = Counter(monkeypatch)
    shorter = run_evaluation(replace(tiny, max_frames_per_clip=3))
    assert len(counter.calls) == 12
    assert "12 redone" in shorter["report"].read_text()
    assert "max_frames_per_clip (12)" in shorter["report"].read_text()
    # the same weights at a newer mtime are another file as far as the cache knows
    counter.calls.clear()
    stat = weights["arcface"].stat()
    os.utime(weights["arcface"], ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    try:
        again = run_evaluation(tiny)
    finally:
        os.utime(weights["arcface"], ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert len(counter.calls) == 12 and "weights (12)" in again["report"].read_text()
    assert "max_frames_per_clip (12)" in again["report"].read_text()
    assert _table_bytes(again) == before  # same maths, same numbers


def test_tables_of_a_setting_no_longer_evaluated_are_removed(tiny):
    stale = tiny.out / "tables" / "cross_id.md"
    stale.parent.mkdir(parents=True)
    stale.write_text("| from an earlier run |")
    outputs = run_evaluation(tiny)
    assert not stale.exists() and outputs["table_inter_id_md"].is_file()


class TinyFeatures(torch.nn.Module):
    """A stand-in for the Inception extractor: (B, 3, H, W) -> (B, 4) colour statistics."""

    def forward(self, images):
        return torch.cat([images.mean((2, 3)), images.std((1, 2, 3))[:, None]], 1)


def test_fid_route_with_a_small_extractor(tmp_path, config, monkeypatch):
    model = runner.Extractors.model
    monkeypatch.setattr(
        runner.Extractors,
        "model",
        lambda self, kind: TinyFeatures() if kind == "inception" else model(self, kind),
    )
    cfg = replace(config, out=tmp_path, distribution_metric="fid", metrics=("fid",), grid_clips=0)
    outputs = run_evaluation(cfg)
    rows = _md_rows(outputs["table_inter_id_md"])
    assert rows[0] == ["Emotion", "baseline FID↓", "asccl FID↓"]
    for row in rows[2:]:  # same frames in both methods: same, finite FID, no winner marked
        assert row[1] == row[2] and "*" not in row[1] and float(row[1].split()[0]) >= 0


def test_corrupt_cache_file_is_recomputed(first_run, config, monkeypatch):
    clip = config.results / "baseline" / "inter_id" / "happy" / "W901_001.mp4"
    cache = runner.cache_path(config.out, "arcface", clip)
    assert cache.is_file()
    cache.write_bytes(b"half-written")
    counter = Counter(monkeypatch)
    run_evaluation(config)
    assert counter.calls == [("arcface", clip)]
    assert cache.stat().st_size > len(b"half-written")


@pytest.mark.cuda
def test_cuda_matches_cpu(first_run, config, tmp_path):
    outputs = run_evaluation(replace(config, device="cuda", out=tmp_path, grid_clips=0))
    with open(first_run["scores"]) as a, open(outputs["scores"]) as b:
        cpu, gpu = list(csv.DictReader(a)), list(csv.DictReader(b))
    assert [(r["method"], r["emotion"], r["metric"]) for r in cpu] == [
        (r["method"], r["emotion"], r["metric"]) for r in gpu
    ]
    # Not bit-equal: cuDNN convolutions run in TF32 by default (11 significant bits, u =
    # 2^-11 per rounding of inputs and weights) and other kernels sum in other orders. As
    # in tests/metric/test_iresnet.py's bf16 bound, the n layers on the path move an
    # embedding by rel. rms ~ sqrt(2 n / 3) u: 1.9e-3 for ArcFace-18 (n = 22), 1.2e-3 for
    # a SyncNet stream (n ~ 9). A cosine (CSIM) or a distance (LSE-D, a min over offsets:
    # continuous) sees only the error's component along one of 512 / 1024 directions,
    # ~1/sqrt(512) of it, then averaged over frames: expected |change| ~1e-4 (an estimate,
    # not a bound; no GPU has measured it in this suite's CI), 1e-3 is ~10x that.
    for r, g in zip(cpu, gpu, strict=True):
        if r["metric"] in ("csim", "lse_d"):
            cpu_value, gpu_value = float(r["value"]), float(g["value"])
            assert gpu_value == pytest.approx(cpu_value, rel=1e-3, abs=1e-3), (r, g)
