"""Robustness corpus of the stage-1 runs (``asccl data pairs | crops | prepare``): media that
break after indexing, bad ``DataConfig`` numbers, and a killed run's pool workers.

Per-item failures (one pair or clip of many) are not fatal: the run goes on, prints its
summary on stdout (each failure with the file at fault) and exits 1 with one last stderr
line ``asccl: error: <item>: <file>: <problem> ([stage] N items failed, listed in <log>)``,
so it meets the same one-line rule as a refused input (exit 2).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from asccl.data.crop_store import crop_path
from asccl.data.prepare import crop_settings_path
from tests.robustness.conftest import one_line_error, snapshot

REPO = Path(__file__).resolve().parents[2]
DEMO = REPO / "demo_data" / "MEAD"
SPEAKER = "W901"
CONFIG = """\
root = "{root}"
out = "{out}"
crop_size = 32
workers = 0
[pairing]
emotions = ["angry"]
sentences = ["001", "002"]
"""


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> tuple[Path, Path]:
    """One demo speaker's neutral and angry clips, and a finished stage 1 on them (2 pairs,
    4 crop stores at 32 px): ``(root, out)``, read only (tests take a :func:`fresh` copy)."""
    from asccl.cli import main

    tmp = tmp_path_factory.mktemp("data_runs")
    root, out = tmp / "MEAD", tmp / "out"
    for sub in ("video/front", "audio"):
        for emotion in ("neutral", "angry"):
            shutil.copytree(DEMO / SPEAKER / sub / emotion, root / SPEAKER / sub / emotion)
    config = tmp / "data.toml"
    config.write_text(CONFIG.format(root=root, out=out))
    assert main(["data", "prepare", "--config", str(config)]) == 0
    return root, out


def fresh(built: tuple[Path, Path], tmp: Path) -> tuple[Path, Path, Path]:
    """A private copy of :func:`built`: ``(root, out, config file)``, ``clips.csv`` pointing
    at the copied media."""
    root, out = tmp / "MEAD", tmp / "out"
    shutil.copytree(built[0], root)
    shutil.copytree(built[1], out)
    clips = out / "clips.csv"
    clips.write_bytes(clips.read_bytes().replace(os.fsencode(built[0]), os.fsencode(root)))
    config = tmp / "data.toml"
    config.write_text(CONFIG.format(root=root, out=out))
    return root, out, config


def audio_file(root: Path, emotion: str = "angry", sentence: str = "001") -> Path:
    level = "level_1" if emotion == "neutral" else "level_3"
    return root / SPEAKER / "audio" / emotion / level / f"{sentence}.m4a"


def video_file(root: Path, emotion: str = "angry", sentence: str = "001") -> Path:
    level = "level_1" if emotion == "neutral" else "level_3"
    return root / SPEAKER / "video/front" / emotion / level / f"{sentence}.mp4"


def silent_wav(path: Path, seconds: float = 3.0, rate: int = 16000) -> None:
    """Digital silence as 16-bit WAV under the ``.m4a`` name (FFmpeg reads the content)."""
    import av

    with av.open(str(path), "w", format="wav") as container:
        stream = container.add_stream("pcm_s16le", rate=rate, layout="mono")
        frame = av.AudioFrame.from_ndarray(
            np.zeros((1, round(seconds * rate)), np.int16), format="s16", layout="mono"
        )
        frame.sample_rate = rate
        container.mux(stream.encode(frame))
        container.mux(stream.encode(None))


BROKEN_AUDIO = {
    "empty": (lambda path: path.write_bytes(b""), "empty file"),
    "garbage": (lambda path: path.write_bytes(b"\x00garbage" * 100), "cannot be opened"),
    "silent": (silent_wav, "silent audio track"),
}


@pytest.mark.parametrize("damage", sorted(BROKEN_AUDIO))
def test_pairs_failure_names_the_audio_file(built, tmp_path, capsys, damage):
    root, out, config = fresh(built, tmp_path)
    broken = audio_file(root)
    make, problem = BROKEN_AUDIO[damage]
    make(broken)
    kept = snapshot(out / "pairs") | {"clips.csv": snapshot(out)["clips.csv"]}
    # other settings: both pairs are redone, the damaged one fails and keeps its old file
    line = one_line_error(
        ["data", "pairs", "--config", config, "--dtw-metric", "cosine"], capsys, broken, problem
    )
    assert line.startswith(f"asccl: error: {SPEAKER}/angry/001_001: {broken}: ")
    assert "[pairs] 1 items failed, listed in" in line
    after = snapshot(out / "pairs")
    damaged = f"{SPEAKER}/angry/001_001.json"
    assert after[damaged] == kept[damaged]  # the failed redo left the old pair as it was
    assert after[f"{SPEAKER}/angry/002_002.json"] != kept[f"{SPEAKER}/angry/002_002.json"]
    assert snapshot(out)["clips.csv"] == kept["clips.csv"]
    log = sorted((out / "logs").glob("pairs-*.log"))[-1].read_text()
    assert f"{SPEAKER}/angry/001_001: {broken}: " in log and problem in log


def test_pairs_summary_names_the_file_without_traceback(built, tmp_path, capsys):
    from asccl.cli import main

    root, _, config = fresh(built, tmp_path)
    broken = audio_file(root, "neutral", "002")
    broken.write_bytes(b"")
    capsys.readouterr()
    assert main(["data", "pairs", "--config", str(config), "--features", "mfcc"]) == 1
    captured = capsys.readouterr()
    assert "Traceback" not in captured.out + captured.err
    assert f"failed: {SPEAKER}/angry/002_002: {broken}: empty file" in captured.out
    assert "2 pairs made with other settings (features: mel -> mfcc): redone" in captured.out
    assert captured.err.rstrip("\n").splitlines()[-1].startswith("asccl: error: ")


def test_unreadable_video_fails_its_crops_and_keeps_the_old_store(built, tmp_path, capsys):
    root, out, config = fresh(built, tmp_path)
    broken = video_file(root, "neutral", "001")
    broken.write_bytes(b"not a video at all")
    store = crop_path(out, f"{SPEAKER}/neutral/level_1/001", "jpeg")
    before = snapshot(out / "crops")
    one_line_error(["data", "crops", "--config", config, "--crop-size", "40"], capsys, broken)
    after = snapshot(out / "crops")
    for kept in (store, crop_settings_path(store)):
        name = str(kept.relative_to(out / "crops"))
        assert after[name] == before[name], name
    redone = [name for name in after if after[name] != before.get(name)]
    assert len(redone) == 6  # the other 3 clips: store and settings each


def test_same_settings_rerun_changes_nothing(built, tmp_path):
    from asccl.cli import main

    _, out, config = fresh(built, tmp_path)
    before = {k: v for k, v in snapshot(out).items() if not k.startswith("logs/")}
    assert main(["data", "prepare", "--config", str(config)]) == 0
    after = {k: v for k, v in snapshot(out).items() if not k.startswith("logs/")}
    assert after == before


@pytest.mark.parametrize(
    ("override", "key"),
    [
        (["--crop-size", "0"], "crop_size"),
        (["--crop-size", "100000"], "crop_size"),
        (["--crop-size", "1.5"], "crop_size"),
        (["--sample-rate", "-16000"], "sample_rate"),
        (["--detect-every", "0"], "detect_every"),
        (["--workers", "-1"], "workers"),
        (["--shard", "2/2"], "shard"),
        (["--shard", "1/0"], "shard"),
        (["--shard", "first"], "shard"),
        (["--features", "wav2vec"], "features"),
        (["--dtw-metric", "l3"], "dtw_metric"),
    ],
)
@pytest.mark.parametrize("action", ["pairs", "crops", "prepare"])
def test_bad_config_numbers_are_one_line_naming_the_key(
    built, tmp_path, capsys, override, key, action
):
    _, out, config = fresh(built, tmp_path)
    before = snapshot(out)
    one_line_error(["data", action, "--config", config, *override], capsys, key)
    assert snapshot(out) == before


def test_bad_number_in_a_config_file_names_file_and_key(built, tmp_path, capsys):
    _, out, config = fresh(built, tmp_path)
    config.write_text(config.read_text().replace("crop_size = 32", "crop_size = -32"))
    before = snapshot(out)
    one_line_error(["data", "crops", "--config", config], capsys, config, "crop_size")
    assert snapshot(out) == before


# ----------------------------------------------------------------------------- orphans


def _process(pid: int) -> tuple[str, int] | None:
    """``(state, parent pid)`` of a live process from ``/proc``; None if gone or a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    state, ppid = stat.rsplit(")", 1)[1].split()[:2]
    return None if state in "ZXx" else (state, int(ppid))


