"""``asccl weights check``: a correct, a wrong and a missing file are told apart."""

import hashlib
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from asccl.cli import main
from asccl.config import ConfigError
from asccl.evaluation.syncnet import SyncNet
from asccl.weights_check import check_file, check_weights, checked_files, report
from tests.evaluation.random_weights import random_state


@pytest.fixture(scope="module")
def syncnet_file(tmp_path_factory):
    """Random weights written as syncnet_python publishes ``syncnet_v2.model``: a plain
    state dict from before PyTorch 0.4.1 (no BatchNorm ``num_batches_tracked``, legacy
    pickle format)."""
    shapes = {
        key: tuple(value.shape)
        for key, value in SyncNet().state_dict().items()
        if not key.endswith("num_batches_tracked")
    }
    state = random_state(shapes, num_batches_tracked=0, seed=0)  # the count: none kept here
    path = tmp_path_factory.mktemp("weights") / "syncnet_v2.model"
    torch.save(state, path, _use_new_zipfile_serialization=False)
    return path


@pytest.fixture(autouse=True)
def no_weights_env(monkeypatch):
    for name in ("ARCFACE", "SYNCNET", "INCEPTION", "FAN"):
        monkeypatch.delenv(f"ASCCL_{name}_WEIGHTS", raising=False)


def by_name(results):
    return {r.file.name: r for r in results}


def test_correct_wrong_and_missing_files_are_classified(syncnet_file, tmp_path):
    renamed = tmp_path / "renamed.model"  # one key renamed: another network's layout
    state = torch.load(syncnet_file, weights_only=True)
    state["netcnnaud.0.kernel"] = state.pop("netcnnaud.0.weight")
    torch.save(state, renamed)
    given = {
        "syncnet": syncnet_file,
        "arcface": syncnet_file,  # a real mix-up: SyncNet given as the ArcFace backbone
        "inception": tmp_path / "pt_inception-2015-12-05-6726825d.pth",  # not there
    }
    results = by_name(check_weights(given))
    ok, wrong, missing = results["syncnet"], results["arcface"], results["inception"]
    assert ok.status == "ok" and "SyncNet layout" in ok.detail
    assert ok.sha256 == hashlib.sha256(syncnet_file.read_bytes()).hexdigest()
    assert wrong.status == "wrong" and wrong.detail.startswith("layout: ")
    assert "insightface" in wrong.detail and "netcnnaud" in wrong.detail  # keys named
    assert missing.status == "missing" and missing.origin == "--inception"
    assert "github.com/mseitzer/pytorch-fid" in missing.line()  # where to get it
    assert results["metric"].status == "not set"  # nothing given: reported, not an error
    renamed_result = check_weights({"syncnet": renamed})[1]
    assert renamed_result.status == "wrong" and "netcnnaud.0.kernel" in renamed_result.detail


def test_a_checksum_mismatch_is_a_wrong_file(syncnet_file):
    syncnet = next(f for f in checked_files() if f.name == "syncnet")
    digest = hashlib.sha256(syncnet_file.read_bytes()).hexdigest()
    right = replace(syncnet, spec=replace(syncnet.spec, sha256_prefix=digest[:8]))
    other = "0" * 8 if digest[:8] != "0" * 8 else "f" * 8
    wrong = replace(syncnet, spec=replace(syncnet.spec, sha256_prefix=other))
    assert check_file(right, syncnet_file, "test").status == "ok"
    result = check_file(wrong, syncnet_file, "test")
    assert result.status == "wrong" and result.detail.startswith(
        f"checksum: SHA-256 starts {digest[:8]}"
    )
    sized = replace(syncnet, spec=replace(syncnet.spec, size=1))
    assert "bytes, the published file has 1" in check_file(sized, syncnet_file, "t").detail


def test_paths_come_from_flags_then_config_then_environment(syncnet_file, tmp_path, monkeypatch):
    config = tmp_path / "eval.toml"
    config.write_text(
        f'[eval]\nsyncnet_weights = "{syncnet_file}"\narcface_weights = "{tmp_path}/none.pth"\n'
    )
    results = by_name(check_weights({}, config))
    assert results["syncnet"].status == "ok" and results["syncnet"].origin.endswith(
        "eval.syncnet_weights"
    )
    assert results["arcface"].status == "missing"
    # as the loaders (require_weights_file): the config's path wins over the variable,
    # which fills in only where the config gives none
    monkeypatch.setenv("ASCCL_ARCFACE_WEIGHTS", str(syncnet_file))
    monkeypatch.setenv("ASCCL_SYNCNET_WEIGHTS", str(tmp_path / "other.model"))
    results = by_name(check_weights({}, config))
    assert results["arcface"].origin.endswith("eval.arcface_weights")
    assert results["arcface"].path == tmp_path / "none.pth"
    assert results["syncnet"].path == syncnet_file and results["syncnet"].status == "ok"
    assert by_name(check_weights({}))["arcface"].origin == "$ASCCL_ARCFACE_WEIGHTS"
    flagged = by_name(check_weights({"arcface": tmp_path / "flag.pth"}, config))["arcface"]
    assert flagged.origin == "--arcface" and flagged.status == "missing"


def test_the_command_reports_each_file_and_exits_non_zero_on_a_bad_one(
    syncnet_file, tmp_path, capsys
):
    assert main(["weights", "check", "--syncnet", str(syncnet_file)]) == 0
    out = capsys.readouterr().out
    assert "syncnet    OK" in out and " ok, 0 wrong, 0 missing" in out
    assert "arcface    NOT SET" in out and "ASCCL_ARCFACE_WEIGHTS" in out
    code = main(["weights", "check", "--syncnet", str(syncnet_file), "--bfm", str(tmp_path)])
    out = capsys.readouterr().out
    assert code == 1 and "bfm        WRONG" in out and "a folder, not a file" in out
    assert main(["weights", "check", "--flame", str(tmp_path / "generic_model.pkl")]) == 1
    out = capsys.readouterr().out
    assert "flame      MISSING" in out and "flame.is.tue.mpg.de" in out
    assert report([]).endswith("0 not set (docs/weights.md: what each file is)")
    # the other commands' spelling (README: --arcface-weights ...) is accepted too
    assert main(["weights", "check", "--syncnet-weights", str(syncnet_file)]) == 0
    assert "syncnet    OK" in capsys.readouterr().out


def test_a_config_s_includes_are_followed_with_the_keys_beside_them_winning(
    syncnet_file, tmp_path, monkeypatch
):
    monkeypatch.chdir(tmp_path)  # include paths are read from the working folder
    Path("eval.toml").write_text(
        f'syncnet_weights = "{syncnet_file}"\narcface_weights = "included.pth"\n'
    )
    Path("exp.toml").write_text('[eval]\ninclude = "eval.toml"\narcface_weights = "beside.pth"\n')
    Path("demo.toml").write_text('experiment = "exp.toml"\n')
    results = by_name(check_weights({}, Path("demo.toml")))
    assert results["syncnet"].status == "ok"
    assert results["syncnet"].origin == "eval.toml: experiment.eval.syncnet_weights"
    assert results["arcface"].path == Path("beside.pth")
    assert results["arcface"].origin == "exp.toml: experiment.eval.arcface_weights"
    Path("eval.toml").write_text('include = "exp.toml"\n')  # a loop: one line, not a hang
    with pytest.raises(ConfigError, match="includes itself"):
        check_weights({}, Path("demo.toml"))
