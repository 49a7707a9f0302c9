import json
import shutil
from pathlib import Path

import pytest
import torch

from asccl.cli import main
from asccl.metric import ASCCLMetric, save_metric

DEMO_DATA = Path("demo_data/MEAD")
# The demo data, shrunk for the end-to-end test: a training speaker and the held-out W903,
# neutral and angry, two sentences (the whole demo's 72 clips cost minutes of dlib crops,
# generation and evaluation; these 8 still reach every stage and every setting).
SUBSET_SPEAKERS = ("W901", "W903")
SUBSET_EMOTIONS = ("neutral", "angry")
SUBSET_SENTENCES = ("001", "002")

# The demo's experiment, shrunk: both generators, 2 steps at 32 px, one clip per emotion.
SHRUNK = "steps = 2\nimage_size = 32\nbatch_size = 4\nsample_every = 0\ncheckpoint_every = 2\n"
EXPERIMENT_TOML = f"""
models = ["ganmut", "icface"]
test_speakers = ["W903"]
max_clips_per_emotion = 1
[ganmut]
include = "configs/spfem/ganmut_demo.toml"
{SHRUNK}ganmut.d_layers = 3
[icface]
include = "configs/spfem/icface_demo.toml"
{SHRUNK}icface.d_layers = 3
[eval]
include = "configs/eval/demo.toml"
metrics = ["csim"]
max_frames_per_clip = 8
"""


def demo_subset(root: Path) -> Path:
    """Copy the subset of ``demo_data/MEAD`` above (same layout, video and audio) to ``root``."""
    for path in sorted(DEMO_DATA.rglob("*.*")):
        parts = path.relative_to(DEMO_DATA).parts  # speaker/.../<emotion>/level_n/NNN.ext
        if (parts[0] in SUBSET_SPEAKERS and parts[-3] in SUBSET_EMOTIONS
                and path.stem in SUBSET_SENTENCES):  # fmt: skip
            (root / path.relative_to(DEMO_DATA)).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, root / path.relative_to(DEMO_DATA))
    return root


@pytest.mark.slow
def test_demo_runs_end_to_end(tmp_path, capsys):
    train = tmp_path / "train.toml"
    train.write_text(
        (Path("configs/metric/demo.toml").read_text())
        .replace('out = "runs/demo/metric"', f'out = "{tmp_path / "metric"}"')
        .replace("max_steps = 40", "max_steps = 2")
        .replace("val_every = 10", "val_every = 2")
        .replace("val_batches = 4", "val_batches = 2")
        .replace("image_size = 112", "image_size = 64\nnum_anchors = [8, 4, 4, 2]")
    )
    experiment = tmp_path / "experiment.toml"
    experiment.write_text(EXPERIMENT_TOML)
    root = demo_subset(tmp_path / "MEAD")
    args = ["demo", "--config", "configs/demo.toml", "--out", str(tmp_path),
            "--optimise-steps", "3", "--train", str(train),
            "--experiment", str(experiment), "--data.root", str(root),
            "--data.out", str(tmp_path / "data"), "--data.crop-size", "64"]  # fmt: skip
    assert main(args) == 0
    printed = capsys.readouterr().out
    outputs = ["loss_table.md", "loss_table.csv", "loss_variants.png", "sampled_regions.png",
               "optimisation.png", "config.json",
               "dtw_alignment.png", "crops_contact_sheet.png"]  # fmt: skip
    for name in outputs:
        assert (tmp_path / name).is_file(), name
        assert name in printed
    for setting in ("single", "inter_id", "cross_id"):
        for name in (f"tables/{setting}.md", f"tables/{setting}.tex", f"plots/{setting}.png",
                     f"grids/{setting}.png"):  # fmt: skip
            assert (tmp_path / "experiment" / "eval" / name).is_file(), name
    assert "| Emotion | ganmut CSIM" in printed and "icface_asccl CSIM" in printed
    assert "# Baseline vs +ASCCL" in printed
    assert (tmp_path / "experiment" / "comparison.md").is_file()
    for name in ("clips.csv", "pairs.csv", "aligned_pairs.json"):
        assert (tmp_path / "data" / name).is_file(), name
    # a pair per speaker, emotion and sentence; crops of both clips of each pair
    pairs = len(SUBSET_SPEAKERS) * (len(SUBSET_EMOTIONS) - 1) * len(SUBSET_SENTENCES)
    assert f"[pairs] {pairs} done" in printed and f"[crops] {2 * pairs} done" in printed
    assert "validation health signal" in printed and "(step 0) -> " in printed
    assert "(step 2)" in printed
    assert (tmp_path / "metric" / "metric.safetensors").is_file()
    assert (tmp_path / "metric" / "curves.png").is_file()
    rows = (tmp_path / "loss_table.csv").read_text().splitlines()
    assert rows[0] == "variant,asccl_loss" and len(rows) == 6
    losses = {r.split(",")[0]: float(r.split(",")[1]) for r in rows[1:]}
    assert losses["identical"] < losses["unrelated"]
    saved = json.loads((tmp_path / "config.json").read_text())  # the whole nested config
    assert saved["train"]["max_steps"] == 2 and saved["experiment"]["ganmut"]["steps"] == 2


