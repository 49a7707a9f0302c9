from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import pytest

from asccl.config import ConfigError, load_config, save_config


@dataclass
class Inner:
    lr: float = 1e-4
    anchors: tuple[int, ...] = (32, 16, 8, 4)


@dataclass
class Outer:
    name: str = "run"
    mode: Literal["mel", "mfcc"] = "mel"
    steps: int = 10
    out: Path = Path("runs")
    weights: Path | None = None
    optim: Inner = field(default_factory=Inner)


def test_file_then_overrides(tmp_path):
    toml = tmp_path / "c.toml"
    toml.write_text('name = "paper"\nsteps = 50\n[optim]\nlr = 1\nanchors = [8, 4, 2, 1]\n')
    cfg = load_config(Outer, toml, ["--steps", "7", "--optim.lr=0.5", "--weights", "w.pth"])
    assert cfg.name == "paper" and cfg.steps == 7
    assert cfg.optim.lr == 0.5 and isinstance(cfg.optim.lr, float)
    assert cfg.optim.anchors == (8, 4, 2, 1)
    assert cfg.weights == Path("w.pth") and cfg.out == Path("runs")


def test_defaults_without_file():
    assert load_config(Outer) == Outer()


def test_unknown_keys_are_errors(tmp_path):
    with pytest.raises(ConfigError, match=r"unknown key\(s\) \['stepz'\].*valid"):
        load_config(Outer, None, ["--stepz", "3"])
    toml = tmp_path / "bad.toml"
    toml.write_text("[optim]\nmomentum = 0.9\n")
    with pytest.raises(ConfigError, match=r"bad\.toml: optim: unknown key"):
        load_config(Outer, toml)


def test_bad_values_and_files(tmp_path):
    with pytest.raises(ConfigError, match="steps must be int"):
        load_config(Outer, None, ["--steps", "many"])
    with pytest.raises(ConfigError, match=r"mode must be one of \['mel', 'mfcc'\], got 'mfc'"):
        load_config(Outer, None, ["--mode", "mfc"])
    with pytest.raises(ConfigError, match="needs a value"):
        load_config(Outer, None, ["--steps"])
    with pytest.raises(ConfigError, match="no such config file"):
        load_config(Outer, tmp_path / "missing.toml")
    broken = tmp_path / "broken.toml"
    broken.write_text("steps = = 3")
    with pytest.raises(ConfigError, match=r"broken\.toml: invalid TOML"):
        load_config(Outer, broken)


def test_save_config_writes_json(tmp_path):
    path = save_config(Outer(), tmp_path / "sub" / "config.json")
    assert '"steps": 10' in path.read_text()
