"""``benchmarks/gpu_suite.sh`` in its tiny CPU mode: every GPU row of issue 18 runs end to
end and prints its result lines (the GPU numbers themselves need the GPU machine)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

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
    summary = out[out.index("=== SUMMARY") :].splitlines()[1:]
    assert [line.split()[0] for line in summary] == list(ROWS)
    assert all(line.split()[1] == "OK" for line in summary), summary
    for row in ROWS:
        section = out[out.index(f"=== ROW {row} ") :]
        assert RESULTS[row] in section.split("=== ROW", 2)[1], f"{row}: no result line"
    # --compile compiles what runs (backbone.compile() compiled 0 graphs: forward_stages
    # is a method, not __call__): one graph with grad and one without, for batch 2
    compiled = out[out.index("=== ROW train_compile") :].split("compiled : ", 1)[1]
    assert int(compiled.split()[0]) >= 2, compiled[:200]
    # the train row has every setting and part the GPU run reports
    train = out[out.index("=== ROW train ") : out.index("=== ROW train_compile")]
    for text in ("amp=bf16 channels_last=True", "(c) loader-fed", "read from crops.pack",
                 "asccl / reference at batch 1", "asccl / reference at batch 2",
                 "FLOPs per frame pair"):  # fmt: skip
        assert text in train, text