def test_demo_rejects_unknown_option(capsys):
    assert main(["demo", "--no-such-option", "1"]) == 2
    assert "unknown key(s) ['no_such_option']" in capsys.readouterr().err


def test_metric_info_and_convert(tmp_path, capsys):
    torch.manual_seed(0)
    metric = ASCCLMetric(backbone="iresnet18")
    path = save_metric(metric, tmp_path / "m.safetensors")
    assert main(["metric", "info", str(path)]) == 0
    assert '"backbone": "iresnet18"' in capsys.readouterr().out
    # an authors'-layout file converts to a BGR asccl checkpoint
    authors = {"resnet50." + k: v for k, v in ASCCLMetric().backbone.state_dict().items()}
    heads = ASCCLMetric().heads.heads
    for stage in range(4):
        for layer, index in ((0, 3 * stage), (2, 3 * stage + 2)):
            authors[f"mlp.{index}.weight"] = heads[stage][layer].weight.detach()
            authors[f"mlp.{index}.bias"] = heads[stage][layer].bias.detach()
    torch.save(authors, tmp_path / "authors.pth")
    out = tmp_path / "converted.safetensors"
    assert main(["metric", "convert", str(tmp_path / "authors.pth"), str(out)]) == 0
    assert "channel order bgr, the authors' loss arithmetic" in capsys.readouterr().out
    assert main(["metric", "info", str(out)]) == 0
    info = capsys.readouterr().out
    for setting in ('"channel_order": "bgr"', '"adaptive": "authors"', '"authors_window": true'):
        assert setting in info
    assert "values in [-1, 1], channel order bgr" in info
    assert "loss arithmetic: the authors'" in info
    # opting out keeps asccl's arithmetic (still BGR), and info says where it departs
    plain = tmp_path / "plain.safetensors"
    args = ["metric", "convert", str(tmp_path / "authors.pth"), str(plain), "--no-authors-compat"]
    assert main(args) == 0
    assert "channel order bgr, asccl's loss arithmetic" in capsys.readouterr().out
    assert main(["metric", "info", str(plain)]) == 0
    info = capsys.readouterr().out
    assert 'not the authors\' (authors_window = false, adaptive = "pair")' in info


def test_metric_info_on_a_bad_file_is_a_one_line_error(tmp_path, capsys):
    assert main(["metric", "info", str(tmp_path / "none.safetensors")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("asccl: error:") and "no such checkpoint file" in err


def test_face3d_convert_flame_errors_are_one_line(tmp_path, capsys):
    assert (
        main(["face3d", "convert-flame", str(tmp_path / "missing.pkl"), str(tmp_path / "o.npz")])
        == 2
    )
    err = capsys.readouterr().err
    assert err.startswith("asccl: error:") and "missing.pkl" in err and "flame.is.tue.mpg.de" in err
    assert len(err.strip().splitlines()) == 1


def test_spfem_train_and_experiment_reject_unknown_keys(capsys):
    assert main(["spfem", "train", "--model", "ganmut", "--no-such-key", "1"]) == 2
    assert "no_such_key" in capsys.readouterr().err
    assert main(["experiment", "--models", '["stargan"]']) == 2
    assert "stargan" in capsys.readouterr().err
