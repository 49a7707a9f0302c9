"""A tiny stage-1 output for training tests, built once per session with the real stage-1
runs: two demo speakers, neutral and angry sentence 001, 64 px crops (98 frame pairs of
W901 to train on, 99 of W903 to validate on)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from asccl.data.pairing import PairingRule
from asccl.data.prepare import DataConfig, run_crops, run_index, run_pairs

DEMO = Path(__file__).resolve().parents[2] / "demo_data" / "MEAD"


@pytest.fixture(scope="session")
def stage1_64(tmp_path_factory) -> Path:
    """Stage-1 ``out`` folder (pairs.csv + crops/) for W901 and W903 at 64 px; read only."""
    tmp = tmp_path_factory.mktemp("stage1_64")
    root = tmp / "MEAD"
    for speaker in ("W901", "W903"):
        for sub in ("video/front", "audio"):
            for emotion in ("neutral", "angry"):
                shutil.copytree(DEMO / speaker / sub / emotion, root / speaker / sub / emotion)
    rule = PairingRule(emotions=("angry",), sentences=("001",))
    config = DataConfig(root=root, out=tmp / "out", pairing=rule, crop_size=64, workers=0)
    for run in (run_index, run_pairs, run_crops):
        assert run(config).failures == []
    return config.out
