"""``benchmarks/gpu_suite.sh`` in its tiny CPU mode: every GPU row of issue 18 runs end to
end and prints its result lines (the GPU numbers themselves need the GPU machine)."""

from __future__ import annotations

import argparse
import importlib
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.one_thread import one_thread  # noqa: F401 (autouse: each test single-threaded)

ROOT = Path(__file__).resolve().parents[1]
SUITE = ROOT / "benchmarks" / "gpu_suite.sh"
ROWS = ("reader", "train", "train_compile", "loss", "spfem", "eval", "render")
#: a line each row's benchmark prints once it has measured (not just started)
RESULTS = {
    "reader": "ratio new / floor = ",
    "train": "achieved (b) asccl ",
    "train_compile": "compile=True",
    "loss": "asccl speed-up vs authors",
    "spfem": "+ASCCL / baseline: ",
    "eval": "FID features",
    "render": "render + loss fwd+bwd",
}


#: packages the lent GPU machine's image lacks (its list: the device KINDS.md) that no suite
#: row needs, so none is carried there (benchmarks/device_wheels.sh carries the rest)
NOT_ON_DEVICE = ("av", "librosa", "soxr", "soundfile", "dlib", "face_recognition_models")


def test_the_suite_rows_import_without_the_packages_the_device_lacks():
    # A module set to None in sys.modules makes `import NAME` raise ImportError, as a
    # missing package does; a module-level import of one of them fails this test.
    benches = ("bench_reader", "bench_train", "bench_loss", "bench_spfem", "bench_eval",
               "bench_render")  # fmt: skip
    code = (
        f"import sys; sys.modules.update(dict.fromkeys({NOT_ON_DEVICE!r}));"
        f"import {', '.join(benches)}; print('benches imported', flush=True); import av"
    )
    path = os.pathsep.join([str(ROOT / "src"), str(ROOT / "benchmarks")])
    done = subprocess.run([sys.executable, "-c", code], env={**os.environ, "PYTHONPATH": path},
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert done.stdout == "benches imported\n", done.stderr[-2000:]
    # and the block was in force: the final `import av` failed
    assert "ModuleNotFoundError: import of av halted" in done.stderr, done.stderr[-2000:]


@pytest.mark.slow  # ~70 s on 2 busy shared cores (~40 s of CPU)
@pytest.mark.skipif(shutil.which("timeout") is None, reason="needs coreutils' timeout")
def test_the_gpu_suite_runs_every_row_in_tiny_mode(tmp_path):
    env = {**os.environ, "TINY": "1", "SUITE_DIR": str(tmp_path), "PYTHON": sys.executable}
    done = subprocess.run(["bash", str(SUITE)], env=env, capture_output=True, text=True,
                          timeout=600)  # fmt: skip
    out = done.stdout
    assert done.returncode == 0, out[-3000:] + done.stderr[-2000:]
    # the summary's status lines end at a blank line; the JSON files are named after it
    summary = out[out.index("=== SUMMARY") :].split("\n\n")[0].splitlines()[1:]
    assert [line.split()[0] for line in summary] == list(ROWS)
    assert all(line.split()[1] == "OK" for line in summary), summary
    for row in ROWS:
        section = out[out.index(f"=== ROW {row} ") :]
        assert RESULTS[row] in section.split("=== ROW", 2)[1], f"{row}: no result line"
    # --compile compiles what runs (backbone.compile() compiled 0 graphs: forward_stages
    # is a method, not __call__): one graph with grad and one without, for batch 2
    compiled = out[out.index("=== ROW train_compile") :].split("compiled : ", 1)[1]
    assert int(compiled.split()[0]) >= 2, compiled[:200]
    # the reader row left its pairs.csv, so the loader rows ran on it; /dev/shm was checked
    assert "are SKIPPED" not in out and "/dev/shm: " in out
    for name in ("train", "train_compile"):  # both JSON files written and named
        assert f"{name} results (JSON): {tmp_path / name}.json" in out
        written = json.loads((tmp_path / f"{name}.json").read_text())
        assert written["failed_sections"] == {} and written["loader"]["loader_pairs_per_s"]
    # the train row has every setting and part the GPU run reports
    train = out[out.index("=== ROW train ") : out.index("=== ROW train_compile")]
    for text in ("amp=bf16 channels_last=True", "(c) loader-fed", "read from crops.pack",
                 "asccl / reference at batch 1", "asccl / reference at batch 2",
                 "FLOPs per frame pair"):  # fmt: skip
        assert text in train, text


# ----------------------------------------------------------------------------- in process


def bench(name: str, monkeypatch: pytest.MonkeyPatch):
    """A benchmark script imported as a module (``benchmarks/`` on ``sys.path``)."""
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    return importlib.import_module(name)


@pytest.fixture(scope="module")
def packed(tmp_path_factory) -> Path:
    """A tiny stage-1 folder with per-clip JPEG stores, pairs.csv and crops.pack, as the
    GPU suite's reader row leaves it (bench_reader's builder: 8 clips of 4 frames, 64 px)."""
    with pytest.MonkeyPatch.context() as patch:  # module scope: its own, undone on exit
        bench_reader = bench("bench_reader", patch)
    out = tmp_path_factory.mktemp("packed")
    bench_reader.build(out, argparse.Namespace(clips=8, frames=4, size=64, distinct=4, seed=0))
    assert (out / "pairs.csv").is_file() and (out / "crops.pack").is_dir()
    return out


def test_a_failing_loader_section_keeps_the_on_device_rows(packed, tmp_path, monkeypatch,
                                                           capsys):  # fmt: skip
    bench_train = bench("bench_train", monkeypatch)

    class BrokenLoader:  # as a DataLoader whose worker died of SIGBUS (small /dev/shm)
        def __init__(self, *args, **kwargs) -> None:
            pass

        def __iter__(self):
            raise RuntimeError("DataLoader worker (pid 123) is killed by signal: Bus error.")

    monkeypatch.setattr(bench_train, "DataLoader", BrokenLoader)
    result = tmp_path / "train.json"
    argv = ["bench_train.py", "--device", "cpu", "--backbone", "iresnet18", "--image-size",
            "64", "--batches", "1", "--steps", "1", "--repeats", "1", "--warmup", "1",
            "--loader-steps", "1", "--loader-warmup", "1", "--workers", "0", "--read-items",
            "4", "--data", str(packed), "--json", str(result)]  # fmt: skip
    monkeypatch.setattr(sys, "argv", argv)
    with pytest.raises(SystemExit) as stopped:
        bench_train.main()
    assert stopped.value.code == 1  # a section failed: the run says so in its exit status
    out = capsys.readouterr().out
    assert "section loader-fed rows failed: RuntimeError: DataLoader worker (pid 123)" in out
    # the on-device rows measured before the failure are printed, with a rate
    for name in (r"\(a\) reference", r"\(b\) asccl"):
        assert re.search(rf"^\s+1  {name}\s+\d+\.\d", out, re.MULTILINE), out
    # the sections after the failure still ran: the reader (cold reader on the stores)
    # and the comparison
    assert "reads per-clip stores" in out and "asccl / reference at batch 1    = " in out
    # and --json holds them, with the failure named
    written = json.loads(result.read_text())
    rates = {row["row"]: row["pairs_per_s"] for row in written["rows"]}
    assert set(rates) == {"(a) reference", "(b) asccl"} and all(r > 0 for r in rates.values())
    assert list(written["failed_sections"]) == ["loader-fed rows"]
    assert written["loader"]["loader_pairs_per_s"] is None
    assert written["reader_pairs_per_s"]["every_read_opens_reads"] == "per-clip stores"


def test_the_cold_reader_reads_the_per_clip_stores_of_a_packed_folder(packed, monkeypatch):
    bench_train = bench("bench_train", monkeypatch)
    from asccl.training.dataset import PairedFrames

    warm = PairedFrames(packed, crop_format="jpeg")
    assert bench_train.store_read(warm) == "crops.pack"  # the folder is packed
    cold = bench_train.cold_reader(packed, "jpeg")
    assert bench_train.store_read(cold) == "per-clip stores"
    # the same frames, read from the stores (decoded from the same JPEG bytes)
    for i in range(len(cold)):
        for a, b in zip(cold[i], warm[i], strict=True):
            assert a.equal(b)


def test_the_fid_reference_row_times_a_network_that_is_not_channels_last(monkeypatch):
    import torch

    from asccl.evaluation.inception import FIDInceptionV3, InceptionFeatures

    bench_eval = bench("bench_eval", monkeypatch)
    features = InceptionFeatures(FIDInceptionV3())
    reference, fast = bench_eval.fid_models(features, channels_last=True)
    assert reference is features and fast is not features

    def spatial_convs(model):  # a 1x1 kernel is contiguous and channels_last at once
        return [m for m in model.modules()
                if isinstance(m, torch.nn.Conv2d) and m.kernel_size != (1, 1)]  # fmt: skip

    cl = torch.channels_last
    assert all(not m.weight.is_contiguous(memory_format=cl) for m in spatial_convs(reference))
    assert all(m.weight.is_contiguous(memory_format=cl) for m in spatial_convs(fast))
    # and the reference's convolutions run NCHW on the contiguous input it is given
    first = spatial_convs(reference)[0]
    outputs = []
    first.register_forward_hook(lambda module, args, output: outputs.append(output))
    with torch.no_grad():
        reference(torch.rand(1, 3, 75, 75))
    assert outputs and not outputs[0].is_contiguous(memory_format=cl)