def _children(pid: int) -> set[int]:
    found = set()
    for entry in os.listdir("/proc"):
        if entry.isdigit() and (info := _process(int(entry))) and info[1] == pid:
            found.add(int(entry))
    return found


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs Linux /proc")
def test_sigkill_of_a_prepare_run_leaves_no_pool_worker(built, tmp_path):
    _, out, config = fresh(built, tmp_path)
    shutil.rmtree(out)  # everything to do: the pairs and crops stages each start a pool
    run = subprocess.Popen(
        [sys.executable, "-m", "asccl", "data", "prepare", "--config", str(config),
         "--workers", "2"],
        cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        workers: set[int] = set()
        deadline = time.monotonic() + 120
        while len(workers) < 2 and run.poll() is None and time.monotonic() < deadline:
            workers = _children(run.pid)
            time.sleep(0.02)
        assert len(workers) >= 2, "the run never had two pool workers at once"
        os.kill(run.pid, signal.SIGKILL)
        run.wait(timeout=10)
        deadline = time.monotonic() + 5
        while any(_process(pid) for pid in workers) and time.monotonic() < deadline:
            time.sleep(0.05)
        survivors = [pid for pid in workers if _process(pid)]
        for pid in survivors:  # do not leave them behind for the rest of the suite
            os.kill(pid, signal.SIGKILL)
        assert not survivors, f"pool workers {survivors} outlived the killed run"
    finally:
        if run.poll() is None:
            run.kill()
            run.wait()
