import dataclasses
import os
import typing
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


@dataclass
class Lists:
    names: list[str] = field(default_factory=list)
    sizes: tuple[int, ...] = ()
    pair: tuple[float, float] = (0.5, 0.9)


@pytest.mark.parametrize("text", ["5", "1e3", "2024-01-01", "true", "0x10"])
def test_a_path_or_text_field_takes_the_text_as_typed(text):
    """TOML reads these as a number, date or bool; a path is the name as typed."""
    cfg = load_config(Outer, None, ["--out", text, "--weights", text, "--name", text])
    assert cfg.out == Path(text) and cfg.weights == Path(text) and cfg.name == text
    assert isinstance(cfg.out, Path) and isinstance(cfg.weights, Path)
    assert load_config(Outer, None, ["--out", '"quoted dir"']).out == Path("quoted dir")


def test_a_path_in_a_file_must_be_a_string_and_no_path_is_empty(tmp_path):
    toml = tmp_path / "c.toml"
    toml.write_text("out = 5\n")
    with pytest.raises(ConfigError, match=r"c\.toml: out must be a path \(a string\), got 5$"):
        load_config(Outer, toml)
    for args in (["--out="], ["--out", ""], ["--weights", '""']):
        with pytest.raises(ConfigError, match=r"^command line: (out|weights) must be a path, got"):
            load_config(Outer, None, args)


def test_paths_that_are_not_utf8_are_refused_in_one_ascii_line():
    undecodable = os.fsdecode(b"runs/caf\xe9")  # Latin-1 bytes in argv: a lone surrogate
    for key in ("out", "weights"):
        with pytest.raises(ConfigError) as error:
            load_config(Outer, None, [f"--{key}", undecodable])
        message = str(error.value)
        assert message == (
            f"command line: {key}: the path 'runs/caf\\udce9' is not valid UTF-8; rename it "
            "or use another path"
        )
        message.encode("ascii")  # printable on any terminal


def test_a_config_file_that_is_not_utf8_is_one_error(tmp_path):
    toml = tmp_path / "latin1.toml"
    toml.write_bytes(b'name = "caf\xe9"\n')  # \xe9 at byte 11
    with pytest.raises(ConfigError, match=r"latin1\.toml: not UTF-8 text \(.* at byte 11\)"):
        load_config(Outer, toml)


def test_lists_are_lists_with_items_of_their_type():
    cfg = load_config(Lists, None, ["--names", '["a", "b"]', "--sizes", "[1, 2]", "--pair=[1, 2]"])
    assert cfg == Lists(names=["a", "b"], sizes=(1, 2), pair=(1.0, 2.0))
    assert all(isinstance(v, float) for v in cfg.pair)
    # one value is a one-item list (not the characters of a string), the text as typed
    assert load_config(Lists, None, ["--names", "W021", "--sizes", "3"]).names == ["W021"]
    assert load_config(Lists, None, ["--names", "7"]).names == ["7"]
    assert load_config(Lists, None, ["--sizes", "3"]).sizes == (3,)
    bad = [
        (["--names", "[1]"], r"names\[0\] must be str, got 1"),
        (["--pair", "5"], r"pair must have 2 items, got 5$"),
        (["--sizes", "[1, 2.5]"], r"sizes\[1\] must be int, got 2\.5"),
        (["--pair", "[1, 2, 3]"], r"pair must have 2 items, got \[1, 2, 3\]"),
    ]
    for args, message in bad:
        with pytest.raises(ConfigError, match=message):
            load_config(Lists, None, args)


def test_a_bool_is_not_an_int():
    with pytest.raises(ConfigError, match="steps must be int, got True"):
        load_config(Outer, None, ["--steps", "true"])


def _path_fields(cls, prefix=""):
    """Dotted names of every ``Path`` / ``Path | None`` field of ``cls``, nested ones too."""
    for f in dataclasses.fields(cls):
        hint = typing.get_type_hints(cls)[f.name]
        options = [a for a in typing.get_args(hint) if a is not type(None)] or [hint]
        if Path in options:
            yield prefix + f.name
        elif len(options) == 1 and dataclasses.is_dataclass(options[0]):
            yield from _path_fields(options[0], f"{prefix}{f.name}.")


def _config_classes():
    from asccl.data.prepare import DataConfig
    from asccl.demo import DemoConfig
    from asccl.evaluation.runner import EvalConfig
    from asccl.spfem.experiment import ExperimentConfig
    from asccl.spfem.train import SPFEMTrainConfig
    from asccl.training.config import TrainConfig

    return [DemoConfig, DataConfig, TrainConfig, EvalConfig, SPFEMTrainConfig, ExperimentConfig]


@pytest.mark.parametrize("cls", _config_classes(), ids=lambda c: c.__name__)
def test_every_path_field_of_every_config_is_a_path(cls):
    fields = list(_path_fields(cls))
    assert fields  # every command reads or writes files
    for value in ("5", "some/dir"):
        overrides = [arg for name in fields for arg in (f"--{name}", value)]
        cfg = load_config(cls, None, overrides)
        for name in fields:
            got = cfg
            for part in name.split("."):
                got = getattr(got, part)
            assert isinstance(got, Path) and got == Path(value), name
